//! What a restarted proxy remembers of its own observations (the groups,
//! members and subscriptions the readiness checks rely on), and how long it
//! stays unsure of what it may have forgotten.
//!
//! Sessions record observations in memory only; a control-plane task
//! ([`spawn_flush`]) writes a snapshot as a store blob when the set changed,
//! at most every [`FLUSH_EVERY`], so the data plane never does IO for it. On
//! SIGTERM the task writes a last snapshot once every connection has ended
//! and marks it complete. At start the snapshot is loaded back ([`load`]).
//!
//! What a snapshot may miss: after a crash (no complete snapshot) the last
//! [`FLUSH_EVERY`] of changes, or everything when no snapshot was ever
//! written. Every client of the proxy reconnects through it within one
//! heartbeat interval ([`REJOIN`]) and is seen again, so for that long after
//! such a start [`Recall::unsure`] tells the checks to refuse rather than
//! pass on what they cannot know.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::Shutdown;
use crate::migration::store::StateStore;
use crate::migration::{CheckKind, CheckResult};

/// How long clients take to show themselves again after the proxy starts:
/// a RocketMQ client heartbeats every broker every 30 s by default, and a
/// Kafka consumer finds its coordinator again within one heartbeat (3 s by
/// default) after its connections break.
pub const REJOIN: Duration = Duration::from_secs(30);
/// How often a changed observation set is written: short, so a crash loses
/// little; the write is a small file replaced atomically.
pub const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Largest snapshot written; bigger sets are cut and marked incomplete.
pub const MAX_SNAPSHOT_BYTES: usize = 16 << 20;

/// Flush tasks alive in this process: at shutdown each waits until only
/// they are left on the connection tracker.
static FLUSHERS: AtomicUsize = AtomicUsize::new(0);

/// A snapshot as stored.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    /// Unix milliseconds of the write.
    saved_ms: u64,
    /// Written after every connection ended (SIGTERM), with nothing cut.
    complete: bool,
    data: T,
}

/// What the previous process left, as found at start.
#[derive(Clone, Debug)]
pub struct Prior {
    /// Whether its last snapshot was complete.
    pub complete: bool,
    /// How long before this start it was written (`None`: no snapshot).
    pub age: Option<Duration>,
}

/// The memory of one migration's observations across restarts.
#[derive(Debug)]
pub struct Recall {
    started: Instant,
    /// `None` inside: a fresh state store, nothing to forget.
    prior: OnceLock<Option<Prior>>,
}

impl Default for Recall {
    fn default() -> Self {
        Recall {
            started: Instant::now(),
            prior: OnceLock::new(),
        }
    }
}

impl Recall {
    /// Records what [`load`] found.
    pub fn set_prior(&self, prior: Option<Prior>) {
        let _ = self.prior.set(prior);
    }

    /// How long ago this process started.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// When the observations may miss something the previous process saw:
    /// a sentence naming what is unknown and how long to wait. `None` once
    /// [`REJOIN`] has passed, after a complete snapshot, or on a fresh store.
    #[must_use]
    pub fn unsure(&self, what: &str) -> Option<String> {
        let prior = self.prior.get().cloned().flatten()?;
        if prior.complete {
            return None;
        }
        let up = self.uptime();
        let left = REJOIN.checked_sub(up)?;
        let lost = match prior.age {
            Some(age) => format!(
                "its last snapshot of them, written {}s before this start, may miss the last {}s before it stopped",
                age.as_secs(),
                FLUSH_EVERY.as_secs()
            ),
            None => "no snapshot of them was written".to_owned(),
        };
        Some(format!(
            "the proxy restarted {}s ago without a complete record of the {what} it had seen ({lost}); those that have not reconnected through it since are unknown: wait {}s more (one heartbeat interval, {}s) or --force",
            up.as_secs(),
            left.as_secs().max(1),
            REJOIN.as_secs()
        ))
    }
}

impl Recall {
    /// `result` of a check that relies on the observed `what`, refused
    /// while [`Recall::unsure`]: a pass becomes a refusal saying what is
    /// unknown (with what was found), a refusal says it too, since what
    /// it names may be the forgetting.
    #[must_use]
    pub fn hedge(&self, what: &str, result: CheckResult) -> CheckResult {
        let Some(unsure) = self.unsure(what) else {
            return result;
        };
        if result.blocks() {
            CheckResult::fail(result.name, format!("{}; also, {unsure}", result.reason))
        } else if result.kind == CheckKind::Gate {
            CheckResult::fail(
                result.name,
                format!("{unsure}. Known so far: {}", result.reason),
            )
        } else {
            result
        }
    }
}

/// Loads the snapshot named `blob`, returning its data and what the
/// previous process left. A state store holding `migration`'s topics but
/// no snapshot ran before without one; an unreadable snapshot is logged and
/// treated as missing: either way the checks wait [`REJOIN`].
pub async fn load<T: DeserializeOwned>(
    store: &dyn StateStore,
    migration: &str,
    blob: &str,
) -> (Option<T>, Option<Prior>) {
    let found = match store.get_blob(blob).await {
        Ok(found) => found,
        Err(e) => {
            tracing::warn!(migration, blob, error = %e, "observations of the previous run cannot be read; checks wait for clients to reconnect");
            return (None, Some(missing()));
        }
    };
    let Some(bytes) = found else {
        let ran_before = store
            .load()
            .await
            .map_or(true, |all| all.keys().any(|(m, _)| m == migration));
        return (None, ran_before.then(missing));
    };
    match serde_json::from_slice::<Stored<T>>(&bytes) {
        Ok(stored) => {
            let age = Duration::from_millis(now_ms().saturating_sub(stored.saved_ms));
            (
                Some(stored.data),
                Some(Prior {
                    complete: stored.complete,
                    age: Some(age),
                }),
            )
        }
        Err(e) => {
            tracing::warn!(migration, blob, error = %e, "observations of the previous run do not parse; checks wait for clients to reconnect");
            (None, Some(missing()))
        }
    }
}

fn missing() -> Prior {
    Prior {
        complete: false,
        age: None,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A source of snapshots: a change counter, and the data with whether it
/// is whole (not cut to a bound).
pub trait Snapshots: Send + Sync + 'static {
    /// The data written.
    type Data: Serialize + Send;
    /// Bumped on every change of the persisted set.
    fn changes(&self) -> u64;
    /// The current set, and whether nothing was left out.
    fn snapshot(&self) -> (Self::Data, bool);
}

/// At start: loads what the previous run persisted as `blob`, hands it to
/// `restore`, tells `recall` how that run ended, and only then keeps
/// persisting `source`: the flusher writes at once, so starting it before
/// the restore would overwrite the previous run's record with an empty one
/// (and a crash before the next flush would lose it).
pub async fn resume<S>(
    store: std::sync::Arc<dyn StateStore>,
    migration: &str,
    blob: String,
    recall: &Recall,
    source: std::sync::Arc<S>,
    shutdown: &Shutdown,
    restore: impl FnOnce(S::Data),
) where
    S: Snapshots,
    S::Data: DeserializeOwned,
{
    let (saved, prior) = load::<S::Data>(store.as_ref(), migration, &blob).await;
    if let Some(saved) = saved {
        restore(saved);
    }
    recall.set_prior(prior);
    spawn_flush(store, migration.to_owned(), blob, source, shutdown);
}

/// Writes `source`'s snapshot as `blob` whenever it changed, every
/// [`FLUSH_EVERY`]; on shutdown, once only flush tasks are left on the
/// connection tracker, writes a last one marked complete. The task is
/// itself on the tracker, so the drain waits for that write.
pub fn spawn_flush<S: Snapshots>(
    store: std::sync::Arc<dyn StateStore>,
    migration: String,
    blob: String,
    source: std::sync::Arc<S>,
    shutdown: &Shutdown,
) {
    FLUSHERS.fetch_add(1, Ordering::SeqCst);
    let token = shutdown.token.clone();
    let tracker = shutdown.tracker.clone();
    shutdown.tracker.spawn(async move {
        // Written at once: the next start knows this store ran a proxy.
        let mut written = None;
        loop {
            let changes = source.changes();
            if written != Some(changes) {
                if write(&*store, &blob, &*source, false).await {
                    written = Some(changes);
                } else {
                    tracing::warn!(%migration, blob, "observations not persisted; retrying");
                }
            }
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(FLUSH_EVERY) => {}
            }
        }
        // Connections still draining may record more: wait for them.
        while tracker.len() > FLUSHERS.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let done = write(&*store, &blob, &*source, true).await;
        FLUSHERS.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(%migration, complete = done, "observations persisted for the next start");
    });
}

/// One write; whether it succeeded.
async fn write<S: Snapshots>(
    store: &dyn StateStore,
    blob: &str,
    source: &S,
    closing: bool,
) -> bool {
    let (data, whole) = source.snapshot();
    let stored = Stored {
        saved_ms: now_ms(),
        complete: closing && whole,
        data,
    };
    let Ok(bytes) = serde_json::to_vec(&stored) else {
        return false;
    };
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        tracing::warn!(
            blob,
            bytes = bytes.len(),
            "observation snapshot over its bound; not written"
        );
        return false;
    }
    match store.put_blob(blob, bytes).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(blob, error = %e, "observation snapshot not written");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::store::FileStore;

    fn recall(prior: Option<Prior>) -> Recall {
        let r = Recall::default();
        r.set_prior(prior);
        r
    }

    #[test]
    fn only_an_incomplete_prior_makes_the_checks_unsure() {
        assert!(recall(None).unsure("groups").is_none(), "fresh store");
        let complete = Prior {
            complete: true,
            age: Some(Duration::from_secs(3)),
        };
        assert!(recall(Some(complete)).unsure("groups").is_none());
        let why = recall(Some(missing())).unsure("groups").unwrap();
        assert!(why.contains("no snapshot of them was written"), "{why}");
        assert!(
            why.contains("wait 30s more") || why.contains("wait 29s more"),
            "{why}"
        );
    }

    #[test]
    fn a_pass_is_refused_while_unsure_and_a_refusal_says_why() {
        let r = recall(Some(missing()));
        let pass = r.hedge("groups", CheckResult::pass("c", "all fine"));
        assert!(pass.blocks());
        assert!(
            pass.reason.ends_with("Known so far: all fine"),
            "{}",
            pass.reason
        );
        let fail = r.hedge("groups", CheckResult::fail("c", "group g bypasses"));
        assert!(
            fail.reason
                .starts_with("group g bypasses; also, the proxy restarted")
        );
        let info = r.hedge("groups", CheckResult::info("i", "n"));
        assert!(!info.blocks());
        let sure = recall(None).hedge("groups", CheckResult::pass("c", "ok"));
        assert!(sure.passed);
    }

    /// A counter and a list, as a protocol's observations.
    #[derive(Default)]
    struct Seen {
        changes: std::sync::atomic::AtomicU64,
        names: std::sync::Mutex<Vec<String>>,
    }

    impl Snapshots for Seen {
        type Data = Vec<String>;
        fn changes(&self) -> u64 {
            self.changes.load(Ordering::SeqCst)
        }
        fn snapshot(&self) -> (Vec<String>, bool) {
            (self.names.lock().unwrap().clone(), true)
        }
    }

    #[tokio::test]
    async fn changes_are_flushed_and_the_drain_writes_a_complete_snapshot() {
        let dir = std::env::temp_dir().join(format!("recall-flush-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store: std::sync::Arc<dyn StateStore> =
            std::sync::Arc::new(FileStore::open(&dir).unwrap());
        let seen = std::sync::Arc::new(Seen::default());
        let shutdown = Shutdown::new();
        spawn_flush(
            store.clone(),
            "m".into(),
            "obs".into(),
            seen.clone(),
            &shutdown,
        );
        let stored = || async {
            let bytes = store.get_blob("obs").await.unwrap()?;
            serde_json::from_slice::<Stored<Vec<String>>>(&bytes).ok()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored().await.is_none() {
            assert!(Instant::now() < deadline, "no snapshot written at start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        seen.names.lock().unwrap().push("g".into());
        seen.changes.fetch_add(1, Ordering::SeqCst);
        while stored().await.unwrap().data.is_empty() {
            assert!(Instant::now() < deadline, "the change was never flushed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!stored().await.unwrap().complete, "running: not complete");
        assert!(shutdown.drain(Duration::from_secs(5)).await);
        let last = stored().await.unwrap();
        assert!(last.complete && last.data == vec!["g".to_owned()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_snapshot_and_its_absence_are_told_apart() {
        let dir = std::env::temp_dir().join(format!("recall-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = FileStore::open(&dir).unwrap();
        let (data, prior) = load::<Vec<String>>(&store, "m", "obs-m").await;
        assert!(
            data.is_none() && prior.is_none(),
            "a fresh store has nothing to forget"
        );
        let bytes = serde_json::to_vec(&Stored {
            saved_ms: now_ms(),
            complete: true,
            data: vec!["g".to_owned()],
        })
        .unwrap();
        store.put_blob("obs-m", bytes).await.unwrap();
        let (data, prior) = load::<Vec<String>>(&store, "m", "obs-m").await;
        assert_eq!(data, Some(vec!["g".to_owned()]));
        assert!(prior.unwrap().complete);
        store.put_blob("obs-m", b"{torn".to_vec()).await.unwrap();
        let (data, prior) = load::<Vec<String>>(&store, "m", "obs-m").await;
        assert!(data.is_none());
        assert!(!prior.unwrap().complete, "unreadable is not complete");
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
