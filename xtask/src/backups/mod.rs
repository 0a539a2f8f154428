//! The backup machinery shared by the `backup` and `restore` commands (and
//! read by `pitr`, `wal_remote` and `bench backup`): the files of a backup
//! and how they are written ([`archive`]), streams through `docker exec`
//! ([`stream`]), age encryption in the stream ([`encrypt`]), Postgres dumps
//! and volume archives ([`postgres`], [`volume`], [`base`]), sets
//! ([`set`]), verification and restore drills ([`verify`], [`drill`]),
//! retention and pruning ([`retention`], [`prune`]), copies in S3-compatible
//! buckets ([`remote`]) and the journal that puts an interrupted restore
//! back ([`recover`], [`leftovers`]). No command lives here: `backup` and
//! `restore` are the front ends.

pub mod archive;
pub mod base;
pub mod drill;
pub mod encrypt;
pub mod leftovers;
pub mod postgres;
pub mod prune;
pub mod recover;
pub mod remote;
pub mod retention;
pub mod set;
pub mod stream;
pub mod verify;
pub mod volume;

use std::io::IsTerminal;

/// Progress bars only on a terminal.
pub fn progress() -> bool {
    std::io::stderr().is_terminal()
}
