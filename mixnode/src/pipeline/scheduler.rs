//! The delay queue: one task owns a binary heap ordered by release time and
//! sleeps until the earliest packet is due. Packets with no delay (or already
//! due) skip the heap. Due packets go to [`Peers::dispatch`]. When the
//! workers hang up, the task releases what is left on schedule and then
//! closes every peer, which flushes their buffers.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use super::egress::{Peers, RETRY};
use super::{Outbound, Shared};

struct Delayed {
    /// When to offer it to its next hop: its release, or a retry.
    due: Instant,
    seq: u64,
    packet: Outbound,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Runs until the workers hang up and every packet has left the node.
pub async fn run(mut from_workers: UnboundedReceiver<Vec<Outbound>>, shared: Arc<Shared>) {
    let mut peers = Peers::new(shared);
    let mut heap: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut open = true;
    while open || !heap.is_empty() {
        let next_due = heap.peek().map(|d| d.0.due);
        tokio::select! {
            biased;
            batch = from_workers.recv(), if open => match batch {
                Some(batch) => {
                    let now = Instant::now();
                    for packet in batch {
                        let (due, back) = if packet.release <= now {
                            (now + RETRY, peers.dispatch(packet))
                        } else {
                            (packet.release, Some(packet))
                        };
                        if let Some(packet) = back {
                            seq += 1;
                            heap.push(Reverse(Delayed { due, seq, packet }));
                        }
                    }
                }
                None => open = false,
            },
            _ = sleep_until(next_due), if next_due.is_some() => {}
        }
        let now = Instant::now();
        let mut retry = Vec::new();
        while heap.peek().is_some_and(|d| d.0.due <= now) {
            if let Some(Reverse(due)) = heap.pop() {
                retry.extend(peers.dispatch(due.packet));
            }
        }
        for packet in retry {
            seq += 1;
            heap.push(Reverse(Delayed {
                due: now + RETRY,
                seq,
                packet,
            }));
        }
    }
    peers.close().await;
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
}
