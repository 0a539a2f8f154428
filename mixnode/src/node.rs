//! Assembles and runs one mixnode: loads or creates the key, binds the mix
//! and HTTP ports, loads the replay filter's snapshot, starts the pipeline,
//! serves `/health`, `/metrics` and `/status`, registers in PostgreSQL and
//! reads the topology when asked, saves the replay filter every
//! REPLAY_SAVE_INTERVAL_SECS, and on SIGTERM or Ctrl-C
//! shuts down gracefully: `/health` turns 503, the mix port stops accepting
//! and reading, packets already inside are sent on within [`DRAIN_DEADLINE`],
//! whatever is left after that (or after a second signal) is counted as
//! dropped `shutdown`, and the replay filter is saved a last time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::http::{self, Response};
use crate::keystore;
use crate::metrics::{DropReason, Info, Metrics};
use crate::pipeline::sources::Sources;
use crate::pipeline::{admission::Admission, ingress, scheduler, workers, Shared};
use crate::registry::{self, Registration};
use crate::replay::ReplayFilter;
use crate::topology::Topology;

/// The replay filter's snapshot in DATA_DIR.
pub const REPLAY_FILE: &str = "replay.bin";

/// Docker waits 10 s between SIGTERM and SIGKILL; finish well before that.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(8);

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision `build.rs` embedded (or `MIXNODE_REVISION` at build time).
pub const REVISION: &str = env!("MIXNODE_REVISION");

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Key(#[from] keystore::KeyError),
    #[error("cannot listen on {var} {addr}: {source}")]
    Bind {
        var: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start worker threads: {0}")]
    Threads(std::io::Error),
    #[error("cannot install signal handler: {0}")]
    Signal(std::io::Error),
}

struct Status {
    id: String,
    role: &'static str,
    public_key: String,
    started: Instant,
    ready: AtomicBool,
}

/// A relay (entry or middle) with no `MIX_PEERS` and no registry can forward
/// to no one: every packet would be dropped as `unknown_next_hop`. Say so once
/// at start-up instead of dropping silently.
fn warn_if_isolated(config: &Config) {
    if let Some(line) = isolation_warning(config) {
        tracing::warn!("{line}");
    }
}

/// The start-up warning of [`warn_if_isolated`], if any.
pub fn isolation_warning(config: &Config) -> Option<String> {
    let relays = !matches!(config.role, crate::config::Role::Exit);
    (relays && config.mix_peers.is_empty() && config.database.is_none()).then(|| {
        format!(
            "this {} node knows no mix to relay to (MIX_PEERS is empty and there is no DATABASE_URL): \
             every packet will be dropped as unknown_next_hop; set MIX_PEERS to the next mixes' host:port",
            config.role.as_str()
        )
    })
}

/// Runs the node until SIGTERM/Ctrl-C and a graceful drain.
pub async fn run(config: Config) -> Result<(), NodeError> {
    let (key, fresh) = keystore::load_or_generate(&config.data_dir, config.fix_key_permissions)?;
    let public_key = key.public_key().to_string();
    let id = config
        .node_id
        .clone()
        .unwrap_or_else(|| format!("{}-{}", config.role.as_str(), &public_key[..12]));
    tracing::info!(%id, role = config.role.as_str(), %public_key, new_key = fresh, "starting mixnode {VERSION}");

    let bind = |var, port| async move {
        let addr = SocketAddr::new(config.bind_addr, port);
        TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Bind { var, addr, source })
    };
    let mix_listener = bind("MIX_PORT", config.mix_port).await?;
    let http_listener = bind("NODE_PORT", config.node_port).await?;

    let metrics = Metrics::default();
    let sources = Arc::new(Sources::new(
        config.max_connections,
        config.max_connections_per_source,
        config.max_queue_depth,
        metrics.queue_depth.clone(),
    ));
    warn_if_isolated(&config);
    let topology = Topology::new(config.mix_peers.clone(), config.exit_allow.clone());
    metrics.known_mixes.store(topology.known_mixes(), Relaxed);
    // Sized by REPLAY_CAPACITY, 1e-6 false positives until that many
    // packets. The key epoch is the node key (no rotation yet): past
    // capacity the false-positive rate climbs, which
    // `mixnode_replay_filter_false_positive_rate` shows.
    let replay = ReplayFilter::new(config.replay_capacity, key.public_key().fingerprint());
    let replay_path = config.data_dir.join(REPLAY_FILE);
    match replay.load(&replay_path) {
        Ok(()) => tracing::info!(
            entries = replay.len(),
            "replay filter restored from {}",
            replay_path.display()
        ),
        Err(crate::replay::SnapshotError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            "not using {}: {e}; starting with an empty replay filter",
            replay_path.display()
        ),
    }
    let shared = Arc::new(Shared {
        admission: Admission::new(config.target_throughput),
        sources,
        topology,
        replay,
        metrics,
        key,
        config: config.clone(),
    });
    let status = Arc::new(Status {
        id: id.clone(),
        role: config.role.as_str(),
        public_key: public_key.clone(),
        started: Instant::now(),
        ready: AtomicBool::new(false),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let (to_workers, from_ingress) = std::sync::mpsc::channel();
    let (to_scheduler, from_workers) = tokio::sync::mpsc::unbounded_channel();
    let worker_threads = workers::spawn(
        config.pipeline_workers,
        from_ingress,
        to_scheduler,
        shared.clone(),
    )
    .map_err(NodeError::Threads)?;
    let scheduler = tokio::spawn(scheduler::run(from_workers, shared.clone()));
    let ingress = tokio::spawn(ingress::accept_loop(
        mix_listener,
        to_workers,
        shared.clone(),
        stop_rx.clone(),
    ));

    let routes = {
        let (shared, status) = (shared.clone(), status.clone());
        Arc::new(move |path: &str| route(path, &shared, &status))
    };
    let http_server = tokio::spawn(http::serve(http_listener, routes));

    if let Some(db) = config.database.clone() {
        let me = Registration {
            node_id: id,
            role: config.role.as_str(),
            mix_address: config.advertise_addr.clone(),
            http_port: config.node_port,
            public_key,
            version: VERSION,
            started_at: SystemTime::now(),
        };
        tokio::spawn(registry::run(db, me, shared.clone(), stop_rx.clone()));
    }
    let saver = tokio::spawn(save_replay_periodically(
        shared.clone(),
        replay_path.clone(),
        stop_rx.clone(),
    ));

    status.ready.store(true, Relaxed);
    tracing::info!(
        mix = %SocketAddr::new(config.bind_addr, config.mix_port),
        http = %SocketAddr::new(config.bind_addr, config.node_port),
        advertise = %config.advertise_addr,
        workers = config.pipeline_workers,
        replay_capacity = config.replay_capacity,
        replay_filter_bytes = shared.replay.memory_bytes(),
        "ready"
    );

    wait_for_signal().await?;
    tracing::info!("shutting down: no longer accepting packets, draining");
    status.ready.store(false, Relaxed);
    let _ = stop_tx.send(true);
    let _ = ingress.await;

    // A second SIGTERM/Ctrl-C cuts the drain short.
    let drained = tokio::select! {
        finished = tokio::time::timeout(DRAIN_DEADLINE, scheduler) => finished.is_ok(),
        _ = wait_for_signal() => false,
    };
    let metrics = &shared.metrics;
    if drained {
        for thread in worker_threads {
            let _ = thread.join();
        }
    } else {
        let left = metrics.queue_depth.load(Relaxed);
        metrics.drop_packets(DropReason::Shutdown, left as u64);
        tracing::warn!(
            left,
            "drain cut short (deadline or second signal); dropping what is left"
        );
    }
    http_server.abort();
    let _ = saver.await;
    save_replay(&shared, &replay_path).await;
    tracing::info!(
        received = metrics.received.load(Relaxed),
        forwarded = metrics.forwarded.load(Relaxed),
        delivered = metrics.delivered.load(Relaxed),
        dropped = metrics.dropped_total(),
        "stopped"
    );
    Ok(())
}

/// Saves the replay filter (on a blocking thread: it writes the whole filter).
async fn save_replay(shared: &Arc<Shared>, path: &std::path::Path) {
    let (shared, path) = (shared.clone(), path.to_path_buf());
    let saved =
        tokio::task::spawn_blocking(move || shared.replay.save(&path).map_err(|e| (e, path))).await;
    if let Ok(Err((e, path))) = saved {
        tracing::warn!("cannot save the replay filter to {}: {e}", path.display());
    }
}

async fn save_replay_periodically(
    shared: Arc<Shared>,
    path: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.replay_save_interval) => save_replay(&shared, &path).await,
            _ = stop.changed() => return,
        }
    }
}

async fn wait_for_signal() -> Result<(), NodeError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(NodeError::Signal)?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

fn route(path: &str, shared: &Shared, status: &Status) -> Response {
    match path {
        "/health" => {
            if status.ready.load(Relaxed) {
                Response::text(200, "ok\n")
            } else {
                Response::text(503, "not ready\n")
            }
        }
        "/metrics" => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: shared.metrics.render(&Info {
                version: VERSION,
                revision: REVISION,
                role: status.role,
                uptime: status.started.elapsed(),
                replay_filter_bytes: shared.replay.memory_bytes(),
                replay_filter_entries: shared.replay.len(),
                replay_false_positive_rate: shared.replay.false_positive_rate(),
            }),
        },
        "/status" => Response {
            status: 200,
            content_type: "application/json",
            body: status_json(shared, status).to_string(),
        },
        _ => Response::text(404, "not found; try /health, /metrics or /status\n"),
    }
}

fn status_json(shared: &Shared, status: &Status) -> serde_json::Value {
    let m = &shared.metrics;
    let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.as_str().to_string(), m.dropped(*r).into()))
        .collect();
    serde_json::json!({
        "id": status.id,
        "role": status.role,
        "public_key": status.public_key,
        "mix_address": shared.config.advertise_addr,
        "version": VERSION,
        "ready": status.ready.load(Relaxed),
        "uptime_seconds": status.started.elapsed().as_secs_f64(),
        "counters": {
            "received": m.received.load(Relaxed),
            "forwarded": m.forwarded.load(Relaxed),
            "delivered": m.delivered.load(Relaxed),
            "dropped": dropped,
            "queue_depth": m.queue_depth.load(Relaxed),
            "outbound_queue_depth": m.outbound_depth.load(Relaxed),
        },
        "replay_filter": {
            "capacity": shared.replay.capacity(),
            "bytes": shared.replay.memory_bytes(),
            "entries": shared.replay.len(),
        },
    })
}
