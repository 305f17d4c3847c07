//! The Redis side of a transition: readiness checks per step, and the
//! fence that moves write authority between clusters without losing a write.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_redis::{ReplyKind, encode, reply_kind};

use super::keyspace::Keyspace;
use super::route::route;
use super::shared::Shared;
use super::side::{self, Mirror, Side};
use crate::migration::{CheckResult, Driver, State};

/// How long writes may be held while authority moves before the transition
/// is abandoned (clients see latency, not errors, within this window).
pub const FENCE_DEADLINE: Duration = Duration::from_secs(10);
/// Largest copy backlog a transition starts with: at a few thousand copies
/// a second it drains well within [`FENCE_DEADLINE`].
pub const MAX_FENCE_BACKLOG: usize = 5_000;

/// Readiness checks and fencing for one Redis migration.
pub struct RedisDriver {
    shared: Arc<Shared>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl RedisDriver {
    /// A driver over the migration's shared runtime.
    #[must_use]
    pub fn new(shared: Arc<Shared>, shutdown: tokio_util::sync::CancellationToken) -> Self {
        RedisDriver { shared, shutdown }
    }

    /// Shadow-read outcomes of a keyspace since the proxy started.
    fn shadow_reads(&self, index: usize) -> serde_json::Value {
        let counts = &self.shared.keyspace_metrics[index].shadow;
        serde_json::json!({
            "match": counts[0].get(),
            "mismatch": counts[1].get(),
            "error": counts[2].get(),
        })
    }

    fn keyspace(&self, name: &str) -> Option<&Arc<Keyspace>> {
        self.shared
            .keyspaces
            .iter()
            .map(|(_, k)| k)
            .find(|k| &*k.topic.name == name)
    }

    async fn reachable(&self, side: Side) -> CheckResult {
        let name = match side {
            Side::Source => "source_reachable",
            Side::Target => "target_reachable",
        };
        let cluster = self.shared.cluster(side).to_owned();
        let mirror = Mirror {
            protocol: 2,
            db: 0,
            name: None,
        };
        let conn = side::open(
            &self.shared.upstreams[side.index()],
            &self.shared.credentials[side.index()],
            &mirror,
            &self.shared.limits,
        )
        .await;
        let result = match conn {
            Ok(mut conn) => {
                side::call(&mut conn, &self.shared.limits, &encode::command(&[b"PING"])).await
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(reply) if reply_kind(&reply) != ReplyKind::Error => {
                CheckResult::pass(name, format!("cluster \"{cluster}\" answered PING"))
            }
            Ok(reply) => CheckResult::fail(
                name,
                format!(
                    "cluster \"{cluster}\" refused PING: {}",
                    String::from_utf8_lossy(&reply).trim_end()
                ),
            ),
            Err(reason) => CheckResult::fail(name, reason),
        }
    }

    /// Copies in flight are fine (the fence drains them); a backlog too
    /// large to drain within the fence deadline, or any failed copy, is not.
    fn backlog_small(&self, keyspace: &Keyspace, name: &str, direction: &str) -> [CheckResult; 2] {
        let backlog = self.shared.copier.backlog(keyspace.index);
        let repairs = self.shared.copier.repair_len(keyspace.index);
        [
            if backlog <= MAX_FENCE_BACKLOG {
                CheckResult::pass(
                    name,
                    format!("{backlog} copies {direction} in flight; the write fence drains them"),
                )
            } else {
                CheckResult::fail(
                    name,
                    format!(
                        "{backlog} keys waiting to be copied {direction}, more than the {MAX_FENCE_BACKLOG} the write fence can drain in time"
                    ),
                )
            },
            if repairs == 0 {
                CheckResult::pass("repair_set_empty", "no failed copies awaiting retry")
            } else {
                CheckResult::fail(
                    "repair_set_empty",
                    format!(
                        "{repairs} key(s) failed to copy and are being retried; see the proxy log for the reason"
                    ),
                )
            },
        ]
    }
}

impl RedisDriver {
    /// Whether the keyspace reached `cutover` by rolling back from `target`:
    /// then writes made in `target` exist only on the target until a
    /// reverse backfill copies them back.
    async fn entered_from_target(&self, topic: &str) -> bool {
        let Ok(snapshot) = self.shared.store.load().await else {
            return true;
        };
        let key = (self.shared.migration.name.to_string(), topic.to_owned());
        snapshot
            .get(&key)
            .and_then(|record| record.last_transition.as_ref())
            .is_some_and(|t| t.from == State::Target)
    }
}

#[async_trait]
impl Driver for RedisDriver {
    async fn checks(&self, topic: &str, from: State, to: State) -> Vec<CheckResult> {
        let Some(keyspace) = self.keyspace(topic) else {
            // No checks would read as "ready": say what is unknown instead.
            return vec![CheckResult::fail(
                "keyspace_known",
                format!(
                    "the Redis driver has no keyspace named {topic}, so nothing about it could be checked"
                ),
            )];
        };
        let mut checks = Vec::new();
        match (from, to) {
            (State::Source, State::DualRead) => checks.push(self.reachable(Side::Target).await),
            (State::DualRead, State::DualWrite) | (State::Target, State::Cutover) => {
                checks.push(self.reachable(Side::Source).await);
                checks.push(self.reachable(Side::Target).await);
            }
            (State::Cutover, State::DualWrite) => {
                checks.push(self.reachable(Side::Source).await);
                checks.extend(self.backlog_small(
                    keyspace,
                    "reverse_copy_backlog_drainable",
                    "back to the source",
                ));
                if self.entered_from_target(topic).await {
                    checks.push(super::backfill::complete_check(
                        &self.shared,
                        keyspace,
                        Side::Target,
                    ));
                }
            }
            (State::DualWrite, State::Cutover) => {
                checks.push(self.reachable(Side::Target).await);
                checks.extend(self.backlog_small(
                    keyspace,
                    "copy_backlog_drainable",
                    "to the target",
                ));
                checks.extend(super::backfill::readiness(&self.shared, keyspace).await);
            }
            (State::Cutover, State::Target) => {
                checks.extend(self.backlog_small(
                    keyspace,
                    "reverse_copy_backlog_drainable",
                    "back to the source",
                ));
            }
            _ => {}
        }
        checks
    }

    /// When write authority changes side, hold new writes, let in-flight
    /// writes finish and every pending copy land, all within [`FENCE_DEADLINE`].
    async fn prepare(&self, topic: &str, from: State, to: State) -> Result<(), String> {
        let Some(keyspace) = self.keyspace(topic) else {
            return Ok(());
        };
        if route(from).primary == route(to).primary {
            return Ok(());
        }
        keyspace.raise_fence();
        let started = tokio::time::Instant::now();
        let deadline = started + FENCE_DEADLINE;
        while keyspace.inflight() > 0 {
            if tokio::time::Instant::now() >= deadline {
                keyspace.lower_fence();
                return Err(format!(
                    "{} write(s) still unanswered after {FENCE_DEADLINE:?}; writes released, state unchanged",
                    keyspace.inflight()
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !self.shared.copier.drain(keyspace.index, remaining).await {
            keyspace.lower_fence();
            return Err(format!(
                "copy backlog did not drain within {FENCE_DEADLINE:?} ({} pending, {} in repair); writes released, state unchanged",
                self.shared.copier.backlog(keyspace.index),
                self.shared.copier.repair_len(keyspace.index)
            ));
        }
        tracing::info!(migration = %self.shared.migration.name, keyspace = topic, held_ms = started.elapsed().as_millis(), "write fence drained");
        Ok(())
    }

    async fn applied(&self, topic: &str, from: State, to: State) {
        let Some(keyspace) = self.keyspace(topic) else {
            return;
        };
        keyspace.lower_fence();
        super::backfill::entered(&self.shared, keyspace, to);
        if self.shared.options.backfill_on_enter
            && super::backfill::starts_on_enter(from, to)
            && let Err(e) = super::backfill::start(&self.shared, keyspace, &self.shutdown).await
        {
            tracing::warn!(keyspace = topic, error = %e, "automatic backfill did not start");
        }
    }

    async fn aborted(&self, topic: &str, _from: State, _to: State) {
        if let Some(keyspace) = self.keyspace(topic) {
            keyspace.lower_fence();
        }
    }

    async fn action(
        &self,
        topic: &str,
        action: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let keyspace = self
            .keyspace(topic)
            .ok_or_else(|| format!("no keyspace named {topic}"))?;
        match action {
            "backfill" => {
                let progress =
                    super::backfill::start(&self.shared, keyspace, &self.shutdown).await?;
                Ok(
                    serde_json::json!({ "started": true, "from": progress.from, "total_keys": progress.total }),
                )
            }
            "verify" => {
                let sample = params["sample"]
                    .as_u64()
                    .map_or(self.shared.options.verify_sample, |n| {
                        usize::try_from(n).unwrap_or(usize::MAX)
                    });
                let report = super::verify::verify(&self.shared, keyspace, sample).await?;
                Ok(serde_json::to_value(report).expect("report serializes"))
            }
            other => Err(format!(
                "unknown action {other}: Redis keyspaces support backfill and verify"
            )),
        }
    }

    fn status(&self, topic: &str) -> Option<serde_json::Value> {
        let keyspace = self.keyspace(topic)?;
        let mut status = serde_json::json!({
            "copy_backlog": self.shared.copier.backlog(keyspace.index),
            "repair_set": self.shared.copier.repair_len(keyspace.index),
            "inflight_writes": keyspace.inflight(),
            "fenced": keyspace.is_fenced(),
            "shadow_reads": self.shadow_reads(keyspace.index),
        });
        if let Some(backfill) = super::backfill::status(&self.shared, keyspace) {
            status["backfill"] = backfill;
        }
        Some(status)
    }
}
