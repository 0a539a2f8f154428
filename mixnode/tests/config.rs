//! The binary's configuration surface: a bad variable exits 2 with one line
//! naming it; the key survives restarts with mode 0600; `mixnode healthcheck`
//! exits 0 against a healthy node and 1 when nothing answers;
//! REPLAY_CAPACITY sizes the replay filter.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::Node;

fn run_with(vars: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mixnode"))
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn bad_env_value_exits_2_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cases = [
        (
            "PIPELINE_WORKERS",
            "abc",
            "error: PIPELINE_WORKERS=abc: expected a positive integer",
        ),
        (
            "BATCH_SIZE",
            "0",
            "error: BATCH_SIZE=0: expected a positive integer",
        ),
        (
            "POOL_SIZE",
            "-3",
            "error: POOL_SIZE=-3: expected a positive integer",
        ),
        (
            "MAX_QUEUE_DEPTH",
            "lots",
            "error: MAX_QUEUE_DEPTH=lots: expected a positive integer",
        ),
        (
            "TARGET_THROUGHPUT",
            "fast",
            "error: TARGET_THROUGHPUT=fast: expected",
        ),
        (
            "NODE_PORT",
            "99999",
            "error: NODE_PORT=99999: expected a TCP port",
        ),
        ("MIX_PORT", "x", "error: MIX_PORT=x: expected a TCP port"),
        (
            "BIND_ADDR",
            "everywhere",
            "error: BIND_ADDR=everywhere: expected an IP address",
        ),
        (
            "NODE_TYPE",
            "gateway",
            "error: NODE_TYPE=gateway: expected entry, middle or exit",
        ),
        (
            "RUST_LOG",
            "[[[",
            "error: RUST_LOG=[[[: expected a log filter",
        ),
        (
            "REPLAY_CAPACITY",
            "1e6",
            "error: REPLAY_CAPACITY=1e6: expected an integer from 1024 to 1000000000",
        ),
        (
            "REPLAY_CAPACITY",
            "99999999999",
            "error: REPLAY_CAPACITY=99999999999: expected an integer",
        ),
    ];
    for (name, value, want) in cases {
        let mut vars = vec![
            ("NODE_TYPE", "entry"),
            ("DATA_DIR", data),
            ("NODE_PORT", "1"),
            ("MIX_PORT", "2"),
        ];
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value));
        let out = run_with(&vars);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}={value}: {stderr}");
        assert!(stderr.starts_with(want), "{name}={value}: got {stderr:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    }
    let out = run_with(&[("DATA_DIR", data)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE_TYPE is not set"));
}

#[test]
fn key_persists_across_restart_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start("entry", dir.path(), &[]);
    let before = node.status()["public_key"].as_str().unwrap().to_string();
    assert_eq!(before.len(), 64, "hex public key: {before}");
    let key_file = dir.path().join("node.key");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "key file mode {mode:o}");
    node.restart();
    let after = node.status()["public_key"].as_str().unwrap().to_string();
    assert_eq!(before, after, "public key changed across restart");
    assert_eq!(
        node.status()["id"].as_str().unwrap(),
        format!("entry-{}", &before[..12])
    );
}

#[test]
fn healthcheck_subcommand_exits_0_when_healthy_and_1_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start("exit", dir.path(), &[]);
    let check = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_mixnode"))
            .arg("healthcheck")
            .env_clear()
            .env("NODE_PORT", port.to_string())
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(check(node.http_port), Some(0));
    assert_eq!(check(common::free_port()), Some(1));
}

#[test]
fn replay_capacity_sizes_the_replay_filter() {
    let dir = tempfile::tempdir().unwrap();
    let small = Node::start("middle", dir.path(), &[("REPLAY_CAPACITY", "100000")]);
    let filter = &small.status()["replay_filter"];
    assert_eq!(filter["capacity"], 100_000, "{filter}");
    let bytes = filter["bytes"].as_f64().unwrap();
    // 28.755 bits per tag: about 3.6 bytes each.
    assert!((355_000.0..365_000.0).contains(&bytes), "{bytes}");
    assert_eq!(small.metrics().get("mixnode_replay_filter_bytes"), bytes);
    drop(small);

    let dir = tempfile::tempdir().unwrap();
    let default = Node::start("middle", dir.path(), &[]);
    let filter = &default.status()["replay_filter"];
    assert_eq!(filter["capacity"], 10_000_000, "{filter}");
    let bytes = filter["bytes"].as_f64().unwrap();
    assert!((35.9e6..36.0e6).contains(&bytes), "{bytes}");
}
