//! Betanet mixnode library: the packet format, the node's forwarding pipeline
//! and the pieces the `mixnode` and `loadgen` binaries share.

pub mod packet;
pub mod replay;

pub mod config;
pub mod http;
pub mod keystore;
pub mod loadgen;
pub mod metrics;
pub mod node;
pub mod pipeline;
pub mod registry;
pub mod topology;
pub mod warnings;
