//! Soak: 60 s of mixed hostile and legitimate traffic against one node.
//! A legitimate peer (127.0.0.2) sends 100 packets/s throughout; at the same
//! time attackers churn idle connections, drip bytes (mix slowloris), send
//! garbage, replays, relays to a non-mix, 9 s delays, a fair-share flood
//! of in-bound delays, and hold HTTP slowloris sockets. Every legitimate
//! packet must arrive, `/health` must answer every second, and the node's
//! RSS must stay under the README's bound for these settings.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{connect_from, packet_with_delay, packets_via, Node, Sink};
use mixnode::packet::{build_packet, SecretKey, PACKET_LEN};

const SECONDS: u64 = 60;
const RATE: u64 = 100;
/// README's formula for these settings (128 connections × 128 frames ×
/// 2648 B read buffers, 2000 queued packets, 3.6 MB replay filter) is about
/// 60 MB above the process's own ~30 MB; this allows generous slack.
const RSS_BOUND: u64 = 200 * 1024 * 1024;

fn hostile(
    stop: &Arc<AtomicBool>,
    every: Duration,
    mut act: impl FnMut() + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let stop = stop.clone();
    std::thread::spawn(move || {
        while !stop.load(Relaxed) {
            act();
            std::thread::sleep(every);
        }
    })
}

#[test]
fn sixty_seconds_of_mixed_attack_and_legitimate_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        "middle",
        dir.path(),
        &[
            ("MAX_QUEUE_DEPTH", "2000"),
            ("REPLAY_CAPACITY", "1000000"),
            ("MAX_CONNECTIONS", "128"),
            ("MAX_CONNECTIONS_PER_SOURCE", "16"),
            ("MIX_READ_TIMEOUT_MS", "1000"),
            ("MIX_IDLE_TIMEOUT_MS", "2000"),
            ("MAX_DELAY_MS", "2000"),
            ("TARGET_THROUGHPUT", "0"),
        ],
    );
    let (key, addr) = (node.public_key(), node.mix_address());
    let legit_sink = Sink::start();
    let attack_sink = Sink::start();
    let total = (SECONDS * RATE) as usize;
    let legit = Arc::new(packets_via(key, &addr, &legit_sink.address, total));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();

    // Idle churn from 127.0.0.1: 20 connections that send one (garbage)
    // frame and then fall silent, renewed every 3 s.
    let a = addr.clone();
    threads.push(hostile(&stop, Duration::from_secs(3), move || {
        let held: Vec<_> = (0..20)
            .filter_map(|_| TcpStream::connect(&a).ok())
            .map(|mut s| {
                let _ = s.write_all(&[0x5A; PACKET_LEN]);
                s
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    }));
    // Mix slowloris from 127.0.0.3: a byte every 200 ms on 8 connections.
    let a = addr.clone();
    threads.push(hostile(&stop, Duration::from_millis(10), move || {
        let mut conns: Vec<_> = (0..8).map(|_| connect_from([127, 0, 0, 3], &a)).collect();
        for _ in 0..20 {
            conns.retain_mut(|c| c.write_all(&[1]).is_ok());
            std::thread::sleep(Duration::from_millis(200));
        }
    }));
    // Garbage, relays to a non-mix and 9 s delays from 127.0.0.5.
    let other = SecretKey::generate().public_key();
    let hop = |a: &str, d| common::hop(a, other, d);
    let to_stranger = build_packet(
        &[
            common::hop(&addr, key, Duration::ZERO),
            hop("evil.example:1789", Duration::ZERO),
            hop("x:1", Duration::ZERO),
        ],
        b"relay me",
    )
    .unwrap();
    let too_slow = packet_with_delay(key, &addr, &attack_sink.address, Duration::from_secs(9));
    let a = addr.clone();
    threads.push(hostile(&stop, Duration::from_millis(20), move || {
        if let Ok(mut s) = TcpStream::connect(&a) {
            let _ = s.write_all(&vec![0xA5; PACKET_LEN * 4]);
            let _ = s.write_all(&to_stranger);
            let _ = s.write_all(&too_slow);
        }
    }));
    // Replays of legitimate packets already delivered, from 127.0.0.6.
    let (a, replays, delivered) = (addr.clone(), legit.clone(), legit_sink.frames.clone());
    threads.push(hostile(&stop, Duration::from_millis(20), move || {
        let done = delivered.load(Relaxed) as usize / 2;
        if done > 0 {
            let mut s = connect_from([127, 0, 0, 6], &a);
            let _ = s.write_all(&replays[done - 1]);
        }
    }));
    // A flood of packets with in-bound delays from 127.0.0.4: it may hold
    // its fair share of the queue, no more.
    let flood: Vec<Vec<u8>> = (0..4000)
        .map(|_| {
            packet_with_delay(
                key,
                &addr,
                &attack_sink.address,
                Duration::from_millis(1900),
            )
        })
        .collect();
    let a = addr.clone();
    let mut flooded = false;
    threads.push(hostile(&stop, Duration::from_millis(100), move || {
        if !flooded {
            let mut s = connect_from([127, 0, 0, 4], &a);
            for p in &flood {
                if s.write_all(p).is_err() {
                    break;
                }
            }
            flooded = true;
        }
    }));
    // HTTP slowloris: 50 sockets holding half a request line, renewed.
    let http = node.http_port;
    threads.push(hostile(&stop, Duration::from_millis(10), move || {
        let held: Vec<_> = (0..50)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", http)).ok())
            .map(|mut s| {
                let _ = s.write_all(b"GET /he");
                s
            })
            .collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(held);
    }));

    // The legitimate peer, paced at RATE packets/s, on one connection.
    let sender = {
        let (a, legit) = (addr.clone(), legit.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut s = connect_from([127, 0, 0, 2], &a);
            for (i, p) in legit.iter().enumerate() {
                let due = started + Duration::from_secs_f64(i as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                s.write_all(p).unwrap();
            }
        })
    };
    let mut peak_rss = 0;
    let url = format!("{}/health", node.url());
    while !sender.is_finished() {
        peak_rss = peak_rss.max(node.rss_bytes());
        let health = mixnode::http::get(&url, Duration::from_secs(2));
        assert!(
            matches!(health, Ok((200, _))),
            "/health during the soak: {health:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    sender.join().unwrap();
    common::eventually(60, "every legitimate packet delivered", || {
        legit_sink.count() == total as u64
    });
    stop.store(true, Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let m = node.metrics();
    eprintln!("soak: peak RSS {} MB, {m:?}", peak_rss / (1 << 20));
    assert!(peak_rss < RSS_BOUND, "peak RSS {peak_rss}");
    for reason in ["malformed", "replay", "unknown_next_hop", "excessive_delay"] {
        assert!(m.dropped(reason) > 0.0, "{reason}: {m:?}");
    }
    assert!(m.get("mixnode_connections_closed_total{reason=\"idle\"}") > 0.0);
    assert!(m.get("mixnode_connections_closed_total{reason=\"read_timeout\"}") > 0.0);
    assert_eq!(node.get("/health").unwrap().0, 200);
}
