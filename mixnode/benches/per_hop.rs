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

/// One benchmarked operation: a label and its iteration body.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Warms every case up, then runs `ROUNDS` rounds in which each case runs
/// `ITERATIONS` times in turn, so load changes on a shared machine hit all
/// cases alike. Returns each case's median round mean, in microseconds.
fn measure_interleaved(cases: &mut [Case<'_>]) -> Vec<f64> {
    for (_, iteration) in cases.iter_mut() {
        for _ in 0..WARMUP {
            iteration();
        }
    }
    let mut rounds = vec![Vec::with_capacity(ROUNDS); cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, iteration)) in cases.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..ITERATIONS {
                iteration();
            }
            rounds[i].push(start.elapsed().as_secs_f64() * 1e6 / ITERATIONS as f64);
        }
    }
    rounds
        .into_iter()
        .map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[ROUNDS / 2]
        })
        .collect()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    aws_lc_rs::rand::fill(&mut out).expect("system RNG");
    out
}

/// A 3-mix + destination route with fresh keys, and a full-payload packet.
struct Ours {
    keys: Vec<SecretKey>,
    route: Vec<RouteHop>,
    payload: Vec<u8>,
    packet: Vec<u8>,
}

fn ours() -> Ours {
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
    Ours {
        keys,
        route,
        payload,
        packet,
    }
}

/// sphinx-packet 0.8: a 2413-byte packet for 3 mixes, and the first mix's key.
struct Sphinx {
    first_secret: x25519_dalek::StaticSecret,
    bytes: Vec<u8>,
}

fn sphinx() -> Sphinx {
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
    Sphinx {
        first_secret: secrets[0].clone(),
        bytes: packet.to_bytes(),
    }
}

fn main() {
    let json = std::env::args().any(|arg| arg == "--json");
    let ours = ours();
    let sphinx = sphinx();
    let own_x25519 = PrivateKey::generate(&agreement::X25519).expect("keygen");
    let peer = PrivateKey::generate(&agreement::X25519).expect("keygen");
    let peer_public = peer
        .compute_public_key()
        .expect("public key")
        .as_ref()
        .to_vec();
    let filter = ReplayFilter::new(1_000_000, 0);
    let mut buffer = vec![0u8; PACKET_LEN];
    let mut counter = 0u64;

    let mut cases: Vec<Case<'_>> = vec![
        // (a) in place, including the copy into the node's receive buffer.
        (
            "ours: unwrap_in_place",
            Box::new(|| {
                buffer.copy_from_slice(&ours.packet);
                black_box(unwrap_in_place(&ours.keys[0], &mut buffer).expect("unwrap"));
            }),
        ),
        (
            "ours: unwrap_packet",
            Box::new(|| {
                black_box(unwrap_packet(&ours.keys[0], black_box(&ours.packet)).expect("unwrap"));
            }),
        ),
        // (b) parse + process at the first of 3 mixes.
        (
            "sphinx-packet",
            Box::new(|| {
                let packet =
                    SphinxPacket::from_bytes(black_box(&sphinx.bytes)).expect("sphinx parse");
                match packet
                    .process(&sphinx.first_secret)
                    .expect("sphinx process")
                    .data
                {
                    ProcessedPacketData::ForwardHop {
                        next_hop_packet, ..
                    } => {
                        black_box(next_hop_packet);
                    }
                    ProcessedPacketData::FinalHop { .. } => panic!("expected a forward hop"),
                }
            }),
        ),
        // (c) one X25519 with the crate the format uses.
        (
            "x25519",
            Box::new(|| {
                let peer = UnparsedPublicKey::new(&agreement::X25519, &peer_public);
                agreement::agree(&own_x25519, peer, (), |secret| {
                    black_box(secret);
                    Ok(())
                })
                .expect("agree");
            }),
        ),
        (
            "build",
            Box::new(|| {
                black_box(build_packet(&ours.route, &ours.payload).expect("build"));
            }),
        ),
        (
            "replay",
            Box::new(|| {
                counter += 1;
                let mut tag = [0u8; 16];
                tag[..8]
                    .copy_from_slice(&counter.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
                tag[8..]
                    .copy_from_slice(&counter.wrapping_mul(0xc2b2_ae3d_27d4_eb4f).to_le_bytes());
                black_box(filter.check_and_insert(&ReplayTag(tag)));
            }),
        ),
    ];
    let figures = measure_interleaved(&mut cases);
    drop(cases);
    let [per_hop, per_hop_owned, sphinx_per_hop, x25519, build, replay] = figures[..] else {
        unreachable!("six cases")
    };
    let sphinx_len = sphinx.bytes.len();
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
    println!("per-hop processing, median of {ROUNDS} interleaved rounds x {ITERATIONS} iterations");
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
            format!(
                "replay filter check (1M cap, {:.1} MB)",
                filter.memory_bytes() as f64 / 1e6
            ),
            replay,
        ),
    ];
    for (what, micros) in rows {
        println!("{what:<52} {micros:>10.2} {:>10.0}", 1e6 / micros);
    }
    println!("speedup over sphinx-packet: {speedup:.2}x (target >= 3x)");
}
