//! Admission pacing at the mix port. A token bucket paces reading to
//! TARGET_THROUGHPUT packets/s (bursts up to one second's worth): a reader
//! over the rate waits before reading more, so TCP pushes back on the sender
//! instead of the node queueing without bound. The queue cap and fair
//! shares are in [`super::sources`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Admission {
    /// Packets per second; 0 = unlimited.
    rate: u64,
    bucket: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Admission {
    pub fn new(rate: u64) -> Self {
        Admission {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate as f64,
                last: Instant::now(),
            }),
        }
    }

    /// Takes `n` tokens and returns how long the caller must wait before
    /// using them (zero when the bucket had enough). Debt is paid by waiting.
    pub fn reserve(&self, n: usize) -> Duration {
        self.reserve_at(n, Instant::now())
    }

    fn reserve_at(&self, n: usize, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate.max(1.0));
        bucket.last = bucket.last.max(now);
        bucket.tokens -= n as f64;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_one_second_burst_then_paces() {
        let a = Admission::new(1000);
        // A fixed clock: the wait is exactly the debt over the rate.
        let now = a.bucket.lock().unwrap().last;
        assert_eq!(a.reserve_at(1000, now), Duration::ZERO);
        assert_eq!(a.reserve_at(500, now), Duration::from_millis(500));
        // Half a second later the debt is paid and 250 more cost 250 ms.
        let later = now + Duration::from_millis(500);
        assert_eq!(a.reserve_at(250, later), Duration::from_millis(250));
        assert_eq!(Admission::new(0).reserve(1_000_000), Duration::ZERO);
    }
}
