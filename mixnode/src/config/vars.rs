//! Reading single variables: every numeric variable has one documented range
//! ([`Range`]), and a value outside it is a [`ConfigError`] naming the
//! variable and the range, so no value can reach the pipeline that would
//! make it panic or allocate without bound.

use super::ConfigError;

/// Reads one variable; empty counts as unset.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn get(lookup: Lookup, name: &str) -> Option<String> {
    lookup(name).filter(|v| !v.trim().is_empty())
}

/// A numeric variable: its name, default and inclusive range.
#[derive(Clone, Copy, Debug)]
pub struct Range {
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    /// What the number counts, for the error line ("packets", "ms", ...).
    pub unit: &'static str,
}

impl Range {
    /// The variable's value, or its default; out of range is an error.
    pub fn read(&self, lookup: Lookup) -> Result<u64, ConfigError> {
        match get(lookup, self.name) {
            None => Ok(self.default),
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (self.min..=self.max).contains(&n) => Ok(n),
                _ => Err(ConfigError::OutOfRange {
                    name: self.name,
                    value: v,
                    min: self.min,
                    max: self.max,
                    unit: self.unit,
                }),
            },
        }
    }

    pub fn read_usize(&self, lookup: Lookup) -> Result<usize, ConfigError> {
        // Every max fits in usize on the 64-bit targets the node supports.
        self.read(lookup).map(|n| n as usize)
    }
}

/// Every numeric variable the node reads, with its range (README lists them).
pub mod ranges {
    use super::Range;

    pub const PIPELINE_WORKERS: Range = Range {
        name: "PIPELINE_WORKERS",
        default: 4,
        min: 1,
        max: 64,
        unit: "threads",
    };
    pub const BATCH_SIZE: Range = Range {
        name: "BATCH_SIZE",
        default: 128,
        min: 1,
        max: 1024,
        unit: "frames per read",
    };
    pub const POOL_SIZE: Range = Range {
        name: "POOL_SIZE",
        default: 1024,
        min: 1,
        max: 1_000_000,
        unit: "packets per destination",
    };
    pub const MAX_QUEUE_DEPTH: Range = Range {
        name: "MAX_QUEUE_DEPTH",
        default: 10_000,
        min: 1,
        max: 1_000_000,
        unit: "packets",
    };
    pub const TARGET_THROUGHPUT: Range = Range {
        name: "TARGET_THROUGHPUT",
        default: 25_000,
        min: 0,
        max: 10_000_000,
        unit: "packets/s, 0 = unlimited",
    };
    pub const REPLAY_CAPACITY: Range = Range {
        name: "REPLAY_CAPACITY",
        default: 10_000_000,
        min: 1024,
        max: 1_000_000_000,
        unit: "replay tags per key epoch, about 3.6 bytes of memory each",
    };
    pub const MAX_DELAY_MS: Range = Range {
        name: "MAX_DELAY_MS",
        default: 5_000,
        min: 0,
        max: 10_000,
        unit: "ms per hop",
    };
    pub const MAX_CONNECTIONS: Range = Range {
        name: "MAX_CONNECTIONS",
        default: 256,
        min: 1,
        max: 16_384,
        unit: "inbound mix connections",
    };
    pub const MAX_CONNECTIONS_PER_SOURCE: Range = Range {
        name: "MAX_CONNECTIONS_PER_SOURCE",
        default: 32,
        min: 1,
        max: 16_384,
        unit: "inbound mix connections per source address",
    };
    pub const MIX_READ_TIMEOUT_MS: Range = Range {
        name: "MIX_READ_TIMEOUT_MS",
        default: 5_000,
        min: 100,
        max: 600_000,
        unit: "ms to complete a frame once it starts",
    };
    pub const MIX_IDLE_TIMEOUT_MS: Range = Range {
        name: "MIX_IDLE_TIMEOUT_MS",
        default: 60_000,
        min: 100,
        max: 3_600_000,
        unit: "ms without a byte before an inbound connection is closed",
    };
    pub const PEER_DEAD_TIMEOUT_MS: Range = Range {
        name: "PEER_DEAD_TIMEOUT_MS",
        default: 5_000,
        min: 0,
        max: 600_000,
        unit: "ms before a next hop that stopped acknowledging is dropped and redialled, 0 = the kernel's defaults (minutes)",
    };
    pub const REPLAY_SAVE_INTERVAL_SECS: Range = Range {
        name: "REPLAY_SAVE_INTERVAL_SECS",
        default: 60,
        min: 1,
        max: 86_400,
        unit: "s between replay filter snapshots",
    };

    /// All of them, for `mixnode --help` and the tests.
    pub const ALL: [Range; 13] = [
        PIPELINE_WORKERS,
        BATCH_SIZE,
        POOL_SIZE,
        MAX_QUEUE_DEPTH,
        TARGET_THROUGHPUT,
        REPLAY_CAPACITY,
        MAX_DELAY_MS,
        MAX_CONNECTIONS,
        MAX_CONNECTIONS_PER_SOURCE,
        MIX_READ_TIMEOUT_MS,
        MIX_IDLE_TIMEOUT_MS,
        PEER_DEAD_TIMEOUT_MS,
        REPLAY_SAVE_INTERVAL_SECS,
    ];
}

pub fn port(lookup: Lookup, name: &'static str, default: u16) -> Result<u16, ConfigError> {
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

/// A boolean flag: unset/empty, `0`, `false`, `no` are false; `1`, `true`,
/// `yes` are true; anything else is an error.
pub fn flag(lookup: Lookup, name: &'static str) -> Result<bool, ConfigError> {
    match get(lookup, name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                expected: "true or false",
            }),
        },
    }
}
