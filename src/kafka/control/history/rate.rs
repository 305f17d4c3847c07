//! The history copy's speed limit (`kafka.history_mb_per_second`): one
//! token bucket per migration, shared by every partition's copier and taken
//! before each batch is written, so the copy leaves the clusters' disks and
//! network to the live traffic. The bucket holds at most one second of
//! bytes; a batch larger than what is left is let through and paid for by
//! waiting, so no batch is ever too large to pass. The limit changes at
//! runtime (`ctl history-rate`) without a restart.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A byte-rate limit.
#[derive(Debug)]
pub(super) struct Rate {
    mb_per_second: AtomicU32,
    /// Bytes that may pass now (negative: owed) and when it was last filled.
    bucket: tokio::sync::Mutex<(f64, Instant)>,
}

impl Rate {
    pub(super) fn new(mb_per_second: u32) -> Rate {
        let mb_per_second = mb_per_second.max(1);
        Rate {
            mb_per_second: AtomicU32::new(mb_per_second),
            bucket: tokio::sync::Mutex::new((bytes_per_second(mb_per_second), Instant::now())),
        }
    }

    /// The limit in MB (10^6 bytes) per second.
    pub(super) fn mb_per_second(&self) -> u32 {
        self.mb_per_second.load(Ordering::Relaxed)
    }

    /// Changes the limit (at least 1 MB/s); returns the one it replaced.
    pub(super) fn set(&self, mb_per_second: u32) -> u32 {
        self.mb_per_second
            .swap(mb_per_second.max(1), Ordering::Relaxed)
    }

    /// Waits until `bytes` may pass. Takers are served in turn (the lock is
    /// held while one waits), so a partition cannot starve the others.
    pub(super) async fn take(&self, bytes: usize) {
        let rate = bytes_per_second(self.mb_per_second());
        let mut bucket = self.bucket.lock().await;
        let (tokens, filled) = &mut *bucket;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*filled).as_secs_f64() * rate).min(rate);
        *filled = now;
        #[allow(clippy::cast_precision_loss)] // A batch is far below 2^52 bytes.
        let cost = bytes as f64;
        *tokens -= cost;
        if *tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-*tokens / rate)).await;
        }
    }
}

fn bytes_per_second(mb_per_second: u32) -> f64 {
    f64::from(mb_per_second) * 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_pass_at_the_rate_after_one_second_of_burst() {
        let rate = Rate::new(1);
        let start = Instant::now();
        for _ in 0..10 {
            rate.take(100_000).await;
        }
        let burst = start.elapsed();
        assert!(
            burst < Duration::from_millis(50),
            "the first second's bytes waited {burst:?}"
        );
        for _ in 0..3 {
            rate.take(100_000).await;
        }
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(290) && waited <= Duration::from_millis(1_000),
            "300 kB past the burst at 1 MB/s took {waited:?}"
        );
        // Raised to 10 MB/s: 1 MB more takes a tenth of a second.
        assert_eq!(rate.set(10), 1);
        let again = Instant::now();
        for _ in 0..10 {
            rate.take(100_000).await;
        }
        let raised = again.elapsed();
        assert!(
            raised <= Duration::from_millis(500),
            "1 MB at 10 MB/s took {raised:?}"
        );
    }
}
