//! The fog-compute migration runner: applies the SQL files of `migrations/`
//! (embedded at build time, see `build.rs`) to PostgreSQL in version order.
//! Files are named `V<version>__<name>.sql` ([`files`]); each one and its row
//! in the history table `fog_schema_history` (version, name, sha256 checksum,
//! applied_at, execution_ms, success) commit in one transaction unless its
//! first line is `-- no-transaction`. A session advisory lock, taken with
//! `pg_try_advisory_lock` and retried (never a blocking wait inside a
//! transaction, which could deadlock with `CREATE INDEX CONCURRENTLY`), makes
//! concurrent runs apply each file once. [`plan`] compares files with the
//! history and names every defect (edited, missing, failed/dirty, out of
//! order); [`db`] talks to the server; [`config`] reads the connection from
//! `DATABASE_URL`, `DATABASE_URL_FILE` and `DATABASE_PASSWORD_FILE`.

#[cfg(feature = "runner")]
pub mod config;
#[cfg(feature = "runner")]
pub mod db;
pub mod files;
pub mod plan;
pub mod split;

pub use files::Migration;

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

/// The history table (in the `public` schema).
pub const HISTORY_TABLE: &str = "public.fog_schema_history";

/// The migrations embedded in this binary, parsed and sorted.
pub fn embedded() -> Result<Vec<Migration>, Error> {
    files::from_pairs(EMBEDDED.iter().copied())
}

/// Everything that can go wrong, each with what to do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file}: not a migration file name ({why}); name files V<version>__<name>.sql, e.g. V0002__stats.sql")]
    BadName { file: String, why: String },
    #[error(
        "{first} and {second} both have version {version}: give one of them the next free version"
    )]
    DuplicateVersion {
        version: i64,
        first: String,
        second: String,
    },
    #[error("{file} was edited after it was applied (history checksum {applied}, file {now}): restore the applied text (`git checkout -- migrations/{file}`) and put the change in a new migration (`cargo xtask migrate new NAME`)")]
    Edited {
        file: String,
        applied: String,
        now: String,
    },
    #[error("version {version} ({name}) is applied but V{version:04}__{name}.sql is missing from migrations/: restore it from git; never delete an applied migration")]
    Missing { version: i64, name: String },
    #[error("{file} failed at {at} and left the database dirty; later runs refuse until it is resolved: undo what it changed, fix the file, then delete its history row: cargo xtask psql -- -c \"DELETE FROM fog_schema_history WHERE version = {version} AND NOT success\"")]
    Dirty {
        file: String,
        version: i64,
        at: String,
    },
    #[error("{file} (version {version}) is older than the latest applied version {latest}: it was added out of order; rename it to V{next:04}__<name>.sql (`cargo xtask migrate new NAME` picks the next version)")]
    OutOfOrder {
        file: String,
        version: i64,
        latest: i64,
        next: i64,
    },
    #[error("{file} failed: {message}; {hint}; the database is dirty: fix the file, then delete its history row: cargo xtask psql -- -c \"DELETE FROM fog_schema_history WHERE version = {version} AND NOT success\"")]
    Failed {
        file: String,
        version: i64,
        message: String,
        /// Whether the change was rolled back.
        hint: &'static str,
    },
    #[error("{file}:{line}: `{statement}` ends the transaction this file runs in, so a later error could no longer roll it back; remove it (each file already commits as one transaction), or make `-- no-transaction` the file's first line to run its statements one by one, outside a transaction")]
    TransactionControl {
        file: String,
        line: usize,
        statement: String,
    },
    #[error("another migration run holds the lock (pg_try_advisory_lock({key})) after {secs}s: wait for it, or find it with SELECT pid FROM pg_locks WHERE locktype = 'advisory'")]
    LockTimeout { key: i64, secs: u64 },
    #[error("{0}")]
    Config(String),
    #[error("database: {0}")]
    Db(String),
    #[error("{0}")]
    Io(String),
}

#[cfg(feature = "runner")]
impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        Error::Db(db::describe(&e))
    }
}
