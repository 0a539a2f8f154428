//! The mix port: accepts TCP connections within the limits of
//! [`super::sources`] (refusals are counted, never only logged) and reads
//! fixed PACKET_LEN frames. Each read fills a buffer of BATCH_SIZE frames,
//! so whatever complete frames one read returns become one batch for the
//! workers. Every connection has deadlines: its first frame, and any frame
//! once started, must complete within MIX_READ_TIMEOUT_MS (slow senders
//! cannot hold a slot byte by byte), and a connection silent for
//! MIX_IDLE_TIMEOUT_MS is closed. When the queue is full, or the sender holds
//! more than its fair share of it, the reader stops reading, so TCP flow
//! control slows the sender, for as long as it takes; only a sender above
//! its fair share for [`OVER_SHARE_GRACE`] has frames dropped as `overload`. A connection that ends mid-frame counts that frame
//! as received and dropped `malformed`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant as TokioInstant;

use super::sources::Slot;
use super::{Inbound, Shared};
use crate::metrics::{ConnEvent, DropReason};
use crate::packet::PACKET_LEN;
use crate::warn_limited;
use crate::warnings::Warning;

/// How long a sender above its fair share may wait for room before its
/// frames are dropped.
pub const OVER_SHARE_GRACE: Duration = Duration::from_secs(1);

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
                Ok((stream, peer)) => match shared.sources.admit(peer.ip()) {
                    Ok(slot) => {
                        tracing::debug!(%peer, "inbound connection");
                        tokio::spawn(read_frames(stream, slot, to_workers.clone(), shared.clone(), stop.clone()));
                    }
                    Err(event) => {
                        shared.metrics.conn_event(event);
                        warn_limited!(shared.metrics.warnings, Warning::ConnectionRefused, %peer, reason = event.labels().1, "refusing inbound mix connection");
                    }
                },
                Err(e) => {
                    warn_limited!(shared.metrics.warnings, Warning::AcceptFailed, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn read_frames(
    mut stream: TcpStream,
    slot: Slot,
    to_workers: mpsc::Sender<Vec<Inbound>>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let metrics = &shared.metrics;
    let config = &shared.config;
    metrics.inbound_connections.fetch_add(1, Relaxed);
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; PACKET_LEN * config.batch_size];
    let mut filled = 0;
    let mut established = false;
    let mut last_byte = TokioInstant::now();
    // The frame being read must complete by then (the first one from accept).
    let mut frame_deadline = Some(last_byte + config.read_timeout);
    while !*stop.borrow() {
        let idle_at = last_byte + config.idle_timeout;
        let (wake, on_wake) = match frame_deadline {
            Some(d) if d < idle_at => (d, ConnEvent::ClosedReadTimeout),
            _ => (idle_at, ConnEvent::ClosedIdle),
        };
        let read = tokio::select! {
            read = stream.read(&mut buf[filled..]) => read,
            _ = tokio::time::sleep_until(wake) => {
                metrics.conn_event(on_wake);
                Ok(0)
            }
            _ = stop.changed() => break,
        };
        match read {
            Ok(0) | Err(_) => {
                // Cut short (end, error or deadline) mid-frame.
                if filled > 0 {
                    metrics.received.fetch_add(1, Relaxed);
                    metrics.drop_packets(DropReason::Malformed, 1);
                }
                break;
            }
            Ok(n) => filled += n,
        }
        last_byte = TokioInstant::now();
        let frames = filled / PACKET_LEN;
        if frames == 0 {
            frame_deadline.get_or_insert(last_byte + config.read_timeout);
            continue;
        }
        if !established {
            slot.established();
            established = true;
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
        let admitted = admit(&shared, &slot, frames, &mut stop).await;
        if admitted < frames {
            metrics.drop_packets(DropReason::Overload, (frames - admitted) as u64);
        }
        if admitted > 0 {
            let now = Instant::now();
            let batch: Vec<Inbound> = buf[..admitted * PACKET_LEN]
                .chunks_exact(PACKET_LEN)
                .zip(slot.tickets(admitted))
                .map(|(frame, ticket)| Inbound {
                    frame: frame.to_vec(),
                    received: now,
                    ticket,
                })
                .collect();
            if let Err(unsent) = to_workers.send(batch) {
                // Dropping the batch gives its queue slots back.
                metrics.drop_packets(DropReason::Shutdown, unsent.0.len() as u64);
            }
        }
        buf.copy_within(frames * PACKET_LEN..filled, 0);
        filled -= frames * PACKET_LEN;
        last_byte = TokioInstant::now();
        frame_deadline = (filled > 0).then(|| last_byte + config.read_timeout);
    }
    metrics.inbound_connections.fetch_sub(1, Relaxed);
}

/// Counts `frames` packets of this connection into the queue, waiting
/// (without reading, so TCP pushes back) while the queue is full or the
/// source is above its fair share. Returns how many were admitted; the rest
/// are to be dropped.
async fn admit(
    shared: &Shared,
    slot: &Slot,
    frames: usize,
    stop: &mut watch::Receiver<bool>,
) -> usize {
    let sources = &shared.sources;
    let mut admitted = sources.take(slot.source(), frames);
    if admitted == frames {
        return admitted;
    }
    shared.metrics.backpressure_waits.fetch_add(1, Relaxed);
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    while admitted < frames && !*stop.borrow() {
        // A sender within its share waits as long as it takes (its frames
        // stay in its socket); one above its share is dropped after a grace.
        if sources.over_share(slot.source(), frames - admitted)
            && started.elapsed() >= OVER_SHARE_GRACE
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => break,
        }
        pause = (pause * 2).min(Duration::from_millis(8));
        admitted += sources.take(slot.source(), frames - admitted);
    }
    admitted
}
