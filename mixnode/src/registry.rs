//! Optional registration in PostgreSQL (when DATABASE_URL is set): the node
//! UPSERTs its row in `mixnode_topology` (see
//! `migrations/V0001__mixnode_topology.sql`) at start-up and every
//! [`HEARTBEAT`] after, refreshing `last_seen`. Database trouble never stops
//! the node: it logs a warning and reconnects with backoff.

use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_postgres::NoTls;

pub const HEARTBEAT: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const UPSERT: &str = "INSERT INTO mixnode_topology \
    (node_id, role, mix_address, http_port, public_key, version, started_at, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
    ON CONFLICT (node_id) DO UPDATE SET role = EXCLUDED.role, \
    mix_address = EXCLUDED.mix_address, http_port = EXCLUDED.http_port, \
    public_key = EXCLUDED.public_key, version = EXCLUDED.version, \
    started_at = EXCLUDED.started_at, last_seen = now()";

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

/// Registers and heartbeats until `stop` turns true.
pub async fn run(url: String, me: Registration, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        match tokio_postgres::connect(&url, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::warn!("database connection closed: {e}");
                    }
                });
                let mut first = true;
                loop {
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
                    match client.execute(UPSERT, &params).await {
                        Ok(_) => {
                            if first {
                                tracing::info!(node_id = %me.node_id, "registered in mixnode_topology");
                                first = false;
                            }
                            backoff = Duration::from_secs(1);
                        }
                        Err(e) => {
                            tracing::warn!("topology heartbeat failed: {e}; is migrations/V0001__mixnode_topology.sql applied?");
                            break;
                        }
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(HEARTBEAT) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
            Err(e) => tracing::warn!("cannot connect to DATABASE_URL: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
