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
        "error: --packets many: expected a positive integer"
    );
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
