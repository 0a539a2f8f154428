//! The runner against a live server: connect (retrying while the server
//! starts), take the advisory lock, create and read the history table, and
//! apply pending files, each with its history row in one transaction (or
//! statement by statement for `-- no-transaction` files). A failure writes a
//! `success = false` row, which marks the database dirty.

use std::time::{Duration, Instant};

use tokio_postgres::{Client, Config, NoTls};

use crate::{plan::Applied, split, Error, Migration, HISTORY_TABLE};

/// The advisory lock key: "fogmigr" in ASCII.
pub const LOCK_KEY: i64 = 0x0066_6f67_6d69_6772;

/// How long `connect` keeps retrying a refused connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A postgres error with its detail and position, on one line.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            if let Some(tokio_postgres::error::ErrorPosition::Original(pos)) = db.position() {
                text.push_str(&format!(" at character {pos}"));
            }
            text
        }
        None => e.to_string(),
    }
}

/// Connect, retrying refused or not-yet-ready connections until `timeout`.
pub async fn connect(config: &Config, timeout: Duration) -> Result<Client, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        match config.connect(NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                return Ok(client);
            }
            Err(e) if e.as_db_error().is_none() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::CANNOT_CONNECT_NOW)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                let hosts = format!("{:?}", config.get_hosts());
                return Err(Error::Db(format!(
                    "cannot connect to {hosts} database {:?}: {}",
                    config.get_dbname().unwrap_or(""),
                    describe(&e)
                )));
            }
        }
    }
}

/// The history, or nothing if the table does not exist yet (read-only).
pub async fn history(client: &Client) -> Result<Vec<Applied>, Error> {
    let exists: bool = client
        .query_one(
            &format!("SELECT to_regclass('{HISTORY_TABLE}') IS NOT NULL"),
            &[],
        )
        .await?
        .get(0);
    if !exists {
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            &format!(
                "SELECT version, name, checksum, \
                 to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                 execution_ms, success FROM {HISTORY_TABLE} ORDER BY version"
            ),
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
            applied_at: r.get(3),
            execution_ms: r.get(4),
            success: r.get(5),
        })
        .collect())
}

/// The statement that creates the history table.
pub fn create_history_sql() -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (\n    \
         version      BIGINT PRIMARY KEY,\n    \
         name         TEXT NOT NULL,\n    \
         checksum     TEXT NOT NULL,\n    \
         applied_at   TIMESTAMPTZ NOT NULL DEFAULT now(),\n    \
         execution_ms BIGINT NOT NULL,\n    \
         success      BOOLEAN NOT NULL\n)"
    )
}

/// Take the session advisory lock, polling `pg_try_advisory_lock` so a waiter
/// never blocks inside a transaction.
pub async fn lock(client: &Client, timeout: Duration) -> Result<(), Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await?
            .get(0);
        if got {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::LockTimeout {
                key: LOCK_KEY,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn unlock(client: &Client) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await?;
    Ok(())
}

/// What `up` did with one file.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: String,
    pub execution_ms: i64,
}

/// Apply every pending file under the lock; `report` hears each one as it
/// commits. Files already applied by a concurrent run are skipped.
pub async fn up(
    client: &Client,
    files: &[Migration],
    lock_timeout: Duration,
    mut report: impl FnMut(&Outcome),
) -> Result<Vec<Outcome>, Error> {
    lock(client, lock_timeout).await?;
    let result = async {
        client.batch_execute(&create_history_sql()).await?;
        let history = history(client).await?;
        let mut done = Vec::new();
        for m in crate::plan::pending(files, &history)? {
            let outcome = apply(client, m).await?;
            report(&outcome);
            done.push(outcome);
        }
        Ok(done)
    }
    .await;
    // A dropped connection releases the lock too.
    let _ = unlock(client).await;
    result
}

const INSERT: &str = "INSERT INTO public.fog_schema_history \
    (version, name, checksum, execution_ms, success) VALUES ($1, $2, $3, $4, $5)";

async fn apply(client: &Client, m: &Migration) -> Result<Outcome, Error> {
    let started = Instant::now();
    let ms = |s: Instant| s.elapsed().as_millis() as i64;
    let failed = |e: tokio_postgres::Error, hint| Error::Failed {
        file: m.file.clone(),
        version: m.version,
        message: describe(&e),
        hint,
    };
    if m.no_transaction {
        for statement in split::statements(&m.sql) {
            if let Err(e) = client.batch_execute(&statement).await {
                record(client, m, ms(started), false).await?;
                return Err(failed(e, "it ran outside a transaction (-- no-transaction), so the statements before the failing one stay applied: undo them"));
            }
        }
        record(client, m, ms(started), true).await?;
    } else {
        client.batch_execute("BEGIN").await?;
        let run = async {
            client.batch_execute(&m.sql).await?;
            let elapsed = ms(started);
            client
                .execute(INSERT, &[&m.version, &m.name, &m.checksum, &elapsed, &true])
                .await?;
            client.batch_execute("COMMIT").await
        };
        if let Err(e) = run.await {
            client.batch_execute("ROLLBACK").await?;
            record(client, m, ms(started), false).await?;
            return Err(failed(e, "it was rolled back (nothing of it is applied)"));
        }
    }
    Ok(Outcome {
        file: m.file.clone(),
        execution_ms: ms(started),
    })
}

async fn record(client: &Client, m: &Migration, elapsed: i64, success: bool) -> Result<(), Error> {
    client
        .execute(
            INSERT,
            &[&m.version, &m.name, &m.checksum, &elapsed, &success],
        )
        .await?;
    Ok(())
}
