//! Packet generation for `loadgen`, streamed with bounded memory: builder
//! threads (one per core) build chunks of [`CHUNK`] packets into a channel
//! that holds at most [`PREBUILD`] packets, so a run of any length keeps
//! about `PREBUILD` × 2.7 KB of packets in memory. A run of at most
//! `PREBUILD` packets is built completely before the first one is sent, so
//! the build cost never limits the send rate of a short run.

use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Duration;

use super::{NodeInfo, Xorshift, MAGIC};
use crate::packet::{build_packet, RouteHop};

/// Packets built ahead of the sender at most (about 135 MB).
pub const PREBUILD: usize = 50_000;
/// Packets per chunk handed to the sender.
pub const CHUNK: usize = 256;

/// Consecutive sequence numbers `first..first + packets.len()`.
pub struct Chunk {
    pub first: usize,
    pub packets: Vec<Vec<u8>>,
}

/// Chunks the sender will receive for `count` packets.
pub fn chunks(count: usize) -> usize {
    count.div_ceil(CHUNK)
}

/// Starts the builder threads; they stop early when the receiver is dropped.
pub fn spawn(
    nodes: &[NodeInfo],
    destination: &RouteHop,
    count: usize,
    run_id: u64,
    mean_delay: Duration,
) -> Receiver<Result<Chunk, String>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chunks(count).max(1));
    let (tx, rx) = sync_channel(PREBUILD / CHUNK);
    for t in 0..threads {
        let (tx, nodes, destination) = (tx.clone(), nodes.to_vec(), destination.clone());
        std::thread::spawn(move || {
            let mut rng = Xorshift(run_id ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
            for c in (t..chunks(count)).step_by(threads) {
                let first = c * CHUNK;
                let built: Result<Vec<Vec<u8>>, String> = (first..(first + CHUNK).min(count))
                    .map(|seq| build_one(&nodes, &destination, run_id, seq, mean_delay, &mut rng))
                    .collect();
                let failed = built.is_err();
                if tx
                    .send(built.map(|packets| Chunk { first, packets }))
                    .is_err()
                    || failed
                {
                    return;
                }
            }
        });
    }
    rx
}

fn build_one(
    nodes: &[NodeInfo],
    destination: &RouteHop,
    run_id: u64,
    seq: usize,
    mean_delay: Duration,
    rng: &mut Xorshift,
) -> Result<Vec<u8>, String> {
    let mut route: Vec<RouteHop> = nodes
        .iter()
        .map(|n| RouteHop {
            address: n.mix_address.clone(),
            public_key: n.public_key,
            delay: rng.exponential(mean_delay),
        })
        .collect();
    route.push(destination.clone());
    let mut payload = Vec::with_capacity(20);
    payload.extend_from_slice(MAGIC);
    payload.extend_from_slice(&run_id.to_le_bytes());
    payload.extend_from_slice(&(seq as u64).to_le_bytes());
    build_packet(&route, &payload).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SecretKey;

    #[test]
    fn every_sequence_number_is_built_once_in_bounded_chunks() {
        let key = SecretKey::generate().public_key();
        let nodes = [NodeInfo {
            mix_address: "m:1".into(),
            public_key: key,
            role: None,
        }];
        let dest = RouteHop {
            address: "d:1".into(),
            public_key: key,
            delay: Duration::ZERO,
        };
        let count = 3 * CHUNK + 7;
        let rx = spawn(&nodes, &dest, count, 1, Duration::ZERO);
        let mut seen = vec![false; count];
        for _ in 0..chunks(count) {
            let chunk = rx.recv().unwrap().unwrap();
            assert!(chunk.packets.len() <= CHUNK);
            for i in 0..chunk.packets.len() {
                assert!(!std::mem::replace(&mut seen[chunk.first + i], true));
            }
        }
        assert!(seen.iter().all(|s| *s));
    }
}
