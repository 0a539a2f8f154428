//! End to end: three real nodes (entry, middle, exit) on 127.0.0.1 and the
//! real `loadgen` as sender and destination; every packet must arrive and
//! every node's counters must add up. Also: `/metrics` passes
//! `promtool check metrics`; SIGTERM answers 503, drains (delayed packets
//! included) and exits 0, and a second SIGTERM cuts the drain short.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{may_skip, Node, Sink};

#[test]
fn three_nodes_deliver_5000_packets_with_zero_loss_and_counters_add_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let knobs = [("PIPELINE_WORKERS", "2"), ("TARGET_THROUGHPUT", "0")];
    let nodes: Vec<Node> = ["entry", "middle", "exit"]
        .iter()
        .zip(&dirs)
        .map(|(role, dir)| Node::start(role, dir.path(), &knobs))
        .collect();
    let urls: Vec<String> = nodes.iter().map(Node::url).collect();

    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args([
            "--nodes",
            &urls.join(","),
            "--packets",
            "5000",
            "--json",
            "--timeout",
            "120",
        ])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(report["sent"], 5000, "{report}");
    assert_eq!(report["delivered"], 5000, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["throughput_pps"].as_f64().unwrap() > 0.0);
    for p in ["p50", "p95", "p99"] {
        assert!(report["latency_ms"][p].as_f64().unwrap() > 0.0, "{report}");
    }
    assert!(out.status.success(), "loadgen exit {:?}", out.status);

    let [entry, middle, exit] = [&nodes[0], &nodes[1], &nodes[2]].map(Node::wait_quiescent);
    for (name, m) in [("entry", &entry), ("middle", &middle)] {
        assert_eq!(m.received(), 5000.0, "{name}");
        assert_eq!(m.forwarded(), 5000.0, "{name}");
        assert_eq!(m.delivered(), 0.0, "{name}");
        assert_eq!(m.dropped_total(), 0.0, "{name}");
    }
    assert_eq!(exit.received(), 5000.0);
    assert_eq!(exit.forwarded(), 0.0);
    assert_eq!(exit.delivered(), 5000.0);
    assert_eq!(exit.dropped_total(), 0.0);
    assert_eq!(exit.get("mixnode_processing_seconds_count"), 5000.0);

    let status = nodes[2].status();
    assert_eq!(status["role"], "exit");
    assert_eq!(status["counters"]["delivered"], 5000);
    assert_eq!(status["mix_address"], nodes[2].mix_address());
}

#[test]
fn metrics_pass_promtool_check() {
    let promtool = std::path::Path::new("/usr/local/bin/promtool");
    let promtool = if promtool.exists() {
        promtool.to_path_buf()
    } else if let Ok(found) = which("promtool") {
        found
    } else {
        may_skip("promtool");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("middle", dir.path(), &[]);
    // Put some traffic through so every series has a value.
    let sink = Sink::start();
    let packets = common::packets_via(node.public_key(), &node.mix_address(), &sink.address, 20);
    let mut stream = std::net::TcpStream::connect(node.mix_address()).unwrap();
    for p in &packets {
        stream.write_all(p).unwrap();
    }
    stream.write_all(&packets[0]).unwrap(); // a replay
                                            // A deliver instruction at a middle node: dropped as `role`.
    let misrouted = common::packet_for_exit(
        node.public_key(),
        &node.mix_address(),
        &sink.address,
        std::time::Duration::ZERO,
    );
    stream.write_all(&misrouted).unwrap();
    common::eventually(30, "packets forwarded", || sink.count() == 20);
    common::eventually(30, "role drop counted", || {
        node.metrics().dropped("role") == 1.0
    });
    let (_, body) = node.get("/metrics").unwrap();
    for name in [
        "mixnode_packets_received_total",
        "mixnode_packets_forwarded_total",
        "mixnode_packets_delivered_total",
        "mixnode_packets_dropped_total{reason=\"replay\"} 1",
        "mixnode_packets_dropped_total{reason=\"role\"} 1",
        "mixnode_processing_seconds_bucket{le=\"+Inf\"}",
        "mixnode_queue_depth",
        "mixnode_build_info{version=\"",
    ] {
        assert!(body.contains(name), "missing {name} in\n{body}");
    }
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_stops_accepting_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("middle", dir.path(), &[("PIPELINE_WORKERS", "1")]);
    let sink = Sink::start();
    let packets = common::packets_via(node.public_key(), &node.mix_address(), &sink.address, 200);
    let mut stream = std::net::TcpStream::connect(node.mix_address()).unwrap();
    for p in &packets {
        stream.write_all(p).unwrap();
    }
    common::eventually(30, "all packets read", || {
        node.metrics().received() == 200.0
    });
    let mix = node.mix_address();
    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    // Everything that was inside went on before the exit (the sink's reader
    // thread may lag the node's exit by a moment).
    common::eventually(5, "all 200 packets at the sink", || sink.count() == 200);
    assert!(
        std::net::TcpStream::connect(mix).is_err(),
        "mix port still accepting"
    );
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(tool))
                .find(|p| p.exists())
        })
        .ok_or(())
}

/// A middle node holding one packet for `delay` in its delay queue, already
/// sent SIGTERM and answering 503 on /health while it drains.
fn draining_node_holding_one_packet(delay: std::time::Duration) -> (tempfile::TempDir, Node, Sink) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("middle", dir.path(), &[("MAX_DELAY_MS", "10000")]);
    let sink = Sink::start();
    let packet =
        common::packet_with_delay(node.public_key(), &node.mix_address(), &sink.address, delay);
    std::net::TcpStream::connect(node.mix_address())
        .unwrap()
        .write_all(&packet)
        .unwrap();
    common::eventually(20, "packet in the delay queue", || {
        node.metrics().get("mixnode_queue_depth") == 1.0
    });
    node.send_sigterm();
    common::eventually(5, "health 503 while draining", || {
        matches!(node.get("/health"), Ok((503, _)))
    });
    (dir, node, sink)
}

#[test]
fn draining_node_answers_503_and_still_sends_delayed_packets() {
    use std::time::Duration;
    let (_dir, mut node, sink) = draining_node_holding_one_packet(Duration::from_millis(2500));
    assert_eq!(sink.count(), 0, "released before its delay");
    let status = node.wait_exit();
    assert!(status.success(), "exit status {status}");
    // The node wrote it before exiting; the sink's reader thread may lag.
    common::eventually(5, "the delayed packet sent before exit", || {
        sink.count() == 1
    });
}

#[test]
fn second_sigterm_cuts_the_drain_short() {
    use std::time::{Duration, Instant};
    // Held 9.5 s: past the 8 s drain deadline, so only a cut drain ends
    // the process before 8 s; anything under 7.5 s shows the cut.
    let (_dir, mut node, sink) = draining_node_holding_one_packet(Duration::from_millis(9500));
    let started = Instant::now();
    let status = node.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(
        started.elapsed() < Duration::from_millis(7500),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(sink.count(), 0);
}
