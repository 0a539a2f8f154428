//! The figures one loadgen run produces, as a readable table or one JSON
//! object (`sent`, `delivered`, `lost`, `throughput_pps`, `latency_ms`).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Report {
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub foreign: u64,
    pub generation: Duration,
    pub send_time: Duration,
    /// From the first send to the last arrival.
    pub elapsed: Duration,
    pub throughput_pps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Packets the nodes dropped during the run, by node and reason.
    pub dropped: Vec<super::drops::Drop>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        sent: u64,
        delivered: u64,
        duplicates: u64,
        foreign: u64,
        generation: Duration,
        send_time: Duration,
        elapsed: Duration,
        mut latencies: Vec<Duration>,
    ) -> Report {
        latencies.sort_unstable();
        let secs = elapsed.as_secs_f64();
        Report {
            sent,
            delivered,
            lost: sent.saturating_sub(delivered),
            duplicates,
            foreign,
            generation,
            send_time,
            elapsed,
            throughput_pps: if secs > 0.0 {
                delivered as f64 / secs
            } else {
                0.0
            },
            p50_ms: percentile(&latencies, 50.0),
            p95_ms: percentile(&latencies, 95.0),
            p99_ms: percentile(&latencies, 99.0),
            dropped: Vec::new(),
        }
    }

    pub fn with_drops(mut self, dropped: Vec<super::drops::Drop>) -> Report {
        self.dropped = dropped;
        self
    }

    /// The loss as one line: how many, then each node's drops and their fix.
    pub fn loss_line(&self) -> String {
        let mut text = format!("{} of {} packets were lost", self.lost, self.sent);
        if self.dropped.is_empty() {
            text.push_str(
                " (no node counted a drop: they were lost on the way to loadgen's listener)",
            );
        } else {
            let why: Vec<String> = self.dropped.iter().map(|d| d.sentence()).collect();
            text.push_str(": ");
            text.push_str(&why.join("; "));
        }
        text
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "sent": self.sent,
            "delivered": self.delivered,
            "lost": self.lost,
            "throughput_pps": (self.throughput_pps * 10.0).round() / 10.0,
            "latency_ms": { "p50": self.p50_ms, "p95": self.p95_ms, "p99": self.p99_ms },
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "generation_s": self.generation.as_secs_f64(),
            "send_s": self.send_time.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "dropped": self.dropped.iter().map(|d| serde_json::json!({
                "node": d.node, "role": d.role, "reason": d.reason, "packets": d.packets,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn table(&self) -> String {
        let rows = [
            ("sent", self.sent.to_string()),
            ("delivered", self.delivered.to_string()),
            ("lost", self.lost.to_string()),
            ("duplicates", self.duplicates.to_string()),
            (
                "throughput",
                format!("{:.0} packets/s", self.throughput_pps),
            ),
            ("latency p50", format!("{:.2} ms", self.p50_ms)),
            ("latency p95", format!("{:.2} ms", self.p95_ms)),
            ("latency p99", format!("{:.2} ms", self.p99_ms)),
            (
                "generation",
                format!(
                    "{:.2} s (not part of the run)",
                    self.generation.as_secs_f64()
                ),
            ),
            (
                "send time",
                format!("{:.2} s", self.send_time.as_secs_f64()),
            ),
            (
                "first send to last arrival",
                format!("{:.2} s", self.elapsed.as_secs_f64()),
            ),
        ];
        rows.iter().map(|(k, v)| format!("{k:<28} {v}\n")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_loss() {
        let lat: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let r = Report::new(
            120,
            100,
            0,
            0,
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_secs(2),
            lat,
        );
        assert_eq!((r.p50_ms, r.p95_ms, r.p99_ms), (50.0, 95.0, 99.0));
        assert_eq!(r.lost, 20);
        assert_eq!(r.throughput_pps, 50.0);
        let j = r.json();
        for k in ["sent", "delivered", "lost", "throughput_pps", "latency_ms"] {
            assert!(j.get(k).is_some(), "{k}");
        }
    }
}
