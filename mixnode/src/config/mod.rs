//! Node configuration from the process environment. Every variable has a
//! documented default except `NODE_TYPE`; a value that does not parse is a
//! [`ConfigError`] whose message names the variable, the value and what is
//! expected, so the binary can print one line and exit with code 2.

mod database;
pub mod vars;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use database::Database;
use vars::{get, port, ranges, Lookup};

use crate::topology::AddrSet;

/// The role a node plays in the route. It is reported in `/status` and in
/// the topology table; clients use it to choose routes. It is enforced on
/// two points: only an `Exit` acts on a deliver instruction (an `Entry` or
/// `Middle` drops it as `role`), and every role relays only to known mixes
/// (`MIX_PEERS` and the registry; others drop as `unknown_next_hop`).
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

impl std::str::FromStr for Role {
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
pub const DEFAULT_REPLAY_CAPACITY: usize = ranges::REPLAY_CAPACITY.default as usize;
/// Smallest accepted `REPLAY_CAPACITY` (the filter's own floor).
pub const MIN_REPLAY_CAPACITY: usize = ranges::REPLAY_CAPACITY.min as usize;
/// Largest accepted `REPLAY_CAPACITY`: about 3.6 GB of filter.
pub const MAX_REPLAY_CAPACITY: usize = ranges::REPLAY_CAPACITY.max as usize;

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
    #[error("{name}={value}: expected an integer from {min} to {max} ({unit})")]
    OutOfRange {
        name: &'static str,
        value: String,
        min: u64,
        max: u64,
        unit: &'static str,
    },
    #[error("{name}={path}: {why}")]
    File {
        name: &'static str,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Conflict(&'static str),
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
    /// Per-destination outbound buffer at an exit, in packets (one
    /// persistent connection each; a next mix may use up to MAX_QUEUE_DEPTH).
    pub pool_size: usize,
    /// Cap on packets inside the node (inbound queue, delay queue, next-hop buffers).
    pub max_queue_depth: usize,
    /// Admission rate in packets/s; 0 means unlimited.
    pub target_throughput: u64,
    /// Replay tags remembered per key epoch (sizes the replay filter).
    pub replay_capacity: usize,
    /// Longest per-hop delay a packet may ask for (`MAX_DELAY_MS`).
    pub max_delay: Duration,
    /// Inbound mix connections at once, and per source address.
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Time a started frame has to complete (the first one from accept).
    pub read_timeout: Duration,
    /// Time without a byte before an inbound connection is closed.
    pub idle_timeout: Duration,
    /// Next-hop connections: unacknowledged data or unanswered keepalives
    /// for this long close them (`TCP_USER_TIMEOUT`); zero leaves the kernel's.
    pub peer_dead_timeout: Duration,
    /// Static mixes (`MIX_PEERS`), used beside the registry.
    pub mix_peers: AddrSet,
    /// Destinations an exit may deliver to (`EXIT_ALLOW`; `None` = any).
    pub exit_allow: Option<AddrSet>,
    /// `FIX_KEY_PERMISSIONS=true`: tighten a loose node.key to 0600 instead of refusing it.
    pub fix_key_permissions: bool,
    pub replay_save_interval: Duration,
    pub database: Option<Database>,
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
        let data_dir = match lookup("DATA_DIR") {
            None => PathBuf::from("/data"),
            Some(v) if v.trim().is_empty() => {
                return Err(ConfigError::Invalid {
                    name: "DATA_DIR",
                    value: v,
                    expected: "a directory path (it is set but empty; unset it for /data)",
                })
            }
            Some(v) => PathBuf::from(v.trim()),
        };
        let log_filter = get(lookup, "RUST_LOG").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::Invalid {
                name: "RUST_LOG",
                value: log_filter,
                expected: "a log filter such as info or mixnode=debug",
            });
        }
        let addr_set = |name: &'static str| -> Result<Option<AddrSet>, ConfigError> {
            get(lookup, name)
                .map(|v| {
                    AddrSet::parse(&v).map_err(|entry| ConfigError::Invalid {
                        name,
                        value: entry,
                        expected: "a comma-separated list of host:port or host entries",
                    })
                })
                .transpose()
        };
        let ms = |r: vars::Range| r.read(lookup).map(Duration::from_millis);
        Ok(Config {
            role,
            node_id,
            bind_addr,
            node_port,
            mix_port,
            advertise_addr,
            data_dir,
            log_filter,
            pipeline_workers: ranges::PIPELINE_WORKERS.read_usize(lookup)?,
            batch_size: ranges::BATCH_SIZE.read_usize(lookup)?,
            pool_size: ranges::POOL_SIZE.read_usize(lookup)?,
            max_queue_depth: ranges::MAX_QUEUE_DEPTH.read_usize(lookup)?,
            target_throughput: ranges::TARGET_THROUGHPUT.read(lookup)?,
            replay_capacity: ranges::REPLAY_CAPACITY.read_usize(lookup)?,
            max_delay: ms(ranges::MAX_DELAY_MS)?,
            max_connections: ranges::MAX_CONNECTIONS.read_usize(lookup)?,
            max_connections_per_source: ranges::MAX_CONNECTIONS_PER_SOURCE.read_usize(lookup)?,
            read_timeout: ms(ranges::MIX_READ_TIMEOUT_MS)?,
            idle_timeout: ms(ranges::MIX_IDLE_TIMEOUT_MS)?,
            peer_dead_timeout: ms(ranges::PEER_DEAD_TIMEOUT_MS)?,
            mix_peers: addr_set("MIX_PEERS")?.unwrap_or_default(),
            exit_allow: addr_set("EXIT_ALLOW")?,
            fix_key_permissions: vars::flag(lookup, "FIX_KEY_PERMISSIONS")?,
            replay_save_interval: Duration::from_secs(
                ranges::REPLAY_SAVE_INTERVAL_SECS.read(lookup)?,
            ),
            database: database::read(lookup)?,
        })
    }
}

#[cfg(test)]
mod tests;
