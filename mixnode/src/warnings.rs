//! Rate-limited warnings. A hostile or broken peer can make the same thing
//! go wrong thousands of times a second (a dead next hop, a missing topology
//! table, a flood of refused connections); each [`Warning`] kind is logged
//! the first time, then at most once per [`INTERVAL`] with the number of
//! occurrences suppressed since, and every occurrence is counted in
//! `mixnode_warnings_total{kind="..."}`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// At most one log line per kind per this long (after the first).
pub const INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// `mixnode_topology` does not exist (migrations not applied yet).
    TopologyMissing,
    /// Any other database failure (connect, query).
    Database,
    /// A next hop could not be connected to.
    PeerUnreachable,
    /// A write to a next hop failed.
    PeerWriteFailed,
    /// An inbound mix connection was refused (limits).
    ConnectionRefused,
    /// accept(2) failed (e.g. out of file descriptors).
    AcceptFailed,
}

impl Warning {
    pub const ALL: [Warning; 6] = [
        Warning::TopologyMissing,
        Warning::Database,
        Warning::PeerUnreachable,
        Warning::PeerWriteFailed,
        Warning::ConnectionRefused,
        Warning::AcceptFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Warning::TopologyMissing => "topology_missing",
            Warning::Database => "database",
            Warning::PeerUnreachable => "peer_unreachable",
            Warning::PeerWriteFailed => "peer_write_failed",
            Warning::ConnectionRefused => "connection_refused",
            Warning::AcceptFailed => "accept_failed",
        }
    }
}

/// Per-kind counters and the time of the last line logged.
#[derive(Default)]
pub struct Warnings {
    total: [AtomicU64; Warning::ALL.len()],
    /// Milliseconds since [`epoch`] of the last line, plus one (0 = never).
    last_logged: [AtomicU64; Warning::ALL.len()],
    suppressed: [AtomicU64; Warning::ALL.len()],
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Warnings {
    /// Counts one occurrence; returns `Some(suppressed)` when this one
    /// should be logged (with how many were not, since the last line).
    pub fn hit(&self, kind: Warning) -> Option<u64> {
        self.hit_at(kind, epoch().elapsed())
    }

    fn hit_at(&self, kind: Warning, now: Duration) -> Option<u64> {
        let i = kind as usize;
        self.total[i].fetch_add(1, Relaxed);
        let now_ms = now.as_millis() as u64 + 1;
        let last = self.last_logged[i].load(Relaxed);
        let due = last == 0 || now_ms.saturating_sub(last) >= INTERVAL.as_millis() as u64;
        if due
            && self.last_logged[i]
                .compare_exchange(last, now_ms, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed[i].swap(0, Relaxed))
        } else {
            self.suppressed[i].fetch_add(1, Relaxed);
            None
        }
    }

    pub fn total(&self, kind: Warning) -> u64 {
        self.total[kind as usize].load(Relaxed)
    }
}

/// Logs a warning of `kind` through `$warnings` at most once per
/// [`INTERVAL`]: `warn_limited!(metrics.warnings, Warning::X, field = .., "msg")`.
#[macro_export]
macro_rules! warn_limited {
    ($warnings:expr, $kind:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $warnings.hit($kind) {
            tracing::warn!(kind = $kind.as_str(), suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_is_logged_then_one_per_interval_and_all_are_counted() {
        let w = Warnings::default();
        let k = Warning::TopologyMissing;
        assert_eq!(w.hit_at(k, Duration::ZERO), Some(0));
        for s in 1..=1000 {
            assert_eq!(w.hit_at(k, Duration::from_millis(s * 50)), None);
        }
        assert_eq!(w.hit_at(k, INTERVAL), Some(1000));
        assert_eq!(w.hit_at(k, INTERVAL + Duration::from_secs(1)), None);
        assert_eq!(w.total(k), 1003);
        // Kinds are independent.
        assert_eq!(w.hit_at(Warning::Database, INTERVAL), Some(0));
        assert_eq!(w.total(Warning::Database), 1);
    }
}
