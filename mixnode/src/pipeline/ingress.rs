//! The mix port: accepts TCP connections (at most [`MAX_INBOUND_CONNECTIONS`])
//! and reads fixed PACKET_LEN frames. Each read fills a buffer of BATCH_SIZE
//! frames, so whatever complete frames one read returns become one batch for
//! the workers. A connection that ends mid-frame counts that frame as
//! received and dropped `malformed`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::Instant;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Inbound, Shared};
use crate::metrics::DropReason;
use crate::packet::PACKET_LEN;

/// Connections beyond this are closed at once (bounds reader memory).
pub const MAX_INBOUND_CONNECTIONS: usize = 256;

/// Accepts connections until `stop` turns true, then returns (dropping the
/// listener so new connections are refused).
pub async fn accept_loop(
    listener: TcpListener,
    to_workers: mpsc::Sender<Vec<Inbound>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if shared.metrics.inbound_connections.load(Relaxed) >= MAX_INBOUND_CONNECTIONS {
                        tracing::warn!(%peer, "too many inbound connections; closing");
                        continue;
                    }
                    tracing::debug!(%peer, "inbound connection");
                    tokio::spawn(read_frames(stream, to_workers.clone(), shared.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn read_frames(
    mut stream: TcpStream,
    to_workers: mpsc::Sender<Vec<Inbound>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    metrics.inbound_connections.fetch_add(1, Relaxed);
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; PACKET_LEN * shared.config.batch_size];
    let mut filled = 0;
    while !*stop.borrow() {
        let read = tokio::select! {
            read = stream.read(&mut buf[filled..]) => read,
            _ = stop.changed() => break,
        };
        match read {
            Ok(0) | Err(_) => {
                if filled > 0 {
                    metrics.received.fetch_add(1, Relaxed);
                    metrics.drop_packets(DropReason::Malformed, 1);
                }
                break;
            }
            Ok(n) => filled += n,
        }
        let frames = filled / PACKET_LEN;
        if frames == 0 {
            continue;
        }
        metrics.received.fetch_add(frames as u64, Relaxed);
        let wait = shared.admission.reserve(frames);
        if !wait.is_zero() {
            // Paced: stop reading (TCP pushes back) until the tokens are due.
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
        let admitted = shared.admission.enqueue(&metrics.queue_depth, frames);
        if admitted < frames {
            metrics.drop_packets(DropReason::Overload, (frames - admitted) as u64);
        }
        if admitted > 0 {
            let now = Instant::now();
            let batch: Vec<Inbound> = buf[..admitted * PACKET_LEN]
                .chunks_exact(PACKET_LEN)
                .map(|frame| Inbound {
                    frame: frame.to_vec(),
                    received: now,
                })
                .collect();
            if to_workers.send(batch).is_err() {
                metrics.queue_depth.fetch_sub(admitted, Relaxed);
                metrics.drop_packets(DropReason::Shutdown, admitted as u64);
            }
        }
        buf.copy_within(frames * PACKET_LEN..filled, 0);
        filled -= frames * PACKET_LEN;
    }
    metrics.inbound_connections.fetch_sub(1, Relaxed);
}
