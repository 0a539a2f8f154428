use super::*;
use std::collections::HashMap;

fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(&|name| map.get(name).cloned())
}

#[test]
fn defaults_follow_the_contract() {
    let c = parse(&[("NODE_TYPE", "middle")]).unwrap();
    assert_eq!(c.role, Role::Middle);
    assert_eq!((c.node_port, c.mix_port), (8080, 1789));
    assert_eq!(c.pipeline_workers, 4);
    assert_eq!(c.batch_size, 128);
    assert_eq!(c.pool_size, 1024);
    assert_eq!(c.max_queue_depth, 10_000);
    assert_eq!(c.target_throughput, 25_000);
    assert_eq!(c.replay_capacity, 10_000_000);
    assert_eq!(c.max_delay, Duration::from_secs(5));
    assert_eq!((c.max_connections, c.max_connections_per_source), (256, 32));
    assert!(c.mix_peers.is_empty() && c.exit_allow.is_none());
    assert!(c.advertise_addr.ends_with(":1789"));
    assert_eq!(c.data_dir, PathBuf::from("/data"));
}

#[test]
fn bad_values_name_the_variable() {
    let cases = [
        (
            "PIPELINE_WORKERS",
            "abc",
            "PIPELINE_WORKERS=abc: expected an integer from 1 to 64 (threads)",
        ),
        (
            "PIPELINE_WORKERS",
            "65",
            "PIPELINE_WORKERS=65: expected an integer from 1 to 64",
        ),
        (
            "BATCH_SIZE",
            "0",
            "BATCH_SIZE=0: expected an integer from 1 to 1024",
        ),
        (
            "BATCH_SIZE",
            "1000000000",
            "BATCH_SIZE=1000000000: expected an integer from 1 to 1024",
        ),
        (
            "POOL_SIZE",
            "99999999999999",
            "POOL_SIZE=99999999999999: expected an integer",
        ),
        (
            "MAX_QUEUE_DEPTH",
            "1000001",
            "MAX_QUEUE_DEPTH=1000001: expected an integer",
        ),
        (
            "MAX_DELAY_MS",
            "10001",
            "MAX_DELAY_MS=10001: expected an integer from 0 to 10000",
        ),
        ("MAX_CONNECTIONS", "0", "MAX_CONNECTIONS=0: expected"),
        (
            "MIX_IDLE_TIMEOUT_MS",
            "5",
            "MIX_IDLE_TIMEOUT_MS=5: expected",
        ),
        ("NODE_PORT", "70000", "NODE_PORT=70000: expected a TCP port"),
        ("MIX_ADVERTISE_ADDR", "nohost", "MIX_ADVERTISE_ADDR=nohost"),
        ("BIND_ADDR", "everywhere", "BIND_ADDR=everywhere"),
        ("TARGET_THROUGHPUT", "-1", "TARGET_THROUGHPUT=-1"),
        (
            "REPLAY_CAPACITY",
            "lots",
            "REPLAY_CAPACITY=lots: expected an integer",
        ),
        ("REPLAY_CAPACITY", "1023", "REPLAY_CAPACITY=1023: expected"),
        (
            "REPLAY_CAPACITY",
            "1000000001",
            "REPLAY_CAPACITY=1000000001",
        ),
        (
            "MIX_PEERS",
            "a:1,b c:2",
            "MIX_PEERS=b c:2: expected a comma-separated list",
        ),
        ("EXIT_ALLOW", "x:99999", "EXIT_ALLOW=x:99999"),
        (
            "FIX_KEY_PERMISSIONS",
            "maybe",
            "FIX_KEY_PERMISSIONS=maybe: expected true or false",
        ),
        ("DATA_DIR", "", "DATA_DIR=: expected a directory path"),
        ("DATA_DIR", "  ", "DATA_DIR=  : expected a directory path"),
        (
            "NODE_TYPE",
            "gateway",
            "NODE_TYPE=gateway: expected entry, middle or exit",
        ),
    ];
    for (name, value, want) in cases {
        let mut pairs = vec![("NODE_TYPE", "entry")];
        pairs.retain(|(k, _)| *k != name);
        pairs.push((name, value));
        let err = parse(&pairs).unwrap_err().to_string();
        assert!(err.starts_with(want), "{name}: got {err:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert_eq!(
        parse(&[]).unwrap_err().to_string(),
        "NODE_TYPE is not set: expected entry, middle or exit"
    );
}

#[test]
fn every_range_accepts_its_bounds_and_rejects_beyond() {
    for range in vars::ranges::ALL {
        for (value, ok) in [
            (range.min.to_string(), true),
            (range.max.to_string(), true),
            ((range.max + 1).to_string(), false),
        ] {
            let got = parse(&[("NODE_TYPE", "exit"), (range.name, &value)]);
            assert_eq!(got.is_ok(), ok, "{}={value}: {got:?}", range.name);
        }
        if range.min > 0 {
            let below = (range.min - 1).to_string();
            assert!(parse(&[("NODE_TYPE", "exit"), (range.name, &below)]).is_err());
        }
        assert!(
            (range.min..=range.max).contains(&range.default),
            "{range:?}"
        );
    }
}

#[test]
fn replay_capacity_is_read_within_its_bounds_and_sizes_memory() {
    for (value, want) in [
        ("1024", 1024),
        (" 2000000 ", 2_000_000),
        ("1000000000", 1_000_000_000),
    ] {
        let c = parse(&[("NODE_TYPE", "exit"), ("REPLAY_CAPACITY", value)]).unwrap();
        assert_eq!(c.replay_capacity, want);
    }
    // About 3.6 bytes per tag: 1 M ≈ 3.6 MB, the default 10 M ≈ 36 MB.
    let per_tag = |n: usize| crate::replay::ReplayFilter::bytes_for(n) as f64 / n as f64;
    for n in [1_000_000, DEFAULT_REPLAY_CAPACITY, MAX_REPLAY_CAPACITY] {
        assert!((3.59..3.61).contains(&per_tag(n)), "{n}: {}", per_tag(n));
    }
}

#[test]
fn database_url_is_validated_without_echoing_secrets() {
    let err = parse(&[
        ("NODE_TYPE", "exit"),
        ("DATABASE_URL", "postgres://u:secret@h:notaport/db"),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("DATABASE_URL="), "{err}");
    assert!(!err.contains("secret"), "{err}");
}
