//! Admission control at the mix port. A token bucket paces reading to
//! TARGET_THROUGHPUT packets/s (bursts up to one second's worth): a reader
//! over the rate waits before reading more, so TCP pushes back on the sender
//! instead of the node queueing without bound. Then MAX_QUEUE_DEPTH caps the
//! packets inside the node (from admission until written or dropped); what does not fit is dropped as `overload`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Admission {
    /// Packets per second; 0 = unlimited.
    rate: u64,
    bucket: Mutex<Bucket>,
    max_depth: usize,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Admission {
    pub fn new(rate: u64, max_depth: usize) -> Self {
        Admission {
            rate,
            bucket: Mutex::new(Bucket {
                tokens: rate as f64,
                last: Instant::now(),
            }),
            max_depth,
        }
    }

    /// Takes `n` tokens and returns how long the caller must wait before
    /// using them (zero when the bucket had enough). Debt is paid by waiting.
    pub fn reserve(&self, n: usize) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate.max(1.0));
        bucket.last = now;
        bucket.tokens -= n as f64;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / rate)
        }
    }

    /// Admits up to `n` packets into a queue whose depth is `depth`, never
    /// letting it exceed the cap. Returns how many were admitted.
    pub fn enqueue(&self, depth: &AtomicUsize, n: usize) -> usize {
        let mut current = depth.load(Ordering::Relaxed);
        loop {
            let room = self.max_depth.saturating_sub(current);
            let take = room.min(n);
            if take == 0 {
                return 0;
            }
            match depth.compare_exchange_weak(
                current,
                current + take,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return take,
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_never_exceeds_its_cap() {
        let a = Admission::new(0, 10);
        let depth = AtomicUsize::new(0);
        assert_eq!(a.enqueue(&depth, 4), 4);
        assert_eq!(a.enqueue(&depth, 8), 6);
        assert_eq!(a.enqueue(&depth, 1), 0);
        assert_eq!(depth.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn bucket_allows_one_second_burst_then_paces() {
        let a = Admission::new(1000, 10);
        assert_eq!(a.reserve(1000), Duration::ZERO);
        let wait = a.reserve(500);
        assert!(
            wait >= Duration::from_millis(450) && wait <= Duration::from_millis(510),
            "{wait:?}"
        );
        assert_eq!(Admission::new(0, 1).reserve(1_000_000), Duration::ZERO);
    }
}
