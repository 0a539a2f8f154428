//! The binary's configuration surface: a bad variable (out of its range,
//! contradictory database settings, an unusable key file, an empty DATA_DIR)
//! exits 2 with one line naming it; the key survives restarts with mode 0600; `mixnode healthcheck`
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
            "error: PIPELINE_WORKERS=abc: expected an integer from 1 to 64 (threads)",
        ),
        (
            "PIPELINE_WORKERS",
            "100000",
            "error: PIPELINE_WORKERS=100000: expected an integer from 1 to 64",
        ),
        (
            "BATCH_SIZE",
            "0",
            "error: BATCH_SIZE=0: expected an integer from 1 to 1024",
        ),
        (
            "BATCH_SIZE",
            "1000000000",
            "error: BATCH_SIZE=1000000000: expected an integer from 1 to 1024",
        ),
        (
            "BATCH_SIZE",
            "99999999999999999999",
            "error: BATCH_SIZE=99999999999999999999: expected",
        ),
        (
            "POOL_SIZE",
            "-3",
            "error: POOL_SIZE=-3: expected an integer from 1 to 1000000",
        ),
        (
            "POOL_SIZE",
            "18446744073709551615",
            "error: POOL_SIZE=18446744073709551615: expected",
        ),
        (
            "MAX_QUEUE_DEPTH",
            "lots",
            "error: MAX_QUEUE_DEPTH=lots: expected an integer",
        ),
        (
            "MAX_QUEUE_DEPTH",
            "1000000000",
            "error: MAX_QUEUE_DEPTH=1000000000: expected an integer from 1 to 1000000",
        ),
        (
            "MAX_DELAY_MS",
            "99000",
            "error: MAX_DELAY_MS=99000: expected an integer from 0 to 10000",
        ),
        (
            "MAX_CONNECTIONS",
            "0",
            "error: MAX_CONNECTIONS=0: expected an integer from 1",
        ),
        (
            "MIX_READ_TIMEOUT_MS",
            "1",
            "error: MIX_READ_TIMEOUT_MS=1: expected",
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
        (
            "MIX_PEERS",
            "a b:1",
            "error: MIX_PEERS=a b:1: expected a comma-separated list",
        ),
        (
            "DATA_DIR",
            "",
            "error: DATA_DIR=: expected a directory path",
        ),
        (
            "DATABASE_PASSWORD_FILE",
            "/nonexistent",
            "error: DATABASE_PASSWORD_FILE is set without DATABASE_URL",
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
fn literal_password_beside_a_password_file_exits_2_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fromfile\n").unwrap();
    let out = run_with(&[
        ("NODE_TYPE", "entry"),
        ("DATA_DIR", dir.path().to_str().unwrap()),
        ("DATABASE_URL", "postgres://fog:literal@postgres:5432/fog"),
        ("DATABASE_PASSWORD_FILE", pw.to_str().unwrap()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("carries a password too"), "{stderr}");
    assert!(!stderr.contains("literal"), "{stderr}");
}

/// Runs the node against a DATA_DIR whose node.key was made by `make`;
/// it must exit 2 promptly with one line containing `want`.
fn refuses_key(make: impl FnOnce(&std::path::Path), want: &str) {
    let dir = tempfile::tempdir().unwrap();
    make(&dir.path().join("node.key"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_mixnode"))
        .env_clear()
        .envs([
            ("NODE_TYPE", "entry"),
            ("DATA_DIR", dir.path().to_str().unwrap()),
            ("NODE_PORT", &common::free_port().to_string()),
            ("MIX_PORT", &common::free_port().to_string()),
            ("BIND_ADDR", "127.0.0.1"),
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("node hung on a key file that should be refused ({want})");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{want}: {stderr}");
    assert!(stderr.contains(want), "{want}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[test]
fn hostile_key_files_exit_2_promptly_with_one_line() {
    use std::fs;
    refuses_key(
        |p| {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
        },
        "is not a regular file",
    );
    refuses_key(
        |p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        "is not a regular file",
    );
    let private = |p: &std::path::Path, bytes: &[u8]| {
        fs::write(p, bytes).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap();
    };
    refuses_key(|p| private(p, &[0u8; 32]), "is all zeros");
    refuses_key(|p| private(p, &[1u8; 4096]), "holds 4096 bytes");
    refuses_key(
        |p| {
            fs::write(p, [7u8; 32]).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o666)).unwrap();
        },
        "readable by others; run `chmod 600",
    );
}

#[test]
fn fix_key_permissions_tightens_a_loose_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _node = Node::start("entry", dir.path(), &[("FIX_KEY_PERMISSIONS", "true")]);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
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

/// The harness itself: a port taken between its choice and the node's bind
/// (here held by a listener of the test) makes the node exit with "Address
/// already in use", and the harness starts it again on new ports.
#[test]
fn a_node_whose_port_is_taken_starts_again_on_new_ports() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_on("entry", dir.path(), &[], None, taken);
    assert_ne!(node.http_port, taken);
    assert_eq!(node.get("/health").unwrap().0, 200);
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
