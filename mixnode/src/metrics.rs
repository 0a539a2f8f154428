//! The node's counters, gauges and processing-time histogram, kept in atomics
//! so the pipeline threads update them without locks, and rendered by hand in
//! the Prometheus text exposition format (version 0.0.4) for `GET /metrics`.
//! Every packet the node reads is counted once as received and, when it
//! leaves the node, exactly once as forwarded, delivered or dropped with a
//! reason, so at rest `received = forwarded + delivered + dropped`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::warnings::{Warning, Warnings};

/// Why an inbound mix connection was refused or closed by the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnEvent {
    /// Refused: its source address already holds MAX_CONNECTIONS_PER_SOURCE.
    RefusedPerSource,
    /// Refused: MAX_CONNECTIONS are open.
    RefusedTotal,
    /// Refused: only the reserved slots are left, kept for known mixes and
    /// sources that have sent whole frames before.
    RefusedReserved,
    /// Closed: no byte for MIX_IDLE_TIMEOUT_MS.
    ClosedIdle,
    /// Closed: a frame (the first one from accept) did not complete within MIX_READ_TIMEOUT_MS.
    ClosedReadTimeout,
}

impl ConnEvent {
    pub const ALL: [ConnEvent; 5] = [
        ConnEvent::RefusedPerSource,
        ConnEvent::RefusedTotal,
        ConnEvent::RefusedReserved,
        ConnEvent::ClosedIdle,
        ConnEvent::ClosedReadTimeout,
    ];

    /// (metric, reason label)
    pub fn labels(self) -> (&'static str, &'static str) {
        match self {
            ConnEvent::RefusedPerSource => ("refused", "per_source"),
            ConnEvent::RefusedTotal => ("refused", "total"),
            ConnEvent::RefusedReserved => ("refused", "reserved"),
            ConnEvent::ClosedIdle => ("closed", "idle"),
            ConnEvent::ClosedReadTimeout => ("closed", "read_timeout"),
        }
    }
}

/// Why a packet left the node without being sent on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The frame did not unwrap (wrong key, bad MAC, bad header) or was cut short.
    Malformed,
    /// Its replay tag was seen before.
    Replay,
    /// The node's queues were full.
    Overload,
    /// It waited longer than [`MAX_PACKET_AGE`] inside the node.
    Expired,
    /// The next hop could not be reached or the write to it failed.
    Unreachable,
    /// Still queued when the shutdown deadline passed.
    Shutdown,
    /// It asks this node for something its NODE_TYPE does not do: a deliver
    /// (exit) instruction at an `entry` or `middle` node.
    Role,
    /// Its next hop is not a known mix (`MIX_PEERS` or the registry): no open relay.
    UnknownNextHop,
    /// It asks for a per-hop delay above `MAX_DELAY_MS`.
    ExcessiveDelay,
    /// An exit's destination outside `EXIT_ALLOW`.
    ExitDenied,
}

impl DropReason {
    pub const ALL: [DropReason; 10] = [
        DropReason::Malformed,
        DropReason::Replay,
        DropReason::Overload,
        DropReason::Expired,
        DropReason::Unreachable,
        DropReason::Shutdown,
        DropReason::Role,
        DropReason::UnknownNextHop,
        DropReason::ExcessiveDelay,
        DropReason::ExitDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Replay => "replay",
            DropReason::Overload => "overload",
            DropReason::Expired => "expired",
            DropReason::Unreachable => "unreachable",
            DropReason::Shutdown => "shutdown",
            DropReason::Role => "role",
            DropReason::UnknownNextHop => "unknown_next_hop",
            DropReason::ExcessiveDelay => "excessive_delay",
            DropReason::ExitDenied => "exit_denied",
        }
    }
}

/// A packet older than this (from reception to hand-off, not counting its
/// own mix delay) is dropped as `expired` instead of being sent late.
pub const MAX_PACKET_AGE: Duration = Duration::from_secs(10);

/// Upper bounds of the processing-time histogram, in seconds.
pub const BUCKETS: [f64; 16] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0,
];

/// All of the node's metrics.
#[derive(Default)]
pub struct Metrics {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub delivered: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Packets admitted and not yet written or dropped (inbound queue,
    /// delay queue and next-hop buffers); capped by MAX_QUEUE_DEPTH. Shared
    /// with every packet's [`crate::pipeline::Ticket`], which gives its slot back when dropped.
    pub queue_depth: Arc<AtomicUsize>,
    /// The part of `queue_depth` in next-hop buffers.
    pub outbound_depth: AtomicUsize,
    pub inbound_connections: AtomicUsize,
    pub outbound_connections: AtomicUsize,
    conn_events: [AtomicU64; ConnEvent::ALL.len()],
    /// Read-pauses because the queue was full or the sender above its fair share.
    pub backpressure_waits: AtomicU64,
    /// Entries evicted from the next-hop table (least recently used).
    pub peers_evicted: AtomicU64,
    /// Known mixes (MIX_PEERS entries + registry rows).
    pub known_mixes: AtomicUsize,
    pub warnings: Warnings,
    buckets: [AtomicU64; BUCKETS.len()],
    observed_count: AtomicU64,
    observed_sum_nanos: AtomicU64,
}

/// Static facts rendered with the metrics.
pub struct Info<'a> {
    pub version: &'a str,
    pub revision: &'a str,
    pub role: &'a str,
    pub uptime: Duration,
    pub replay_filter_bytes: usize,
    pub replay_filter_entries: usize,
    pub replay_false_positive_rate: f64,
}

impl Metrics {
    pub fn drop_packets(&self, reason: DropReason, n: u64) {
        self.dropped[reason as usize].fetch_add(n, Relaxed);
    }

    pub fn conn_event(&self, event: ConnEvent) {
        self.conn_events[event as usize].fetch_add(1, Relaxed);
    }

    pub fn conn_events(&self, event: ConnEvent) -> u64 {
        self.conn_events[event as usize].load(Relaxed)
    }

    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize].load(Relaxed)
    }

    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL.iter().map(|r| self.dropped(*r)).sum()
    }

    /// Records one packet's processing time (reception to ready-to-send).
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.observed_count.fetch_add(1, Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.observed_sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, info: &Info) -> String {
        let mut out = String::with_capacity(4096);
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        };
        counter(
            &mut out,
            "mixnode_packets_received_total",
            "Packets read from the mix port.",
            self.received.load(Relaxed),
        );
        counter(
            &mut out,
            "mixnode_packets_forwarded_total",
            "Packets written to the next mix.",
            self.forwarded.load(Relaxed),
        );
        counter(
            &mut out,
            "mixnode_packets_delivered_total",
            "Packets written to their destination (exit hop).",
            self.delivered.load(Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP mixnode_packets_dropped_total Packets dropped, by reason.\n\
             # TYPE mixnode_packets_dropped_total counter"
        );
        for reason in DropReason::ALL {
            let _ = writeln!(
                out,
                "mixnode_packets_dropped_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                self.dropped(reason)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mixnode_processing_seconds Time from reading a packet to having it unwrapped and ready to send, mix delay excluded.\n\
             # TYPE mixnode_processing_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += count.load(Relaxed);
            let _ = writeln!(
                out,
                "mixnode_processing_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.observed_count.load(Relaxed);
        let sum = self.observed_sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "mixnode_processing_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "mixnode_processing_seconds_sum {sum}");
        let _ = writeln!(out, "mixnode_processing_seconds_count {count}");
        gauge(
            &mut out,
            "mixnode_queue_depth",
            "Packets inside the node (waiting to unwrap, in the delay queue or in next-hop buffers), capped by MAX_QUEUE_DEPTH.",
            self.queue_depth.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "mixnode_outbound_queue_depth",
            "The part of mixnode_queue_depth in next-hop buffers (each capped by POOL_SIZE).",
            self.outbound_depth.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "mixnode_inbound_connections",
            "Open connections on the mix port.",
            self.inbound_connections.load(Relaxed) as f64,
        );
        gauge(
            &mut out,
            "mixnode_outbound_connections",
            "Open connections to next hops.",
            self.outbound_connections.load(Relaxed) as f64,
        );
        for (metric, help) in [
            ("refused", "Inbound mix connections refused, by reason."),
            (
                "closed",
                "Inbound mix connections the node closed, by reason.",
            ),
        ] {
            let name = format!("mixnode_connections_{metric}_total");
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for event in ConnEvent::ALL {
                let (m, reason) = event.labels();
                if m == metric {
                    let value = self.conn_events(event);
                    let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {value}");
                }
            }
        }
        counter(
            &mut out,
            "mixnode_backpressure_waits_total",
            "Times a mix connection stopped reading because the queue was full or its sender above its fair share.",
            self.backpressure_waits.load(Relaxed),
        );
        counter(
            &mut out,
            "mixnode_next_hops_evicted_total",
            "Idle next hops evicted from the next-hop table (least recently used).",
            self.peers_evicted.load(Relaxed),
        );
        gauge(
            &mut out,
            "mixnode_known_mixes",
            "Mixes this node may relay to (MIX_PEERS entries plus registry rows).",
            self.known_mixes.load(Relaxed) as f64,
        );
        let _ = writeln!(
            out,
            "# HELP mixnode_warnings_total Warning conditions seen, by kind (each kind is logged at most once a minute).\n\
             # TYPE mixnode_warnings_total counter"
        );
        for kind in Warning::ALL {
            let _ = writeln!(
                out,
                "mixnode_warnings_total{{kind=\"{}\"}} {}",
                kind.as_str(),
                self.warnings.total(kind)
            );
        }
        gauge(
            &mut out,
            "mixnode_replay_filter_bytes",
            "Memory held by the replay filter.",
            info.replay_filter_bytes as f64,
        );
        gauge(
            &mut out,
            "mixnode_replay_filter_entries",
            "Replay tags recorded in the current key epoch.",
            info.replay_filter_entries as f64,
        );
        gauge(
            &mut out,
            "mixnode_replay_filter_false_positive_rate",
            "Estimated chance that a fresh packet is mistaken for a replay.",
            info.replay_false_positive_rate,
        );
        gauge(
            &mut out,
            "mixnode_uptime_seconds",
            "Seconds since the node started.",
            info.uptime.as_secs_f64(),
        );
        let _ = writeln!(
            out,
            "# HELP mixnode_build_info Build and role of this node.\n\
             # TYPE mixnode_build_info gauge\n\
             mixnode_build_info{{version=\"{}\",revision=\"{}\",role=\"{}\"}} 1",
            escape(info.version),
            escape(info.revision),
            escape(info.role)
        );
        out
    }
}

/// Escapes a label value (backslash, quote, newline).
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A middle node at version 0.1.0, revision `abc`, with an empty replay filter.
    fn test_info() -> Info<'static> {
        Info {
            version: "0.1.0",
            revision: "abc",
            role: "middle",
            uptime: Duration::from_secs(1),
            replay_filter_bytes: 0,
            replay_filter_entries: 0,
            replay_false_positive_rate: 0.0,
        }
    }

    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let m = Metrics::default();
        m.observe(Duration::from_micros(30));
        m.observe(Duration::from_micros(5));
        m.observe(Duration::from_millis(3));
        m.observe(Duration::from_secs(5));
        let text = m.render(&test_info());
        assert!(
            text.contains("mixnode_processing_seconds_bucket{le=\"0.00001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("mixnode_processing_seconds_bucket{le=\"0.00005\"} 2\n"));
        assert!(text.contains("mixnode_processing_seconds_bucket{le=\"0.005\"} 3\n"));
        assert!(text.contains("mixnode_processing_seconds_bucket{le=\"1\"} 3\n"));
        assert!(text.contains("mixnode_processing_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(text.contains("mixnode_processing_seconds_count 4\n"));
        assert!(text
            .contains("mixnode_build_info{version=\"0.1.0\",revision=\"abc\",role=\"middle\"} 1"));
    }

    #[test]
    fn drops_are_counted_per_reason() {
        let m = Metrics::default();
        m.drop_packets(DropReason::Replay, 2);
        m.drop_packets(DropReason::Overload, 5);
        m.drop_packets(DropReason::Role, 1);
        assert_eq!(m.dropped(DropReason::Replay), 2);
        assert_eq!(m.dropped(DropReason::Role), 1);
        assert_eq!(m.dropped_total(), 8);
        // Every reason has its own slot and label, and is rendered.
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "{reason:?}");
        }
        let text = m.render(&test_info());
        assert!(text.contains("mixnode_packets_dropped_total{reason=\"role\"} 1\n"));
        assert!(text.contains("mixnode_packets_dropped_total{reason=\"shutdown\"} 0\n"));
    }
}
