//! Polling with a deadline: the only place tests may sleep.

use std::future::Future;
use std::thread;
use std::time::{Duration, Instant};

/// First pause between polls; doubled up to [`MAX_BACKOFF`] so that fast
/// conditions are seen within milliseconds without spinning on slow ones.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// Polls `cond` until it returns true.
///
/// # Panics
/// When `deadline` passes first; the message names `what` was awaited.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if cond() {
            return;
        }
        let waited = start.elapsed();
        if waited >= deadline {
            panic!("timed out after {waited:.1?} waiting for {what}");
        }
        thread::sleep(backoff.min(deadline - waited));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Async [`wait_until`]: awaits `cond()` until it yields true, sleeping on
/// the tokio timer in between.
///
/// # Panics
/// When `deadline` passes first; the message names `what` was awaited.
pub async fn wait_until_async<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if cond().await {
            return;
        }
        let waited = start.elapsed();
        if waited >= deadline {
            panic!("timed out after {waited:.1?} waiting for {what}");
        }
        tokio::time::sleep(backoff.min(deadline - waited)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
