//! `loadgen`'s contract beyond the happy path (covered in e2e.rs): lost
//! packets make it exit 1 with the loss in its JSON; bad flags exit 2 with
//! one line naming the flag; an unreachable node is a one-line error, exit 1;
//! a route whose last node is not an exit is refused before sending.

mod common;

use std::process::Command;

use common::Node;

fn loadgen(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn lost_packets_are_reported_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let exit = Node::start("exit", dir.path(), &[]);
    // Advertise a port nobody listens on: the exit cannot deliver.
    let dead = format!("127.0.0.1:{}", common::free_port());
    let out = loadgen(&[
        "--nodes",
        &exit.url(),
        "--packets",
        "50",
        "--advertise",
        &dead,
        "--timeout",
        "1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["sent"], 50);
    assert_eq!(report["delivered"], 0);
    assert_eq!(report["lost"], 50);
    assert!(String::from_utf8_lossy(&out.stderr).contains("50 of 50 packets were lost"));
    common::eventually(20, "exit counts them unreachable", || {
        exit.metrics().dropped("unreachable") == 50.0
    });
}

#[test]
fn bad_flags_exit_2_and_unreachable_nodes_exit_1() {
    let out = loadgen(&["--nodes", "http://127.0.0.1:1", "--packets", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: --packets many: expected a positive integer up to 20000000 (about 25 bytes of bookkeeping each)"
    );
    let out = loadgen(&["--nodes", "http://127.0.0.1:1", "--packets", "20000001"]);
    assert_eq!(out.status.code(), Some(2));
    let port = common::free_port();
    let out = loadgen(&[
        "--nodes",
        &format!("http://127.0.0.1:{port}"),
        "--packets",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: cannot read http://127.0.0.1:{port}/status"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1);
    assert!(loadgen(&["--help"]).status.success());
}

#[test]
fn last_node_that_is_not_an_exit_is_refused_before_sending() {
    let dir = tempfile::tempdir().unwrap();
    let middle = Node::start("middle", dir.path(), &[]);
    let out = loadgen(&["--nodes", &middle.url(), "--packets", "5", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: {} is a middle node", middle.url())),
        "{stderr}"
    );
    assert!(stderr.contains("NODE_TYPE=exit"), "{stderr}");
    assert!(out.stdout.is_empty());
    // Nothing was sent.
    assert_eq!(middle.metrics().received(), 0.0);
}

/// A fake node: answers every HTTP request on its port with `body` (after
/// `head`), forever.
fn fake_http(head: &'static str, body: impl Fn(&mut std::net::TcpStream) + Send + 'static) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = std::io::Write::write_all(&mut s, head.as_bytes());
            body(&mut s);
        }
    });
    port
}

#[test]
fn huge_status_bodies_and_blocked_writes_are_bounded() {
    // A /status of endless bytes: refused at 4 MiB, not read to the end.
    let port = fake_http("HTTP/1.1 200 OK\r\n\r\n", |s| {
        let chunk = vec![b'x'; 1 << 20];
        while std::io::Write::write_all(s, &chunk).is_ok() {}
    });
    fails_promptly(port, &["--packets", "1"], "larger than 4 MiB");

    // An "entry" that accepts and never reads: the blocked write gives up
    // after --timeout instead of hanging.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mix = sink.local_addr().unwrap().to_string();
    let key = mixnode::packet::SecretKey::generate().public_key();
    let status: &'static str = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n\
             {{\"public_key\":\"{key}\",\"mix_address\":\"{mix}\",\"role\":\"exit\"}}"
        )
        .into_boxed_str(),
    );
    let port = fake_http(status, |_| {});
    let _held = std::thread::spawn(move || {
        let conns: Vec<_> = sink.incoming().take(1).collect();
        std::thread::sleep(std::time::Duration::from_secs(120));
        drop(conns);
    });
    fails_promptly(
        port,
        &["--packets", "5000", "--timeout", "2"],
        "cannot send to the entry node",
    );
}

/// loadgen against the fake node on `port` exits 1 within a minute with
/// `want` in its error.
fn fails_promptly(port: u16, extra: &[&str], want: &str) {
    let started = std::time::Instant::now();
    let nodes = format!("http://127.0.0.1:{port}");
    let mut args = vec!["--nodes", &nodes];
    args.extend_from_slice(extra);
    let out = loadgen(&args);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(want), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

/// A new user's first run (mixnode/README.md, three nodes by hand, no
/// MIX_PEERS): every packet is dropped as `unknown_next_hop`. The relays say
/// so at start-up, and loadgen names the node, the reason and the fix.
#[test]
fn nodes_without_mix_peers_warn_and_loadgen_names_the_drop_reason() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("entry.log");
    let no_peers = [("MIX_PEERS", "")];
    let exit = Node::start("exit", &dir.path().join("exit"), &no_peers);
    let middle = Node::start("middle", &dir.path().join("middle"), &no_peers);
    let entry = Node::start_logged(
        "entry",
        &dir.path().join("entry"),
        &no_peers,
        Some(log.clone()),
    );
    let warning = std::fs::read_to_string(&log).unwrap();
    assert!(
        warning.contains("this entry node knows no mix to relay to")
            && warning.contains("set MIX_PEERS"),
        "the entry warns at start-up: {warning}"
    );
    let out = loadgen(&[
        "--nodes",
        &format!("{},{},{}", entry.url(), middle.url(), exit.url()),
        "--packets",
        "300",
        "--timeout",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "300 of 300 packets were lost: entry ({}) dropped 300 as unknown_next_hop: set MIX_PEERS",
        entry.url()
    );
    assert!(err.contains(&want), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dropped"][0]["reason"], "unknown_next_hop");
    assert_eq!(report["dropped"][0]["packets"], 300);
}
