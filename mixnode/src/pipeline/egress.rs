//! Next hops. Each peer address gets one task holding one persistent TCP
//! connection and a buffer of POOL_SIZE packets. The task writes whatever is
//! buffered in one go (up to [`WRITE_BATCH`] packets per flush), reconnects
//! with exponential backoff ([`INITIAL_BACKOFF`] doubling to [`MAX_BACKOFF`])
//! when the connection fails, and exits after [`IDLE_TIMEOUT`] without
//! traffic. A next mix's buffer holds up to MAX_QUEUE_DEPTH packets (a slow
//! mix fills this node's queue, which stops this node reading, which pushes
//! back on its senders); a destination's, at an exit, POOL_SIZE. A full
//! buffer of a connected peer sends the packet back to the delay queue for
//! a retry in [`RETRY`] (it keeps its queue slot, so the node's queue fills
//! and reading stops); a full buffer of a peer that is down drops as
//! `unreachable`;
//! packets in a failed write or connect drop as `unreachable`. The table
//! holds [`MAX_PEERS`] next hops and evicts the least recently used one to
//! make room (its task flushes what it holds and exits). Connection
//! failures are logged at most once a minute (see [`crate::warnings`]). A
//! next hop that vanishes without a reset (a host or container killed, a
//! Swarm task moved) is noticed within PEER_DEAD_TIMEOUT_MS: the connection
//! sets `TCP_USER_TIMEOUT` (unacknowledged data) and keepalive (idle), so the
//! task reconnects, through DNS, to wherever the peer now runs. A
//! packet counts as forwarded/delivered once its bytes are written; until
//! then it holds its [`super::Ticket`], so MAX_QUEUE_DEPTH bounds these
//! buffers too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{Kind, Outbound, Shared};
use crate::metrics::{DropReason, MAX_PACKET_AGE};
use crate::warn_limited;
use crate::warnings::Warning;

pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle outbound connections close after this; below the default
/// MIX_IDLE_TIMEOUT_MS (60 s), so the sender, not the receiver, ends them.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const WRITE_BATCH: usize = 256;
/// Wait before a packet whose next hop's buffer was full is offered again.
pub const RETRY: std::time::Duration = std::time::Duration::from_millis(2);
/// Distinct next hops tracked at once (exit destinations are chosen by senders).
pub const MAX_PEERS: usize = 4096;

struct Peer {
    tx: mpsc::Sender<Outbound>,
    connected: Arc<AtomicBool>,
    /// Dispatch count at its last use (for LRU eviction).
    last_used: u64,
}

/// The set of next hops, owned by the scheduler task.
pub struct Peers {
    shared: Arc<Shared>,
    map: HashMap<String, Peer>,
    tasks: Vec<JoinHandle<()>>,
    uses: u64,
}

impl Peers {
    pub fn new(shared: Arc<Shared>) -> Self {
        Peers {
            shared,
            map: HashMap::new(),
            tasks: Vec::new(),
            uses: 0,
        }
    }

    /// Moves a due packet into its peer's buffer (it stays counted in the
    /// node's queue depth until written or dropped). When a connected
    /// peer's buffer is full the packet comes back, to be retried shortly:
    /// it keeps its queue slot, so a slow next hop or destination fills the
    /// node's queue and the node stops reading (backpressure) instead of
    /// dropping; it expires after MAX_PACKET_AGE like any other.
    pub fn dispatch(&mut self, packet: Outbound) -> Option<Outbound> {
        let shared = self.shared.clone();
        let metrics = &shared.metrics;
        // Dropping the packet gives its queue slot back.
        let drop_one = |reason| metrics.drop_packets(reason, 1);
        if packet.received.elapsed()
            > MAX_PACKET_AGE + packet.release.saturating_duration_since(packet.received)
        {
            drop_one(DropReason::Expired);
            return None;
        }
        let mut packet = packet;
        for _attempt in 0..2 {
            let peer = self.peer(&packet.next, packet.kind);
            metrics.outbound_depth.fetch_add(1, Relaxed);
            match peer.tx.try_send(packet) {
                Ok(()) => return None,
                Err(TrySendError::Full(p)) => {
                    metrics.outbound_depth.fetch_sub(1, Relaxed);
                    if peer.connected.load(Relaxed) {
                        return Some(p);
                    }
                    drop_one(DropReason::Unreachable);
                    return None;
                }
                Err(TrySendError::Closed(p)) => {
                    // The peer's task exited when idle: start a new one.
                    metrics.outbound_depth.fetch_sub(1, Relaxed);
                    self.map.remove(&p.next);
                    packet = p;
                }
            }
        }
        drop_one(DropReason::Unreachable);
        None
    }

    fn peer(&mut self, address: &str, kind: Kind) -> &Peer {
        self.uses += 1;
        if !self.map.contains_key(address) {
            if self.map.len() >= MAX_PEERS {
                self.map.retain(|_, p| !p.tx.is_closed());
                self.tasks.retain(|t| !t.is_finished());
            }
            if self.map.len() >= MAX_PEERS {
                // Evict the least recently used next hop; its task writes
                // out what it holds, then exits.
                let oldest = self
                    .map
                    .iter()
                    .min_by_key(|(_, p)| p.last_used)
                    .map(|(a, _)| a.clone());
                if let Some(oldest) = oldest {
                    self.map.remove(&oldest);
                    self.shared.metrics.peers_evicted.fetch_add(1, Relaxed);
                }
            }
            let config = &self.shared.config;
            let capacity = match kind {
                Kind::Relay => config.pool_size.max(config.max_queue_depth),
                Kind::Deliver => config.pool_size,
            };
            let (tx, rx) = mpsc::channel(capacity);
            let connected = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(forward(
                address.to_string(),
                rx,
                connected.clone(),
                self.shared.clone(),
            ));
            if self.tasks.len() >= 1024 {
                // Forget the handles of peers that went idle and exited.
                self.tasks.retain(|t| !t.is_finished());
            }
            self.tasks.push(task);
            self.map.insert(
                address.to_string(),
                Peer {
                    tx,
                    connected,
                    last_used: 0,
                },
            );
        }
        let peer = self.map.get_mut(address).expect("inserted above");
        peer.last_used = self.uses;
        peer
    }

    /// Closes every buffer and waits until each peer task has flushed.
    pub async fn close(self) {
        drop(self.map);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Drops every packet currently buffered for an unreachable peer.
fn drain_unreachable(rx: &mut mpsc::Receiver<Outbound>, shared: &Shared) -> usize {
    let mut n = 0;
    while rx.try_recv().is_ok() {
        n += 1;
    }
    shared.metrics.outbound_depth.fetch_sub(n, Relaxed);
    shared
        .metrics
        .drop_packets(DropReason::Unreachable, n as u64);
    n
}

/// No Nagle delay; a silently vanished peer noticed within `dead` (the
/// kernel's defaults when zero): `TCP_USER_TIMEOUT` for unacknowledged data,
/// and keepalive probes, three a second apart, once idle for the rest.
fn tune(stream: &TcpStream, dead: Duration) {
    let _ = stream.set_nodelay(true);
    if dead.is_zero() {
        return;
    }
    let socket = socket2::SockRef::from(stream);
    let _ = socket.set_tcp_user_timeout(Some(dead));
    let probe = Duration::from_secs(1);
    let idle = dead.saturating_sub(3 * probe).max(probe);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(idle)
        .with_interval(probe)
        .with_retries(3);
    let _ = socket.set_tcp_keepalive(&keepalive);
}

async fn forward(
    address: String,
    mut rx: mpsc::Receiver<Outbound>,
    connected: Arc<AtomicBool>,
    shared: Arc<Shared>,
) {
    let metrics = &shared.metrics;
    let mut backoff = INITIAL_BACKOFF;
    let mut last_traffic = tokio::time::Instant::now();
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(&address)).await {
            Ok(Ok(stream)) => stream,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "connect timed out".to_string(),
                };
                let dropped = drain_unreachable(&mut rx, &shared);
                warn_limited!(metrics.warnings, Warning::PeerUnreachable, peer = %address, dropped, retry_in = ?backoff, "cannot connect: {error}");
                if dropped > 0 {
                    last_traffic = tokio::time::Instant::now();
                }
                if rx.is_closed() || last_traffic.elapsed() > IDLE_TIMEOUT {
                    drain_unreachable(&mut rx, &shared);
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        tune(&stream, shared.config.peer_dead_timeout);
        backoff = INITIAL_BACKOFF;
        connected.store(true, Relaxed);
        metrics.outbound_connections.fetch_add(1, Relaxed);
        tracing::debug!(peer = %address, "connected");
        let mut writer = BufWriter::with_capacity(64 * 1024, stream);
        let ended_cleanly = loop {
            batch.clear();
            let n = match timeout(IDLE_TIMEOUT, rx.recv_many(&mut batch, WRITE_BATCH)).await {
                Ok(0) => break true,
                Ok(n) => n,
                Err(_idle) => {
                    // Refuse new packets, then write out any that raced in.
                    rx.close();
                    continue;
                }
            };
            let written = timeout(WRITE_TIMEOUT, async {
                for packet in &batch {
                    writer.write_all(&packet.packet).await?;
                }
                writer.flush().await
            })
            .await;
            metrics.outbound_depth.fetch_sub(n, Relaxed);
            if let Ok(Ok(())) = written {
                let delivered = batch.iter().filter(|p| p.kind == Kind::Deliver).count();
                metrics.delivered.fetch_add(delivered as u64, Relaxed);
                metrics.forwarded.fetch_add((n - delivered) as u64, Relaxed);
                batch.clear();
            } else {
                metrics.drop_packets(DropReason::Unreachable, n as u64);
                batch.clear();
                warn_limited!(metrics.warnings, Warning::PeerWriteFailed, peer = %address, dropped = n, "write failed; reconnecting");
                break false;
            }
        };
        connected.store(false, Relaxed);
        metrics.outbound_connections.fetch_sub(1, Relaxed);
        if ended_cleanly {
            let _ = writer.shutdown().await;
            return;
        }
        last_traffic = tokio::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn next_hop_connections_detect_a_vanished_peer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = || TcpStream::connect(listener.local_addr().unwrap());
        let stream = connect().await.unwrap();
        tune(&stream, Duration::from_secs(5));
        let socket = socket2::SockRef::from(&stream);
        assert!(stream.nodelay().unwrap());
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_secs(5))
        );
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), Duration::from_secs(2));
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), 3);
        // Zero leaves the kernel's defaults.
        let plain = connect().await.unwrap();
        tune(&plain, Duration::ZERO);
        let socket = socket2::SockRef::from(&plain);
        assert_eq!(socket.tcp_user_timeout().unwrap(), None);
        assert!(!socket.keepalive().unwrap());
    }
}
