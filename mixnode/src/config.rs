//! Node configuration from the process environment. Every variable has a
//! documented default except `NODE_TYPE`; a value that does not parse is a
//! [`ConfigError`] whose message names the variable, the value and what is
//! expected, so the binary can print one line and exit with code 2.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The role a node plays in the route. It is reported in `/status` and in
/// the topology table; clients use it to choose routes. It is enforced on
/// one point: only an `Exit` acts on a deliver instruction (an `Entry` or
/// `Middle` drops it as `role`); every role relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Entry,
    Middle,
    Exit,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Entry => "entry",
            Role::Middle => "middle",
            Role::Exit => "exit",
        }
    }
}

impl FromStr for Role {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "entry" => Ok(Role::Entry),
            "middle" => Ok(Role::Middle),
            "exit" => Ok(Role::Exit),
            _ => Err(()),
        }
    }
}

/// Replay tags the filter holds per key epoch unless `REPLAY_CAPACITY` says
/// otherwise: about 36 MB (`ReplayFilter::bytes_for` gives the exact size).
pub const DEFAULT_REPLAY_CAPACITY: usize = 10_000_000;
/// Smallest accepted `REPLAY_CAPACITY` (the filter's own floor).
pub const MIN_REPLAY_CAPACITY: usize = 1024;
/// Largest accepted `REPLAY_CAPACITY`: about 3.6 GB of filter.
pub const MAX_REPLAY_CAPACITY: usize = 1_000_000_000;

/// A variable that is missing or does not parse.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not set: expected {expected}")]
    Missing {
        name: &'static str,
        expected: &'static str,
    },
    #[error("{name}={value}: expected {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Everything the node reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub role: Role,
    /// Stable node id: `NODE_ID`, or derived from the public key at start-up.
    pub node_id: Option<String>,
    pub bind_addr: IpAddr,
    pub node_port: u16,
    pub mix_port: u16,
    /// `host:port` other nodes use to reach this node's packet port.
    pub advertise_addr: String,
    pub data_dir: PathBuf,
    pub log_filter: String,
    pub pipeline_workers: usize,
    pub batch_size: usize,
    /// Per-next-hop outbound buffer, in packets (one persistent connection each).
    pub pool_size: usize,
    /// Cap on packets inside the node (inbound queue, delay queue, next-hop buffers).
    pub max_queue_depth: usize,
    /// Admission rate in packets/s; 0 means unlimited.
    pub target_throughput: u64,
    /// Replay tags remembered per key epoch (sizes the replay filter).
    pub replay_capacity: usize,
    pub database_url: Option<String>,
}

/// Reads one variable; empty counts as unset.
type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn get(lookup: Lookup, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

fn positive(lookup: Lookup, name: &'static str, default: usize) -> Result<usize, ConfigError> {
    match get(lookup, name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                expected: "a positive integer",
            }),
        },
    }
}

fn port(lookup: Lookup, name: &'static str, default: u16) -> Result<u16, ConfigError> {
    match get(lookup, name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                expected: "a TCP port number 1-65535",
            }),
        },
    }
}

/// The machine's host name, as Docker sets it to the container name/id.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// `host:port` with a non-empty host and a valid port (IPv6 hosts in brackets).
pub fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().map(|p| p > 0).unwrap_or(false)
        }
        None => false,
    }
}

impl Config {
    /// Reads the configuration from the real process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: Lookup) -> Result<Config, ConfigError> {
        let role = match get(lookup, "NODE_TYPE") {
            None => {
                return Err(ConfigError::Missing {
                    name: "NODE_TYPE",
                    expected: "entry, middle or exit",
                })
            }
            Some(v) => v.trim().parse().map_err(|()| ConfigError::Invalid {
                name: "NODE_TYPE",
                value: v,
                expected: "entry, middle or exit",
            })?,
        };
        let node_id = get(lookup, "NODE_ID").map(|v| v.trim().to_string());
        let node_port = port(lookup, "NODE_PORT", 8080)?;
        let mix_port = port(lookup, "MIX_PORT", 1789)?;
        let bind_addr = match get(lookup, "BIND_ADDR") {
            None => IpAddr::from([0, 0, 0, 0]),
            Some(v) => v.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "BIND_ADDR",
                value: v,
                expected: "an IP address such as 0.0.0.0 or 127.0.0.1",
            })?,
        };
        let advertise_addr = match get(lookup, "MIX_ADVERTISE_ADDR") {
            None => format!("{}:{mix_port}", hostname()),
            Some(v) if is_host_port(v.trim()) => v.trim().to_string(),
            Some(v) => {
                return Err(ConfigError::Invalid {
                    name: "MIX_ADVERTISE_ADDR",
                    value: v,
                    expected: "host:port, e.g. mixnode-2:1789",
                })
            }
        };
        let data_dir = PathBuf::from(get(lookup, "DATA_DIR").unwrap_or_else(|| "/data".into()));
        let log_filter = get(lookup, "RUST_LOG").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::Invalid {
                name: "RUST_LOG",
                value: log_filter,
                expected: "a log filter such as info or mixnode=debug",
            });
        }
        let target_throughput = match get(lookup, "TARGET_THROUGHPUT") {
            None => 25_000,
            Some(v) => v.trim().parse::<u64>().map_err(|_| ConfigError::Invalid {
                name: "TARGET_THROUGHPUT",
                value: v,
                expected: "packets per second as a non-negative integer (0 = unlimited)",
            })?,
        };
        let replay_capacity = match get(lookup, "REPLAY_CAPACITY") {
            None => DEFAULT_REPLAY_CAPACITY,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (MIN_REPLAY_CAPACITY..=MAX_REPLAY_CAPACITY).contains(&n) => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "REPLAY_CAPACITY",
                        value: v,
                        expected: "an integer from 1024 to 1000000000 \
                                   (replay tags per key epoch, about 3.6 bytes of memory each)",
                    })
                }
            },
        };
        let database_url = get(lookup, "DATABASE_URL");
        if let Some(url) = &database_url {
            if tokio_postgres::Config::from_str(url).is_err() {
                return Err(ConfigError::Invalid {
                    name: "DATABASE_URL",
                    value: "<redacted>".into(),
                    expected: "a PostgreSQL URL such as postgres://user:pass@postgres:5432/db",
                });
            }
        }
        Ok(Config {
            role,
            node_id,
            bind_addr,
            node_port,
            mix_port,
            advertise_addr,
            data_dir,
            log_filter,
            pipeline_workers: positive(lookup, "PIPELINE_WORKERS", 4)?,
            batch_size: positive(lookup, "BATCH_SIZE", 128)?,
            pool_size: positive(lookup, "POOL_SIZE", 1024)?,
            max_queue_depth: positive(lookup, "MAX_QUEUE_DEPTH", 10_000)?,
            target_throughput,
            replay_capacity,
            database_url,
        })
    }
}

#[cfg(test)]
mod tests {
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
        assert!(c.advertise_addr.ends_with(":1789"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (
                "PIPELINE_WORKERS",
                "abc",
                "PIPELINE_WORKERS=abc: expected a positive integer",
            ),
            (
                "BATCH_SIZE",
                "0",
                "BATCH_SIZE=0: expected a positive integer",
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
                "NODE_TYPE",
                "gateway",
                "NODE_TYPE=gateway: expected entry, middle or exit",
            ),
        ];
        for (name, value, want) in cases {
            let mut pairs = vec![("NODE_TYPE", "entry")];
            pairs.push((name, value));
            let err = parse(&pairs).unwrap_err().to_string();
            assert!(err.starts_with(want), "{name}: got {err:?}");
        }
        assert_eq!(
            parse(&[]).unwrap_err().to_string(),
            "NODE_TYPE is not set: expected entry, middle or exit"
        );
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
}
