//! What `ctl check/advance/rollback` runs for a Kafka topic in this build,
//! and the `migrate_metadata` action behind `ctl migrate-metadata`.
//!
//! `source → dual_read` needs:
//! - `target_reachable`: the target answers ApiVersions with the APIs the
//!   proxy will use on it, at the proxy's versions;
//! - `target_topic_exists`: the target has the topic with at least the
//!   source's partition count;
//! - `no_bypassing_consumers`: every consumer group the proxy has seen in
//!   its own traffic for the topic has committed on the source no further
//!   than the proxy relayed (or than its committed offset when the checks
//!   first looked, for partitions the proxy relayed no commit for), polled
//!   twice over [`SETTLE`] + [`WINDOW`]; a group committing beyond that
//!   commits from somewhere else and is named; and no group the source
//!   lists (ListGroups, DescribeGroups) has members assigned the topic
//!   without having used it through the proxy (named with their hosts). A
//!   source that cannot list or describe its groups fails the check. The
//!   groups seen outlive a restart (`migration::recall`); for one
//!   heartbeat interval after a start without a complete record of them,
//!   the check refuses and says how long to wait;
//! - `no_bypassing_producers`: each partition's source high watermark grew
//!   over [`WINDOW`] by no more than the offsets of Produce requests the
//!   proxy relayed (counted from [`SETTLE`] before the window opened, so a
//!   proxied write acknowledged before the window but made visible in it is
//!   still counted).
//!
//! `dual_write` needs `target_reachable` and `target_topic_exists`,
//! `cutover` needs `target_topic_exists`, and `target` the splice checks
//! of `splice_checks`. Every transition switches the partitions whose
//! writing cluster changes in `prepare` (see `moves`), so a switch that
//! fails refuses the transition. Rollbacks need no checks.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cutover_kafka::kafka_protocol::messages::ApiKey;

use super::group_admin;
use super::group_move;
use super::history;
use super::moves;
use super::splice_checks;
use super::topics::{self, TopicShape};
use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::observe::{self, Produced};
use crate::kafka::probe;
use crate::kafka::versions::SUPPORTED;
use crate::migration::{CheckResult, Driver, State};

/// APIs the target must offer, within the proxy's versions, before clients'
/// reads may involve it.
const TARGET_NEEDS: &[ApiKey] = &[
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DescribeConfigs,
];

/// How long before the sampling window proxied produce counts are taken.
const SETTLE: Duration = Duration::from_secs(1);
/// How long source offsets are watched for writes and commits.
pub(crate) const WINDOW: Duration = Duration::from_millis(1500);

/// The Kafka driver.
pub(crate) struct KafkaDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KafkaDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDriver")
            .field("migration", &self.shared.migration.name)
            .finish_non_exhaustive()
    }
}

impl KafkaDriver {
    /// Whether `topic`'s source log is copied to the target.
    fn copies_history(&self, topic: &str) -> bool {
        self.shared.history.of(topic) == crate::config::HistoryMode::Copy
    }

    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        KafkaDriver { shared }
    }

    /// Switches `topic`'s partitions back to where `from` has them.
    async fn aborted_partitions(&self, topic: &str, from: State) {
        if let Err(e) = moves::apply(&self.shared, topic, from).await {
            tracing::error!(migration = %self.shared.migration.name, topic, error = %e, "could not restore partitions after an aborted transition");
        }
    }

    async fn target_reachable(&self) -> CheckResult {
        const NAME: &str = "target_reachable";
        let target = &self.shared.target;
        let answer =
            probe::api_versions(target, self.shared.connect_timeout, self.shared.max_frame).await;
        let response = match answer {
            Ok(r) if r.error_code == 0 => r,
            Ok(r) => {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "cluster \"{}\" answered ApiVersions: {}",
                        target.cluster,
                        crate::kafka::retry::describe(r.error_code)
                    ),
                );
            }
            Err(e) => return CheckResult::fail(NAME, e.to_string()),
        };
        let missing: Vec<String> = TARGET_NEEDS
            .iter()
            .filter(|&&key| {
                let Some(&(_, min, max)) = SUPPORTED.iter().find(|r| r.0 == key as i16) else {
                    return true;
                };
                !response.api_keys.iter().any(|a| {
                    a.api_key == key as i16 && a.min_version <= max && min <= a.max_version
                })
            })
            .map(|key| format!("{key:?}"))
            .collect();
        if missing.is_empty() {
            CheckResult::pass(
                NAME,
                format!(
                    "cluster \"{}\" answers ApiVersions with every API the proxy needs ({} keys offered)",
                    target.cluster,
                    response.api_keys.len()
                ),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!(
                    "cluster \"{}\" lacks, at the proxy's versions: {}",
                    target.cluster,
                    missing.join(", ")
                ),
            )
        }
    }
    /// `target_topic_exists`, and the source's shape of the topic for the
    /// bypass checks.
    async fn target_topic(&self, topic: &str) -> (CheckResult, Option<TopicShape>) {
        const NAME: &str = "target_topic_exists";
        let shared = &self.shared;
        let source = match topics::view(shared, &shared.bootstrap, topic).await {
            Ok(v) => v.topic,
            Err(e) => return (CheckResult::fail(NAME, e), None),
        };
        let Some(source) = source else {
            return (
                CheckResult::fail(
                    NAME,
                    format!(
                        "cluster \"{}\" (source) has no topic {topic}",
                        shared.bootstrap.cluster
                    ),
                ),
                None,
            );
        };
        let want = source.partitions.len();
        let result = match topics::view(shared, &shared.target, topic).await {
            Err(e) => CheckResult::fail(NAME, e),
            Ok(v) => match v.topic {
                None => CheckResult::fail(
                    NAME,
                    format!(
                        "cluster \"{}\" (target) has no topic {topic}; the source has {want} partition(s) (run `ctl migrate-metadata`)",
                        shared.target.cluster
                    ),
                ),
                Some(t) if t.partitions.len() < want => CheckResult::fail(
                    NAME,
                    format!(
                        "cluster \"{}\" (target) has {} partition(s) of {topic}, fewer than the source's {want}",
                        shared.target.cluster,
                        t.partitions.len()
                    ),
                ),
                Some(t) => CheckResult::pass(
                    NAME,
                    format!(
                        "cluster \"{}\" (target) has {} partition(s) of {topic}; the source has {want}",
                        shared.target.cluster,
                        t.partitions.len()
                    ),
                ),
            },
        };
        (result, Some(source))
    }

    /// Committed offsets of every group in `groups`, by group then partition;
    /// a group whose offsets cannot be read maps to its error.
    async fn commits(
        &self,
        topic: &str,
        groups: &[String],
        partitions: &[i32],
    ) -> BTreeMap<String, Result<HashMap<i32, i64>, String>> {
        let mut out = BTreeMap::new();
        for g in groups {
            out.insert(
                g.clone(),
                group_admin::committed(&self.shared, g, topic, partitions).await,
            );
        }
        out
    }

    /// `no_bypassing_consumers`, second half: groups the source lists with
    /// members assigned `topic` that never used it through the proxy
    /// (`seen`) fail `passed`, naming each group and its members' hosts; so
    /// does a source that cannot list or describe its groups (what is not
    /// known is never a pass).
    async fn unseen_check(&self, topic: &str, seen: &[String], passed: CheckResult) -> CheckResult {
        const NAME: &str = "no_bypassing_consumers";
        let cluster = &self.shared.bootstrap.cluster;
        match group_admin::unseen_consumers(&self.shared, topic, seen).await {
            Err(e) => CheckResult::fail(
                NAME,
                format!(
                    "cannot tell whether groups read {topic} from cluster \"{cluster}\" around the proxy: {e}; `--force` advances anyway"
                ),
            ),
            Ok(unseen) if unseen.is_empty() => CheckResult::pass(
                NAME,
                format!(
                    "{}; no group the source lists reads {topic} around the proxy",
                    passed.reason
                ),
            ),
            Ok(unseen) => {
                let named: Vec<String> = unseen
                    .iter()
                    .map(|(group, members)| {
                        let hosts: BTreeSet<&str> =
                            members.iter().map(|m| m.host.as_str()).collect();
                        format!(
                            "group {group} ({} member(s) from {})",
                            members.len(),
                            hosts.into_iter().collect::<Vec<_>>().join(", ")
                        )
                    })
                    .collect();
                CheckResult::fail(
                    NAME,
                    format!(
                        "reading {topic} straight from cluster \"{cluster}\", never through the proxy: {}; point them at the proxy first",
                        named.join("; ")
                    ),
                )
            }
        }
    }

    /// `no_bypassing_consumers` and `no_bypassing_producers`, sampled over
    /// one window.
    async fn bypass_checks(&self, topic: &str, source: Option<&TopicShape>) -> Vec<CheckResult> {
        const CONSUMERS: &str = "no_bypassing_consumers";
        const PRODUCERS: &str = "no_bypassing_producers";
        let Some(source) = source else {
            let why = format!("{topic} could not be described on the source");
            return vec![
                CheckResult::fail(CONSUMERS, why.clone()),
                CheckResult::fail(PRODUCERS, why),
            ];
        };
        let shared = &self.shared;
        let partitions: Vec<i32> = source.partitions.iter().map(|p| p.0).collect();
        let groups = shared.observed.groups_for(topic);

        let produced_before = shared.observed.produced(topic);
        let first = self.commits(topic, &groups, &partitions).await;
        tokio::time::sleep(SETTLE).await;
        let leo = || async {
            topics::refresh_layout(shared, Side::Source, topic).await?;
            topics::list_offsets(shared, Side::Source, topic, &partitions, -1, 0).await
        };
        let leo_before = leo().await;
        tokio::time::sleep(WINDOW).await;
        let leo_after = leo().await;
        let second = self.commits(topic, &groups, &partitions).await;
        let produced_after = shared.observed.produced(topic);

        let commits = [&first, &second];
        let consumers = consumers_verdict(shared, topic, &groups, &partitions, commits);
        let consumers = if consumers.passed {
            self.unseen_check(topic, &groups, consumers).await
        } else {
            consumers
        };
        let consumers = shared.recall.hedge(observe::GROUPS, consumers);

        let producers = producers_verdict(
            shared,
            topic,
            &partitions,
            [leo_before, leo_after],
            [&produced_before, &produced_after],
        );
        vec![consumers, producers]
    }
}

#[async_trait]
impl Driver for KafkaDriver {
    async fn checks(&self, topic: &str, from: State, to: State) -> Vec<CheckResult> {
        if to <= from {
            return Vec::new();
        }
        match to {
            State::DualRead => {
                let mut out = vec![self.target_reachable().await];
                let (exists, source) = self.target_topic(topic).await;
                out.push(exists);
                if self.copies_history(topic) {
                    let shared = &self.shared;
                    out.push(
                        history::checks::target_partitions_empty(shared, &shared.copies, topic)
                            .await,
                    );
                }
                out.extend(self.bypass_checks(topic, source.as_ref()).await);
                out
            }
            State::DualWrite => {
                let mut out = vec![self.target_reachable().await];
                out.push(self.target_topic(topic).await.0);
                if self.copies_history(topic) {
                    out.push(history::checks::history_caught_up(
                        &self.shared.copies,
                        topic,
                    ));
                } else {
                    out.push(splice_checks::target_records(&self.shared, topic).await);
                }
                out
            }
            State::Cutover => {
                let mut out = vec![self.target_topic(topic).await.0];
                if self.copies_history(topic) {
                    out.push(history::checks::history_caught_up(
                        &self.shared.copies,
                        topic,
                    ));
                }
                out
            }
            State::Target => {
                let mut out = splice_checks::before_target(&self.shared, topic).await;
                if self.copies_history(topic) {
                    let shared = &self.shared;
                    out.push(history::checks::history_copied(shared, &shared.copies, topic).await);
                }
                out
            }
            State::Source => Vec::new(),
        }
    }

    async fn prepare(&self, topic: &str, from: State, to: State) -> Result<(), String> {
        let _one_at_a_time = self.shared.transitions.lock().await;
        if from == State::Target {
            history::unretire_source(&self.shared).await?;
        }
        if to == State::DualWrite && from == State::DualRead {
            let count = moves::partition_count(&self.shared, topic).await?;
            let default = moves::percent_of(count, self.shared.dual_write_percent);
            moves::set_shifted(&self.shared, topic, default).await?;
        }
        moves::apply(&self.shared, topic, to).await?;
        if to == State::Target && self.copies_history(topic) {
            let count = moves::partition_count(&self.shared, topic).await?;
            history::serve_from_target(&self.shared, topic, count).await?;
        }
        match group_move::follow_topic(&self.shared, topic, from, to).await {
            Ok(groups) => {
                if !groups.stayed.is_empty() {
                    tracing::warn!(migration = %self.shared.migration.name, topic, stayed = ?groups.stayed, "consumer groups stay on the source");
                }
                Ok(())
            }
            Err(e) => {
                self.aborted_partitions(topic, from).await;
                Err(e)
            }
        }
    }

    async fn aborted(&self, topic: &str, from: State, to: State) {
        let _one_at_a_time = self.shared.transitions.lock().await;
        if to == State::Target || from == State::Target {
            // The reverse transition moves back exactly the groups this one moved.
            if let Err(e) = group_move::follow_topic(&self.shared, topic, to, from).await {
                tracing::error!(migration = %self.shared.migration.name, topic, error = %e, "could not move consumer groups back after an aborted transition");
            }
        }
        self.aborted_partitions(topic, from).await;
    }

    async fn applied(&self, topic: &str, _from: State, to: State) {
        if !self.copies_history(topic) {
            return;
        }
        history::follow_state(&self.shared, topic, to).await;
        if to == State::Target {
            history::retire_source_if_done(&self.shared).await;
        }
    }

    fn status(&self, topic: &str) -> Option<serde_json::Value> {
        let mut status = splice_checks::status(&self.shared, topic);
        if self.copies_history(topic) {
            status["history"] = self.shared.copies.status(topic);
        }
        Some(status)
    }

    async fn action(
        &self,
        topic: &str,
        action: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match action {
            "migrate_metadata" => Ok(topics::migrate(&self.shared, topic).await),
            "shift" => {
                let _one_at_a_time = self.shared.transitions.lock().await;
                splice_checks::shift(&self.shared, topic, &params).await
            }
            _ => Err(format!(
                "{action} is not available for kafka (actions: migrate_metadata, shift)"
            )),
        }
    }

    async fn migration_action(
        &self,
        action: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match action {
            "history_rate" => history::set_rate(&self.shared, &params).await,
            _ => Err(format!(
                "{action} is not available for kafka migrations (actions: history_rate)"
            )),
        }
    }
}

/// Commits per group and partition, or why a group's could not be read.
type Commits = BTreeMap<String, Result<HashMap<i32, i64>, String>>;

/// `no_bypassing_consumers` from two samples of the groups' commits: a
/// commit the proxy did not relay was made around it.
fn consumers_verdict(
    shared: &Shared,
    topic: &str,
    groups: &[String],
    partitions: &[i32],
    [first, second]: [&Commits; 2],
) -> CheckResult {
    const CONSUMERS: &str = "no_bypassing_consumers";
    let mut bypassing = Vec::new();
    let mut unreadable = Vec::new();
    let mut watched = 0usize;
    for g in groups {
        let (Some(Ok(a)), Some(Ok(b))) = (first.get(g), second.get(g)) else {
            let e = [first.get(g), second.get(g)]
                .into_iter()
                .flatten()
                .find_map(|r| r.as_ref().err())
                .cloned()
                .unwrap_or_default();
            unreadable.push(format!("{g} ({e})"));
            continue;
        };
        if a.is_empty() && b.is_empty() {
            continue;
        }
        watched += 1;
        let mut detail = String::new();
        for &p in partitions {
            let now = a.get(&p).copied().max(b.get(&p).copied());
            let Some(now) = now else { continue };
            let accounted =
                shared
                    .observed
                    .accounted(g, topic, p, a.get(&p).copied().unwrap_or(-1));
            if now > accounted {
                if !detail.is_empty() {
                    detail.push_str(", ");
                }
                let _ = write!(
                    detail,
                    "{topic}/{p} committed at {now}, the proxy accounts for {}",
                    if accounted < 0 {
                        "no commit".to_owned()
                    } else {
                        accounted.to_string()
                    }
                );
            }
        }
        if !detail.is_empty() {
            bypassing.push(format!("group {g} ({detail})"));
        }
    }
    if !bypassing.is_empty() {
        CheckResult::fail(
            CONSUMERS,
            format!(
                "committing on cluster \"{}\" without the proxy: {}",
                shared.bootstrap.cluster,
                bypassing.join("; ")
            ),
        )
    } else if !unreadable.is_empty() {
        CheckResult::fail(
            CONSUMERS,
            format!(
                "could not read committed offsets of {}",
                unreadable.join(", ")
            ),
        )
    } else if groups.is_empty() {
        CheckResult::pass(
            CONSUMERS,
            format!(
                "no consumer group has used {topic} through the proxy; groups that never connect through it are not visible on this broker"
            ),
        )
    } else {
        CheckResult::pass(
            CONSUMERS,
            format!(
                "of the {} group(s) seen through the proxy, {watched} have commits on {topic}, all made through the proxy; groups that never connected through the proxy are not counted",
                groups.len()
            ),
        )
    }
}

/// `no_bypassing_producers` from the source's end offsets before and after
/// the window: growth the proxy did not relay was written around it.
fn producers_verdict(
    shared: &Shared,
    topic: &str,
    partitions: &[i32],
    [leo_before, leo_after]: [Result<HashMap<i32, i64>, String>; 2],
    [produced_before, produced_after]: [&HashMap<i32, Produced>; 2],
) -> CheckResult {
    const PRODUCERS: &str = "no_bypassing_producers";
    match (leo_before, leo_after) {
        (Err(e), _) | (_, Err(e)) => CheckResult::fail(PRODUCERS, e),
        (Ok(before), Ok(after)) => {
            let mut grew = 0i64;
            let mut bad = Vec::new();
            for &p in partitions {
                let (Some(&b), Some(&a)) = (before.get(&p), after.get(&p)) else {
                    continue;
                };
                let growth = (a - b).max(0);
                grew += growth;
                let relayed = produced_after.get(&p).map_or(0, |c| c.requested)
                    - produced_before.get(&p).map_or(0, |c| c.answered);
                let relayed = i64::try_from(relayed).unwrap_or(i64::MAX);
                if growth > relayed {
                    bad.push(format!(
                        "{topic}/{p} grew by {growth}, the proxy relayed at most {relayed}"
                    ));
                }
            }
            if bad.is_empty() {
                CheckResult::pass(
                    PRODUCERS,
                    format!(
                        "{} partition(s) of {topic} grew by {grew} record offset(s) in {WINDOW:?}, all relayed by the proxy",
                        partitions.len()
                    ),
                )
            } else {
                CheckResult::fail(
                    PRODUCERS,
                    format!(
                        "writes to cluster \"{}\" not made through the proxy in {WINDOW:?}: {}",
                        shared.bootstrap.cluster,
                        bad.join(", ")
                    ),
                )
            }
        }
    }
}
