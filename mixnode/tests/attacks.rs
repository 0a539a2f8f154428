//! The node driven as an attacker would, on loopback against the real
//! binary: idle and slow connections cannot lock senders out (per-source
//! caps, deadlines, established sources preferred, every refusal counted);
//! a mix is no open relay (`unknown_next_hop`, `exit_denied`); long delays
//! are refused (`excessive_delay`) and one sender cannot take another's
//! share of the queue; thousands of next hops are evicted LRU and logged at
//! most once a minute; HTTP slowloris leaves `/health` answering.
//! Attackers connect from 127.0.0.1, legitimate senders from 127.0.0.2.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{connect_from, packets_via, Node, Sink};
use mixnode::packet::PACKET_LEN;

const LEGIT: [u8; 4] = [127, 0, 0, 2];

fn send_all(stream: &mut TcpStream, packets: &[Vec<u8>]) {
    for p in packets {
        stream.write_all(p).unwrap();
    }
}

#[test]
fn idle_and_slow_connections_cannot_lock_out_senders() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        "middle",
        dir.path(),
        &[
            ("MAX_CONNECTIONS", "64"),
            ("MAX_CONNECTIONS_PER_SOURCE", "16"),
            ("MIX_READ_TIMEOUT_MS", "8000"),
            ("MIX_IDLE_TIMEOUT_MS", "6000"),
        ],
    );
    let sink = Sink::start();
    let packets = packets_via(node.public_key(), &node.mix_address(), &sink.address, 201);
    // The legitimate peer has talked to the node before: it is established.
    connect_from(LEGIT, &node.mix_address())
        .write_all(&packets[0])
        .unwrap();
    common::eventually(20, "first packet", || sink.count() == 1);

    // A slowloris: half a frame, then a byte every 300 ms (never idle).
    let mut slow = connect_from([127, 0, 0, 6], &node.mix_address());
    slow.write_all(&packets[1][..PACKET_LEN / 2]).unwrap();
    let dripper = std::thread::spawn(move || {
        while slow.write_all(&[0]).is_ok() {
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    // 300 idle connections from one address, then 16 more from each of
    // three others: per-source cap, then the reserved quarter.
    let mut idle: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(node.mix_address()).ok())
        .collect();
    for last in 3..=5u8 {
        idle.extend((0..16).map(|_| connect_from([127, 0, 0, last], &node.mix_address())));
    }
    common::eventually(20, "refusals counted", || {
        let m = node.metrics();
        let open = m.get("mixnode_inbound_connections");
        assert!(open <= 64.0, "cap not strict: {m:?}");
        m.get("mixnode_connections_refused_total{reason=\"per_source\"}") >= 284.0
            && m.get("mixnode_connections_refused_total{reason=\"reserved\"}") >= 1.0
            && open >= 48.0
    });

    // The established peer still gets in (a reserved slot) and is served.
    let mut legit = connect_from(LEGIT, &node.mix_address());
    send_all(&mut legit, &packets[1..]);
    common::eventually(30, "200 legitimate packets forwarded", || {
        sink.count() == 201
    });
    assert!(node.metrics().get("mixnode_inbound_connections") <= 64.0);

    // Silent connections are closed at the idle timeout; the dripping one,
    // never idle, at the read deadline of its frame.
    common::eventually(20, "idle closes and the read timeout", || {
        let m = node.metrics();
        m.get("mixnode_connections_closed_total{reason=\"read_timeout\"}") == 1.0
            && m.get("mixnode_connections_closed_total{reason=\"idle\"}") >= 48.0
    });
    dripper.join().unwrap();
    assert_eq!(node.metrics().get("mixnode_inbound_connections"), 0.0);
    assert_eq!(node.get("/health").unwrap().0, 200);
    let m = node.wait_quiescent();
    // The half frame was counted as malformed when its connection was cut.
    assert_eq!((m.forwarded(), m.dropped_total()), (201.0, 1.0), "{m:?}");
    drop((idle, legit));
}

#[test]
fn no_open_relay_and_exit_allow_restricts_destinations() {
    let stranger = Sink::start();
    for role in ["entry", "middle"] {
        let mix = Sink::start();
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(role, dir.path(), &[("MIX_PEERS", &mix.address)]);
        let key = node.public_key();
        let mut stream = TcpStream::connect(node.mix_address()).unwrap();
        send_all(
            &mut stream,
            &packets_via(key, &node.mix_address(), &stranger.address, 100),
        );
        send_all(
            &mut stream,
            &packets_via(key, &node.mix_address(), &mix.address, 3),
        );
        common::eventually(20, "relay drops counted", || {
            node.metrics().dropped("unknown_next_hop") == 100.0
        });
        let m = node.wait_quiescent();
        assert_eq!(
            (m.forwarded(), m.dropped_total()),
            (3.0, 100.0),
            "{role}: {m:?}"
        );
        common::eventually(10, "mix got its packets", || mix.count() == 3);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(stranger.count(), 0, "a non-mix listener received packets");

    let allowed = Sink::start();
    let dir = tempfile::tempdir().unwrap();
    let exit = Node::start("exit", dir.path(), &[("EXIT_ALLOW", &allowed.address)]);
    let key = exit.public_key();
    let mut stream = TcpStream::connect(exit.mix_address()).unwrap();
    send_all(
        &mut stream,
        &common::packets_for_exit(key, &exit.mix_address(), &allowed.address, 5),
    );
    send_all(
        &mut stream,
        &common::packets_for_exit(key, &exit.mix_address(), &stranger.address, 7),
    );
    common::eventually(20, "exit_denied", || {
        exit.metrics().dropped("exit_denied") == 7.0
    });
    let m = exit.wait_quiescent();
    assert_eq!((m.delivered(), m.dropped_total()), (5.0, 7.0), "{m:?}");
    assert_eq!(stranger.count(), 0);
}

#[test]
fn long_delays_are_refused_and_one_sender_cannot_starve_another() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        "middle",
        dir.path(),
        &[("MAX_QUEUE_DEPTH", "1000"), ("MAX_DELAY_MS", "4000")],
    );
    let sink = Sink::start();
    let key = node.public_key();
    let addr = node.mix_address();
    let delayed = |delay_ms: u64, n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                common::packet_with_delay(
                    key,
                    &addr,
                    &sink.address,
                    Duration::from_millis(delay_ms),
                )
            })
            .collect()
    };
    // 9.9 s asks: refused outright.
    let mut attacker = TcpStream::connect(&addr).unwrap();
    send_all(&mut attacker, &delayed(9_900, 500));
    common::eventually(20, "excessive_delay counted", || {
        node.metrics().dropped("excessive_delay") == 500.0
    });
    assert_eq!(node.metrics().get("mixnode_queue_depth"), 0.0);

    // 3.9 s asks, within MAX_DELAY_MS, from a second connected attacker:
    // it gets at most its fair share of the 1000-packet queue.
    let flood = delayed(3_900, 3_000);
    let attacker_thread = std::thread::spawn(move || {
        let mut s = attacker;
        for p in &flood {
            if s.write_all(p).is_err() {
                break;
            }
        }
    });
    common::eventually(20, "attacker holds its share", || {
        node.metrics().get("mixnode_queue_depth") >= 400.0
    });
    let legit_sink = Sink::start();
    let legit = packets_via(key, &addr, &legit_sink.address, 300);
    let mut stream = connect_from(LEGIT, &addr);
    send_all(&mut stream, &legit);
    attacker_thread.join().unwrap();
    // Every legitimate packet got through; only the attacker was dropped.
    common::eventually(60, "300 legitimate packets", || legit_sink.count() == 300);
    let m = node.wait_quiescent();
    assert_eq!(m.received(), 500.0 + 3000.0 + 300.0, "{m:?}");
    assert_eq!(m.forwarded(), 300.0 + sink.count() as f64, "{m:?}");
    assert!(m.dropped("overload") > 0.0, "{m:?}");
}

#[test]
fn thousands_of_next_hops_are_evicted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let node = Node::start_logged(
        "exit",
        &dir.path().join("data"),
        &[("MAX_QUEUE_DEPTH", "100000")],
        Some(log.clone()),
    );
    let key = node.public_key();
    let addr = node.mix_address();
    // 4,500 distinct dead destinations (more than the 4,096-entry table).
    let mut stream = TcpStream::connect(&addr).unwrap();
    for port in 0..4_500u32 {
        let dest = format!("127.0.0.1:{}", 20_000 + port);
        stream
            .write_all(&common::packet_for_exit(key, &addr, &dest, Duration::ZERO))
            .unwrap();
    }
    // Then a live one: delivered, not refused for a full table.
    let live = Sink::start();
    send_all(
        &mut stream,
        &common::packets_for_exit(key, &addr, &live.address, 3),
    );
    common::eventually(60, "live destination served", || live.count() == 3);
    let m = node.wait_quiescent();
    assert!(m.get("mixnode_next_hops_evicted_total") >= 400.0, "{m:?}");
    assert_eq!(m.delivered(), 3.0);
    assert!(
        m.get("mixnode_warnings_total{kind=\"peer_unreachable\"}") >= 1000.0,
        "{m:?}"
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    let warned = lines
        .lines()
        .filter(|l| l.contains("cannot connect"))
        .count();
    assert!(warned <= 2, "{warned} warning lines:\n{lines}");
}

#[test]
fn http_slowloris_leaves_health_answering_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("exit", dir.path(), &[]);
    let port = node.http_port;
    let mut held: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for s in &mut held {
        s.write_all(b"GET /he").unwrap();
    }
    let url = format!("{}/health", node.url());
    for _ in 0..20 {
        let got = mixnode::http::get(&url, Duration::from_secs(1));
        assert!(matches!(got, Ok((200, _))), "{got:?}");
    }
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_mixnode"))
        .arg("healthcheck")
        .env_clear()
        .env("NODE_PORT", port.to_string())
        .status()
        .unwrap();
    assert!(check.success());
    // /status stays readable for loadgen, and the slow heads are cut off.
    assert_eq!(node.get("/status").unwrap().0, 200);
    drop(held);
}
