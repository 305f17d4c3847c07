//! Verify: sample keys of a keyspace on the authoritative cluster and
//! compare each with the other cluster (type, value, TTL within 1 s).
//!
//! Values are compared by their DUMP payload. The copier writes with
//! RESTORE, so converged keys have identical payloads; a target filled by
//! another tool may encode equal values differently and show as differing.

use bytes::Bytes;
use cutover_redis::encode;
use serde::Serialize;

use super::copier::{Item, bulk_payload};
use super::keyspace::Keyspace;
use super::route::route;
use super::scan;
use super::shared::Shared;
use super::side::{self, Side, SideConn};
use super::slots::{array_elements, parse_integer};
use crate::migration::CheckResult;

/// TTLs read on both sides may differ by the time between the two reads.
const TTL_TOLERANCE_MS: i64 = 1_000;
/// Bound on SCAN steps while collecting a sample (a keyspace may be a tiny part of the data).
const MAX_SCAN_STEPS: usize = 2_000;
/// How long verify waits for an in-flight copy before re-comparing.
const PENDING_POLL: std::time::Duration = std::time::Duration::from_millis(5);
const PENDING_POLLS: usize = 100;
/// Re-reads of a differing key before it counts as divergent.
const RECHECKS: usize = 3;
/// Example keys reported per verify.
const EXAMPLES: usize = 10;

/// One key that differs.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// Database.
    pub db: u32,
    /// The key (lossy UTF-8).
    pub key: String,
    /// What differs.
    pub reason: String,
}

/// What a verify found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Authoritative side that was sampled.
    pub authoritative: &'static str,
    /// Keys compared.
    pub sampled: usize,
    /// Keys identical on both sides.
    pub matching: usize,
    /// Keys that differ.
    pub differing: usize,
    /// Keys that differed while a copy of them was still in flight.
    pub in_flight: usize,
    /// Every database of the authoritative side was scanned to its end
    /// (false when the sample filled up first or the scan hit its bound).
    pub exhausted: bool,
    /// The first few differences.
    pub examples: Vec<Difference>,
}

struct Snapshot {
    kind: Bytes,
    pttl: i64,
    dump: Option<Bytes>,
}

async fn inspect(shared: &Shared, conn: &mut SideConn, key: &[u8]) -> Result<Snapshot, String> {
    let mut request = Vec::new();
    for command in [
        &[&b"MULTI"[..]][..],
        &[b"TYPE", key],
        &[b"PTTL", key],
        &[b"DUMP", key],
        &[b"EXEC"],
    ] {
        request.extend_from_slice(&encode::command(command));
    }
    side::call(conn, &shared.limits, &request).await?;
    for _ in 0..3 {
        side::read_reply(conn, &shared.limits).await?;
    }
    let exec = side::read_reply(conn, &shared.limits).await?;
    let parts = array_elements(&exec);
    let kind = parts
        .first()
        .map(|t| t.slice(1..t.len().saturating_sub(2)))
        .unwrap_or_default();
    let pttl = parts.get(1).and_then(|p| parse_integer(p)).unwrap_or(-2);
    let dump = parts.get(2).and_then(bulk_payload);
    Ok(Snapshot { kind, pttl, dump })
}

fn compare(a: &Snapshot, b: &Snapshot) -> Option<String> {
    if a.kind != b.kind {
        return Some(format!(
            "type differs ({} vs {})",
            String::from_utf8_lossy(&a.kind),
            String::from_utf8_lossy(&b.kind)
        ));
    }
    if a.dump != b.dump {
        return Some("value differs".into());
    }
    let ttl_ok = match (a.pttl, b.pttl) {
        (x, y) if x < 0 || y < 0 => x == y,
        (x, y) => (x - y).abs() <= TTL_TOLERANCE_MS,
    };
    (!ttl_ok).then(|| format!("TTL differs ({} ms vs {} ms)", a.pttl, b.pttl))
}

/// Waits briefly for a key's copy to land (hot keys may be re-dirtied at once).
async fn wait_not_pending(shared: &Shared, item: &Item) {
    for _ in 0..PENDING_POLLS {
        if !shared.copier.is_pending(item) {
            return;
        }
        tokio::time::sleep(PENDING_POLL).await;
    }
}

/// Compares up to `sample` keys of `keyspace` across the two clusters.
///
/// # Errors
/// When either cluster cannot be reached.
pub async fn verify(shared: &Shared, keyspace: &Keyspace, sample: usize) -> Result<Report, String> {
    let primary = route(keyspace.topic.state()).primary;
    let mut report = Report {
        authoritative: if primary == Side::Source {
            "source"
        } else {
            "target"
        },
        sampled: 0,
        matching: 0,
        differing: 0,
        in_flight: 0,
        exhausted: false,
        examples: Vec::new(),
    };
    let mut exhausted = true;
    for (db, _) in scan::databases(shared, primary).await? {
        let mut from = scan::connect(shared, primary, db).await?;
        let mut other = scan::connect(shared, primary.other(), db).await?;
        let mut cursor = 0;
        for _ in 0..MAX_SCAN_STEPS {
            let (next, keys) = scan::step(shared, &mut from, cursor, 100).await?;
            for key in keys.iter().filter(|k| {
                shared
                    .keyspace_for(k)
                    .is_some_and(|ks| ks.index == keyspace.index)
            }) {
                if report.sampled >= sample {
                    return Ok(report);
                }
                let a = inspect(shared, &mut from, key).await?;
                if a.kind.as_ref() == b"none" {
                    continue; // expired or deleted since SCAN returned it
                }
                let b = inspect(shared, &mut other, key).await?;
                report.sampled += 1;
                let item = Item {
                    keyspace: keyspace.index,
                    db,
                    key: key.clone(),
                    from: primary,
                };
                let difference =
                    settled(shared, (&mut from, &mut other), &item, compare(&a, &b)).await?;
                if difference.is_some() && shared.copier.is_pending(&item) {
                    report.in_flight += 1;
                    continue;
                }
                report.count(db, key, difference);
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        exhausted &= cursor == 0;
    }
    report.exhausted = exhausted;
    Ok(report)
}

/// The difference of `item`'s key once it holds still: a write may be
/// acknowledged upstream but not yet seen by the proxy, or its copy may be
/// in flight, so a real divergence is one that stays across re-reads once
/// no copy of the key is pending.
async fn settled(
    shared: &Shared,
    (from, other): (&mut SideConn, &mut SideConn),
    item: &Item,
    mut difference: Option<String>,
) -> Result<Option<String>, String> {
    for _ in 0..RECHECKS {
        if difference.is_none() {
            break;
        }
        wait_not_pending(shared, item).await;
        tokio::time::sleep(PENDING_POLL).await;
        let a = inspect(shared, from, &item.key).await?;
        let b = inspect(shared, other, &item.key).await?;
        difference = compare(&a, &b);
    }
    Ok(difference)
}

impl Report {
    /// Counts one compared key, keeping the first few differences.
    fn count(&mut self, db: u32, key: &[u8], difference: Option<String>) {
        match difference {
            None => self.matching += 1,
            Some(reason) => {
                self.differing += 1;
                if self.examples.len() < EXAMPLES {
                    self.examples.push(Difference {
                        db,
                        key: String::from_utf8_lossy(key).into_owned(),
                        reason,
                    });
                }
            }
        }
    }
}

/// The `verify_clean` readiness check: a fresh sample shows no difference.
/// A sample that compared nothing passes only when the keyspace has no key
/// on the authoritative side; otherwise nothing is known, so it fails.
pub async fn clean_check(shared: &Shared, keyspace: &Keyspace) -> CheckResult {
    const NAME: &str = "verify_clean";
    match verify(shared, keyspace, shared.options.verify_sample).await {
        Ok(report) => judge(&report),
        Err(reason) => CheckResult::fail(NAME, format!("could not compare: {reason}")),
    }
}

fn judge(report: &Report) -> CheckResult {
    const NAME: &str = "verify_clean";
    let side = report.authoritative;
    if report.differing > 0 {
        let example = report
            .examples
            .first()
            .map(|d| format!(", e.g. {} ({})", d.key, d.reason))
            .unwrap_or_default();
        return CheckResult::fail(
            NAME,
            format!(
                "{} of {} sampled key(s) differ{example}",
                report.differing, report.sampled
            ),
        );
    }
    if report.matching > 0 {
        let skipped = if report.in_flight > 0 {
            format!(
                "; {} more skipped while their copy was in flight",
                report.in_flight
            )
        } else {
            String::new()
        };
        return CheckResult::pass(
            NAME,
            format!(
                "{} sampled key(s) identical on both clusters{skipped}",
                report.matching
            ),
        );
    }
    if report.in_flight > 0 {
        return CheckResult::fail(
            NAME,
            format!(
                "every sampled key ({}) had a copy in flight, so none could be compared; check again",
                report.in_flight
            ),
        );
    }
    if report.exhausted {
        return CheckResult::pass(
            NAME,
            format!("the keyspace has no key on the {side}: nothing to compare"),
        );
    }
    CheckResult::fail(
        NAME,
        format!(
            "no key of the keyspace was found within {MAX_SCAN_STEPS} SCAN steps on the {side}, so nothing was compared; run `ctl verify` with a larger sample"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(kind: &'static [u8], pttl: i64, dump: Option<&'static [u8]>) -> Snapshot {
        Snapshot {
            kind: Bytes::from_static(kind),
            pttl,
            dump: dump.map(Bytes::from_static),
        }
    }

    fn report(matching: usize, differing: usize, in_flight: usize, exhausted: bool) -> Report {
        Report {
            authoritative: "source",
            sampled: matching + differing + in_flight,
            matching,
            differing,
            in_flight,
            exhausted,
            examples: Vec::new(),
        }
    }

    /// A sample that compared nothing passes only for a keyspace with no
    /// key at all; every other "nothing compared" is unknown, so it fails.
    #[test]
    fn verify_clean_never_passes_on_nothing_compared() {
        assert!(judge(&report(3, 0, 1, false)).passed);
        assert!(!judge(&report(3, 1, 0, true)).passed);
        assert!(judge(&report(0, 0, 0, true)).passed);
        let bounded = judge(&report(0, 0, 0, false));
        assert!(!bounded.passed);
        assert!(
            bounded.reason.contains("nothing was compared"),
            "{}",
            bounded.reason
        );
        let in_flight = judge(&report(0, 0, 2, true));
        assert!(!in_flight.passed);
        assert!(
            in_flight.reason.contains("in flight"),
            "{}",
            in_flight.reason
        );
    }

    #[test]
    fn type_value_and_ttl_are_compared_with_tolerance() {
        let base = snapshot(b"string", 10_000, Some(b"v"));
        assert_eq!(
            compare(&base, &snapshot(b"string", 9_400, Some(b"v"))),
            None
        );
        assert_eq!(
            compare(&base, &snapshot(b"string", 8_000, Some(b"v"))).unwrap(),
            "TTL differs (10000 ms vs 8000 ms)"
        );
        assert_eq!(
            compare(&base, &snapshot(b"string", -1, Some(b"v"))).unwrap(),
            "TTL differs (10000 ms vs -1 ms)"
        );
        assert_eq!(
            compare(&base, &snapshot(b"string", 10_000, Some(b"w"))).unwrap(),
            "value differs"
        );
        assert_eq!(
            compare(&base, &snapshot(b"none", -2, None)).unwrap(),
            "type differs (string vs none)"
        );
    }
}
