//! Optional registration in PostgreSQL (when a database is configured): the
//! node UPSERTs its row in `mixnode_topology` (see
//! `migrations/V0001__mixnode_topology.sql`) at start-up and every
//! [`HEARTBEAT`] after, refreshing `last_seen`, and reads back every row's
//! `mix_address` into the [`Topology`], the set of mixes it may relay to.
//! Database trouble never stops the node: it keeps its last topology (and
//! `MIX_PEERS`), warns at most once a minute per kind (a missing table is
//! its own kind: migrations not applied yet), counts every failure in
//! `mixnode_warnings_total`, and reconnects with backoff.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use crate::config::Database;
use crate::pipeline::Shared;
use crate::warn_limited;
use crate::warnings::Warning;

pub const HEARTBEAT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Rows read back at most (the topology table is small; this bounds memory).
const MAX_ROWS: i64 = 10_000;

const UPSERT: &str = "INSERT INTO mixnode_topology \
    (node_id, role, mix_address, http_port, public_key, version, started_at, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
    ON CONFLICT (node_id) DO UPDATE SET role = EXCLUDED.role, \
    mix_address = EXCLUDED.mix_address, http_port = EXCLUDED.http_port, \
    public_key = EXCLUDED.public_key, version = EXCLUDED.version, \
    started_at = EXCLUDED.started_at, last_seen = now()";

const MIXES: &str = "SELECT mix_address FROM mixnode_topology LIMIT $1";

/// What the node publishes about itself.
#[derive(Clone, Debug)]
pub struct Registration {
    pub node_id: String,
    pub role: &'static str,
    pub mix_address: String,
    pub http_port: u16,
    pub public_key: String,
    pub version: &'static str,
    pub started_at: SystemTime,
}

fn warn_db(shared: &Shared, what: &str, e: &tokio_postgres::Error) {
    if e.code() == Some(&SqlState::UNDEFINED_TABLE) {
        warn_limited!(
            shared.metrics.warnings,
            Warning::TopologyMissing,
            "{what}: table mixnode_topology does not exist; apply the migrations \
             (the node relays to MIX_PEERS meanwhile)"
        );
    } else {
        warn_limited!(shared.metrics.warnings, Warning::Database, "{what}: {e}");
    }
}

/// One heartbeat: UPSERT this node, then read every mix address.
async fn beat(
    client: &tokio_postgres::Client,
    me: &Registration,
    shared: &Shared,
) -> Result<(), tokio_postgres::Error> {
    let port = i32::from(me.http_port);
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
        &me.node_id,
        &me.role,
        &me.mix_address,
        &port,
        &me.public_key,
        &me.version,
        &me.started_at,
    ];
    client.execute(UPSERT, &params).await?;
    let rows = client.query(MIXES, &[&MAX_ROWS]).await?;
    let mixes: HashSet<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<_, String>(0).ok())
        .collect();
    shared.topology.set_registry(mixes);
    shared
        .metrics
        .known_mixes
        .store(shared.topology.known_mixes(), Relaxed);
    Ok(())
}

/// Registers, heartbeats and refreshes the topology until `stop` turns true.
pub async fn run(
    db: Database,
    me: Registration,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match db.0.connect(NoTls).await {
            Ok((client, connection)) => {
                let conn_shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        warn_db(&conn_shared, "database connection closed", &e);
                    }
                });
                let mut first = true;
                loop {
                    match beat(&client, &me, &shared).await {
                        Ok(()) => {
                            if first {
                                tracing::info!(node_id = %me.node_id, mixes = shared.topology.known_mixes(), "registered in mixnode_topology");
                                first = false;
                            }
                            backoff = Duration::from_secs(1);
                        }
                        Err(e) => {
                            warn_db(&shared, "topology heartbeat failed", &e);
                            if client.is_closed() {
                                break;
                            }
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(HEARTBEAT) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => warn_db(&shared, "cannot connect to the database", &e),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
