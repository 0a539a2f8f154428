//! Per-hop packet processing benchmark, all in one run so the figures are
//! comparable on the same machine and load: (a) our unwrap at the first mix
//! of a 3-mix route, (b) `sphinx-packet` 0.8's forward-hop processing of a
//! 2413-byte packet, (c) one X25519 with aws-lc-rs (the floor for any
//! one-DH-per-hop format), plus informational rows (owned unwrap, packet
//! build, replay filter). Each figure is the median of 5 rounds of 2000
//! iterations after a warm-up. `--json` prints one machine-readable line.
//!
//! Run: `cargo bench -p mixnode --bench per_hop [-- --json]`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use mixnode::packet::ReplayTag;
use mixnode::packet::{
    build_packet, unwrap_in_place, unwrap_packet, RouteHop, SecretKey, PACKET_LEN, PAYLOAD_LEN,
};
use mixnode::replay::ReplayFilter;
use sphinx_packet::header::delays::Delay;
use sphinx_packet::route::{Destination, DestinationAddressBytes, Node, NodeAddressBytes};
use sphinx_packet::{ProcessedPacketData, SphinxPacket, SphinxPacketBuilder};

const WARMUP: usize = 300;
const ITERATIONS: usize = 2000;
const ROUNDS: usize = 5;
/// The sphinx-packet size the reference figure was measured at.
const SPHINX_PACKET_LEN: usize = 2413;

/// Median over rounds of the mean time per iteration, in microseconds.
fn measure(mut iteration: impl FnMut()) -> f64 {
    for _ in 0..WARMUP {
        iteration();
    }
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                iteration();
            }
            start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("system RNG");
    out
}

/// (a) Our first-hop unwrap of a 3-mix + destination packet, in place
/// (including the copy into the working buffer a node would receive into).
fn ours() -> (f64, f64, f64) {
    let keys: Vec<SecretKey> = (0..4).map(|_| SecretKey::generate()).collect();
    let route: Vec<RouteHop> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| RouteHop {
            address: format!("mixnode-{}:1789", i + 1),
            public_key: key.public_key(),
            delay: Duration::from_millis(15),
        })
        .collect();
    let payload = vec![0x5a; PAYLOAD_LEN];
    let packet = build_packet(&route, &payload).expect("build");
    let mut buffer = vec![0u8; PACKET_LEN];
    let in_place = measure(|| {
        buffer.copy_from_slice(&packet);
        black_box(unwrap_in_place(&keys[0], &mut buffer).expect("unwrap"));
    });
    let owned = measure(|| {
        black_box(unwrap_packet(&keys[0], black_box(&packet)).expect("unwrap"));
    });
    let build = measure(|| {
        black_box(build_packet(&route, &payload).expect("build"));
    });
    (in_place, owned, build)
}

/// (b) sphinx-packet 0.8: parse + process at the first of 3 mixes.
fn sphinx() -> (f64, usize) {
    let secrets: Vec<x25519_dalek::StaticSecret> = (0..3)
        .map(|_| x25519_dalek::StaticSecret::from(random_bytes::<32>()))
        .collect();
    let route: Vec<Node> = secrets
        .iter()
        .map(|secret| {
            Node::new(
                NodeAddressBytes::from_bytes(random_bytes()),
                x25519_dalek::PublicKey::from(secret),
            )
        })
        .collect();
    let destination = Destination::new(
        DestinationAddressBytes::from_bytes(random_bytes()),
        random_bytes(),
    );
    let delays = vec![Delay::new_from_millis(15); 3];
    let header_len = {
        let probe = SphinxPacketBuilder::new()
            .with_payload_size(1024)
            .build_packet(b"x", &route, &destination, &delays)
            .expect("sphinx build");
        probe.len() - 1024
    };
    let message = vec![0x5a; 1024];
    let packet = SphinxPacketBuilder::new()
        .with_payload_size(SPHINX_PACKET_LEN - header_len)
        .build_packet(&message, &route, &destination, &delays)
        .expect("sphinx build");
    let bytes = packet.to_bytes();
    let micros = measure(|| {
        let packet = SphinxPacket::from_bytes(black_box(&bytes)).expect("sphinx parse");
        match packet.process(&secrets[0]).expect("sphinx process").data {
            ProcessedPacketData::ForwardHop {
                next_hop_packet, ..
            } => {
                black_box(next_hop_packet);
            }
            ProcessedPacketData::FinalHop { .. } => panic!("expected a forward hop"),
        }
    });
    (micros, bytes.len())
}

/// (c) One X25519 with the crate the format uses (aws-lc-rs).
fn x25519() -> f64 {
    let ours = PrivateKey::generate(&agreement::X25519).expect("keygen");
    let peer = PrivateKey::generate(&agreement::X25519).expect("keygen");
    let peer_public = peer.compute_public_key().expect("public key");
    let peer_bytes = peer_public.as_ref().to_vec();
    measure(|| {
        let peer = UnparsedPublicKey::new(&agreement::X25519, &peer_bytes);
        agreement::agree(&ours, peer, (), |secret| {
            black_box(secret);
            Ok(())
        })
        .expect("agree");
    })
}

/// Replay filter check-and-insert of fresh tags (1M-packet filter).
fn replay_filter() -> (f64, usize) {
    let filter = ReplayFilter::new(1_000_000, 0);
    let mut counter = 0u64;
    let micros = measure(|| {
        counter += 1;
        let mut tag = [0u8; 16];
        tag[..8].copy_from_slice(&counter.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
        tag[8..].copy_from_slice(&counter.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).to_le_bytes());
        black_box(filter.check_and_insert(&ReplayTag(tag)));
    });
    (micros, filter.memory_bytes())
}

fn main() {
    let json = std::env::args().any(|arg| arg == "--json");
    let (per_hop, per_hop_owned, build) = ours();
    let (sphinx_per_hop, sphinx_len) = sphinx();
    let x25519 = x25519();
    let (replay, replay_memory) = replay_filter();
    let speedup = sphinx_per_hop / per_hop;
    if json {
        println!(
            "{{\"per_hop_us\":{per_hop:.2},\"sphinx_packet_per_hop_us\":{sphinx_per_hop:.2},\
             \"x25519_us\":{x25519:.2},\"speedup\":{speedup:.2},\"per_hop_owned_us\":{per_hop_owned:.2},\
             \"build_4_layers_us\":{build:.2},\"replay_check_us\":{replay:.3},\
             \"packet_len\":{PACKET_LEN},\"sphinx_packet_len\":{sphinx_len}}}"
        );
        return;
    }
    println!("per-hop processing, median of {ROUNDS} rounds x {ITERATIONS} iterations");
    println!("{:<52} {:>10} {:>10}", "what", "µs", "packets/s");
    let rows = [
        (
            format!("ours: unwrap_in_place, first of 3 mixes ({PACKET_LEN} B)"),
            per_hop,
        ),
        ("ours: unwrap_packet (owned Vec)".to_string(), per_hop_owned),
        (
            format!("sphinx-packet 0.8: forward hop ({sphinx_len} B)"),
            sphinx_per_hop,
        ),
        ("X25519 (aws-lc-rs), one DH".to_string(), x25519),
        (
            "ours: build_packet, 3 mixes + destination".to_string(),
            build,
        ),
        (
            format!("replay filter check (1M cap, {} MiB)", replay_memory >> 20),
            replay,
        ),
    ];
    for (what, micros) in rows {
        println!("{what:<52} {micros:>10.2} {:>10.0}", 1e6 / micros);
    }
    println!("speedup over sphinx-packet: {speedup:.2}x (target >= 3x)");
}
