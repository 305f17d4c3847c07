//! The history copy's speed limit (`kafka.history_mb_per_second`): one
//! token bucket per migration, shared by every partition's copier and taken
//! before each batch is written, so the copy leaves the clusters' disks and
//! network to the live traffic. The bucket holds at most one second of
//! bytes; a batch larger than what is left is let through and paid for by
//! waiting, so no batch is ever too large to pass.

use std::time::Duration;

use tokio::time::Instant;

/// A byte-rate limit.
#[derive(Debug)]
pub(super) struct Rate {
    bytes_per_second: f64,
    /// Bytes that may pass now (negative: owed) and when it was last filled.
    bucket: tokio::sync::Mutex<(f64, Instant)>,
}

impl Rate {
    pub(super) fn new(mb_per_second: u32) -> Rate {
        let bytes_per_second = f64::from(mb_per_second.max(1)) * 1_000_000.0;
        Rate {
            bytes_per_second,
            bucket: tokio::sync::Mutex::new((bytes_per_second, Instant::now())),
        }
    }

    /// Waits until `bytes` may pass. Takers are served in turn (the lock is
    /// held while one waits), so a partition cannot starve the others.
    pub(super) async fn take(&self, bytes: usize) {
        let mut bucket = self.bucket.lock().await;
        let (tokens, filled) = &mut *bucket;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*filled).as_secs_f64() * self.bytes_per_second)
            .min(self.bytes_per_second);
        *filled = now;
        #[allow(clippy::cast_precision_loss)] // A batch is far below 2^52 bytes.
        let cost = bytes as f64;
        *tokens -= cost;
        if *tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-*tokens / self.bytes_per_second)).await;
        }
    }
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
    }
}
