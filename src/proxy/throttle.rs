//! Slows down repeated authentication failures from one client address, so
//! guessing passwords through the proxy costs time, while a client that
//! mistyped once is answered at once. Off the hot path: it is consulted
//! only when a client authenticates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures from one address answered without delay.
const FREE_FAILURES: u32 = 3;
/// Delay after the first delayed failure; doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// The longest a failed authentication is held back.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address with no failure for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(60);
/// Addresses remembered at most (oldest forgotten first when full).
const MAX_ADDRESSES: usize = 10_000;

/// Recent authentication failures per client address.
#[derive(Default)]
pub struct AuthThrottle {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthThrottle {
    /// Records a failure from `ip` and returns how long to hold its answer.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_ADDRESSES && !failures.contains_key(&ip) {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= MAX_ADDRESSES
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| *k)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = now;
        delay_for(entry.0)
    }

    /// A success from `ip` clears its record.
    pub fn succeeded(&self, ip: IpAddr) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }
}

fn delay_for(failures: u32) -> Duration {
    let Some(excess) = failures.checked_sub(FREE_FAILURES + 1) else {
        return Duration::ZERO;
    };
    FIRST_DELAY
        .checked_mul(1_u32.checked_shl(excess).unwrap_or(u32::MAX))
        .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_free_failures_and_are_capped() {
        let delays: Vec<_> = (1..=10).map(delay_for).collect();
        assert_eq!(&delays[..3], &[Duration::ZERO; 3]);
        assert_eq!(delays[3], FIRST_DELAY);
        assert_eq!(delays[4], FIRST_DELAY * 2);
        assert_eq!(delays[9], MAX_DELAY);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn addresses_are_apart_and_success_or_time_forgets() {
        let throttle = AuthThrottle::default();
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..4 {
            throttle.failed(a, t0);
        }
        assert_eq!(throttle.failed(a, t0), FIRST_DELAY * 2);
        assert_eq!(throttle.failed(b, t0), Duration::ZERO);
        assert_eq!(throttle.failed(a, t0 + FORGET_AFTER), Duration::ZERO);
        throttle.succeeded(b);
        assert_eq!(throttle.failed(b, t0), Duration::ZERO);
    }
}
