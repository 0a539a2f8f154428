//! Byte progress of a long copy that passes through the xtask, for a person
//! and for a log: on a terminal an indicatif bar (bytes, rate, elapsed, and
//! the share done when the total is known); otherwise one line on stderr
//! every [`EVERY`] (bytes so far, the share when known, the rate), so a CI
//! log or a `nohup` file shows the copy moving. Either way [`Bytes::finish`]
//! closes with one line: the size, the time and the rate.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};

/// How often a line is printed when stderr is not a terminal.
pub const EVERY: Duration = Duration::from_secs(5);

/// The progress of one copy of bytes, labelled (e.g. `adopt: postgres.dump`).
pub struct Bytes {
    label: String,
    bar: Option<ProgressBar>,
    lines: Lines,
}

impl Bytes {
    /// A bar when stderr is a terminal, else lines every [`EVERY`].
    pub fn stderr(label: &str, total: Option<u64>) -> Bytes {
        Bytes::new(label, total, std::io::stderr().is_terminal())
    }

    /// A bar when `terminal`, else lines.
    pub fn new(label: &str, total: Option<u64>, terminal: bool) -> Bytes {
        let bar = terminal.then(|| {
            let template = match total {
                Some(_) => {
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}"
                }
                None => "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}",
            };
            let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Bytes {
            label: label.to_string(),
            bar,
            lines: Lines::new(Instant::now(), EVERY, total),
        }
    }

    /// `n` more bytes copied.
    pub fn add(&mut self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        let due = self.lines.add(n, Instant::now());
        if self.bar.is_none() {
            if let Some(line) = due {
                eprintln!("{}: {line}", self.label);
            }
        }
    }

    /// Clear the bar and print the closing line.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        eprintln!("{}: {}", self.label, self.lines.done(Instant::now()));
    }
}

/// The line-every-few-seconds side of [`Bytes`], on a given clock.
struct Lines {
    started: Instant,
    every: Duration,
    next: Instant,
    total: Option<u64>,
    bytes: u64,
}

impl Lines {
    fn new(started: Instant, every: Duration, total: Option<u64>) -> Lines {
        Lines {
            started,
            every,
            next: started + every,
            total,
            bytes: 0,
        }
    }

    /// Count `n` bytes at `now`; the line to print when one is due.
    fn add(&mut self, n: u64, now: Instant) -> Option<String> {
        self.bytes += n;
        if now < self.next {
            return None;
        }
        while self.next <= now {
            self.next += self.every;
        }
        let share = match self.total {
            Some(total) if total > 0 => format!(
                " of {} ({:.0} %)",
                HumanBytes(total),
                self.bytes as f64 * 100.0 / total as f64
            ),
            _ => String::new(),
        };
        Some(format!(
            "{}{share} so far, {}",
            HumanBytes(self.bytes),
            self.rate(now)
        ))
    }

    /// The closing line at `now`.
    fn done(&self, now: Instant) -> String {
        format!(
            "{} in {:.1} s ({})",
            HumanBytes(self.bytes),
            now.duration_since(self.started).as_secs_f64(),
            self.rate(now)
        )
    }

    fn rate(&self, now: Instant) -> String {
        let seconds = now.duration_since(self.started).as_secs_f64().max(0.001);
        format!("{}/s", HumanBytes((self.bytes as f64 / seconds) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_every_few_seconds_and_one_at_the_end() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut lines = Lines::new(t0, s(5), None);
        assert_eq!(lines.add(1 << 20, t0 + s(1)), None);
        assert_eq!(
            lines.add(1 << 20, t0 + s(5)).as_deref(),
            Some("2.00 MiB so far, 409.60 KiB/s")
        );
        assert_eq!(lines.add(1 << 20, t0 + s(6)), None);
        // A stall longer than a period: one line, then the next period.
        assert!(lines.add(0, t0 + s(17)).is_some());
        assert_eq!(lines.add(0, t0 + s(19)), None);
        assert!(lines.add(0, t0 + s(20)).is_some());
        assert_eq!(lines.done(t0 + s(30)), "3.00 MiB in 30.0 s (102.40 KiB/s)");
    }

    #[test]
    fn a_known_total_gives_the_share() {
        let t0 = Instant::now();
        let mut lines = Lines::new(t0, Duration::from_secs(5), Some(4 << 20));
        let line = lines.add(1 << 20, t0 + Duration::from_secs(5)).unwrap();
        assert_eq!(line, "1.00 MiB of 4.00 MiB (25 %) so far, 204.80 KiB/s");
        // An empty copy: no share, no division by zero.
        let empty = Lines::new(t0, Duration::from_secs(5), Some(0));
        assert_eq!(empty.done(t0), "0 B in 0.0 s (0 B/s)");
    }
}
