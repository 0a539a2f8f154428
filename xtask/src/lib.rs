//! The fog-compute workflow tool as a library: every `cargo xtask` command is a
//! module here, so integration tests drive the real code instead of copies.
//! `main.rs` only parses the command line and dispatches through [`cli::Cli`];
//! [`global`] holds what every command shares (flags, the repository root) and
//! [`usage`] the error type that maps to exit code 2.

// Only `process` starts a process (xtask/clippy.toml lists the methods).
#![deny(clippy::disallowed_methods)]

pub mod adopt;
pub mod backup;
pub mod bench;
pub mod betanet;
pub mod bringup;
pub mod check;
pub mod ci;
pub mod claims;
pub mod cli;
pub mod comparison;
pub mod completions;
pub mod config;
pub mod confirm;
pub mod deploy;
pub mod dev;
pub mod docker;
pub mod dotenv;
pub mod down;
pub mod engine;
pub mod env;
pub mod environments;
pub mod global;
pub mod images;
pub mod interrupt;
pub mod logs;
pub mod migrate;
pub mod network;
pub mod pitr;
pub mod process;
pub mod prod;
pub mod progress;
pub mod ps;
pub mod psql;
pub mod release;
pub mod report;
pub mod restart;
pub mod restore;
pub mod s3;
pub mod up;
pub mod usage;
pub mod wal;
pub mod wal_remote;

// The compose model lives in its own crate; `crate::compose::...` paths stay.
pub use compose;
pub use global::{project_root, Global};
pub use usage::UsageError;
