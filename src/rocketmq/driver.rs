//! What `ctl check/advance/rollback` runs for a RocketMQ topic.
//!
//! - `source → dual_read`: `target_reachable`, `target_topic_exists` (with
//!   at least the source's queue counts) and `all_group_members_proxied`
//!   (every member the source's brokers list for each group of the topic,
//!   seen through the proxy or listed by the brokers, is connected through
//!   the proxy; a broker that cannot list them refuses the step).
//!   Prepare: each group (seen or listed) gets its offsets on the target's
//!   queues set to their current max offset, so neither earlier target
//!   data is replayed nor anything skipped.
//! - `dual_read → dual_write`: `target_reachable`, `target_topic_exists`.
//! - `dual_write → cutover`: `target_reachable`.
//! - `cutover → target`: `source_inbound_zero` (no message reached the
//!   source's queues, through the proxy or around it, for
//!   `rocketmq.quiet_window`), `source_half_messages_resolved` (no
//!   transactional half message open on the source's masters of the topic),
//!   `source_delayed_zero` (no delayed or retried message waiting out its
//!   delay there) and `source_backlog_zero` (every group of
//!   the topic, seen through the proxy or listed by the source's brokers,
//!   consumed everything on the source, `%RETRY%` topics included).
//! - The groups and members seen through the proxy outlive a restart
//!   (`migration::recall`). `all_group_members_proxied` refuses while a
//!   member seen before a restart has not reconnected, for one heartbeat
//!   interval; after a start without a complete record of them, it and the
//!   backlog gates refuse for that long.
//! - `dual_read → source` (rollback): `target_backlog_zero` and
//!   `target_delayed_zero`, since target
//!   queues vanish from routes and anything still unread there would be
//!   stranded. Other rollbacks keep every queue that may hold messages.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::Shared;
use super::endpoints::Side;
use super::inventory::{self, Via, masters};
use super::offsets::{self, Brokers, Queue};
use crate::migration::{CheckResult, Driver, State};
use crate::proxy::recall;

/// The RocketMQ driver.
pub struct RocketmqDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RocketmqDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocketmqDriver")
            .field("migration", &self.shared.migration.name)
            .finish_non_exhaustive()
    }
}

impl RocketmqDriver {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        RocketmqDriver { shared }
    }

    async fn target_reachable(&self) -> CheckResult {
        const NAME: &str = "target_reachable";
        let cluster = self.shared.cluster(Side::Target);
        match self.shared.cluster_info(Side::Target).await {
            Ok(info) if info.broker_addr_table.is_empty() => CheckResult::fail(
                NAME,
                format!("cluster \"{cluster}\" answers but has no broker registered"),
            ),
            Ok(info) => CheckResult::pass(
                NAME,
                format!(
                    "cluster \"{cluster}\" answers with {} broker(s)",
                    info.broker_addr_table.len()
                ),
            ),
            Err(e) => CheckResult::fail(NAME, e),
        }
    }

    async fn target_topic_exists(&self, topic: &str, writable: bool) -> CheckResult {
        const NAME: &str = "target_topic_exists";
        let (source, target) = (
            offsets::route(&self.shared, Side::Source, topic).await,
            offsets::route(&self.shared, Side::Target, topic).await,
        );
        let cluster = self.shared.cluster(Side::Target);
        let (source, target) = match (source, target) {
            (Err(e), _) | (_, Err(e)) => return CheckResult::fail(NAME, e),
            (Ok(s), Ok(t)) => (s, t),
        };
        let Some(target) = target else {
            return CheckResult::fail(
                NAME,
                format!(
                    "cluster \"{cluster}\" (target) has no topic {topic}; create it with at least the source's queue counts"
                ),
            );
        };
        let sum = |r: &cutover_rocketmq::TopicRouteData, write: bool| -> i32 {
            r.queue_datas
                .iter()
                .filter(|q| {
                    if write {
                        q.is_writable()
                    } else {
                        q.is_readable()
                    }
                })
                .map(|q| {
                    if write {
                        q.write_queue_nums
                    } else {
                        q.read_queue_nums
                    }
                })
                .sum()
        };
        let (want_r, want_w) = source
            .as_ref()
            .map_or((1, 1), |s| (sum(s, false), sum(s, true)));
        let (have_r, have_w) = (sum(&target, false), sum(&target, true));
        if have_r < want_r.max(1) || (writable && have_w < want_w.max(1)) {
            return CheckResult::fail(
                NAME,
                format!(
                    "cluster \"{cluster}\" (target) has {have_r} readable / {have_w} writable queue(s) of {topic}; the source has {want_r} / {want_w}"
                ),
            );
        }
        CheckResult::pass(
            NAME,
            format!(
                "cluster \"{cluster}\" (target) has {have_r} readable / {have_w} writable queue(s) of {topic}; the source has {want_r} / {want_w}"
            ),
        )
    }

    /// `topic`'s route on `side`, or the check's result when there is
    /// nothing to inspect (a pass: the cluster has no such topic, `why`
    /// says what follows) or the route cannot be read (a fail).
    async fn route_or(
        &self,
        name: &str,
        side: Side,
        topic: &str,
        why: &str,
    ) -> Result<cutover_rocketmq::TopicRouteData, CheckResult> {
        match offsets::route(&self.shared, side, topic).await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(CheckResult::pass(
                name,
                format!(
                    "cluster \"{}\" has no topic {topic}, {why}",
                    self.shared.cluster(side)
                ),
            )),
            Err(e) => Err(CheckResult::fail(name, e)),
        }
    }

    /// Reads the same rows as `ctl clients` ([`inventory::consumers`]).
    async fn all_group_members_proxied(&self, topic: &str) -> CheckResult {
        const NAME: &str = "all_group_members_proxied";
        let route = match self
            .route_or(NAME, Side::Source, topic, "so no member reads it")
            .await
        {
            Ok(r) => r,
            Err(result) => return result,
        };
        let mut brokers = Brokers::new(&self.shared, Side::Source);
        let consumers = match inventory::consumers(&self.shared, &mut brokers, topic, &route).await
        {
            Ok(c) => c,
            Err(e) => return CheckResult::fail(NAME, e),
        };
        let groups = &consumers.groups;
        if groups.is_empty() {
            return self.shared.recall.hedge(GROUPS, CheckResult::pass(
                NAME,
                format!(
                    "no consumer group of {topic}: none subscribed through the proxy and the source's brokers list none"
                ),
            ));
        }
        let stray = direct_connections(&consumers);
        let not_back = self.members_not_back(&consumers);
        let result = if stray.is_empty() {
            CheckResult::pass(
                NAME,
                format!(
                    "{} group(s) of {topic} ({}; {} known only from the source's brokers): all {} connection(s) on the source's brokers come through the proxy",
                    groups.len(),
                    name_some(groups),
                    consumers.listed_only,
                    consumers.connections,
                ),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!(
                    "connected to cluster \"{}\" without the proxy (they would miss the target's queues): {}",
                    self.shared.cluster(Side::Source),
                    stray.join("; ")
                ),
            )
        };
        let result = self.shared.recall.hedge(GROUPS, result);
        let up = self.shared.recall.uptime();
        match recall::REJOIN.checked_sub(up) {
            Some(left) if result.passed && !not_back.is_empty() => CheckResult::fail(
                NAME,
                format!(
                    "members seen through the proxy before it restarted {}s ago have not reconnected since, so where they read from is unknown: {}; wait {}s more (one heartbeat interval, {}s) or --force",
                    up.as_secs(),
                    name_some(&not_back),
                    left.as_secs().max(1),
                    recall::REJOIN.as_secs()
                ),
            ),
            _ => result,
        }
    }

    /// Groups with members seen through the proxy before a restart that
    /// the source's brokers do not list now, one phrase per group.
    fn members_not_back(&self, consumers: &inventory::Consumers) -> BTreeSet<String> {
        let mut not_back = BTreeSet::new();
        for group in &consumers.groups {
            let listed: BTreeSet<&str> = consumers
                .rows
                .iter()
                .filter(|r| &r.group == group)
                .map(|r| r.client_id.as_str())
                .collect();
            let missing: BTreeSet<String> = self
                .shared
                .observed
                .members_not_back(group)
                .into_iter()
                .filter(|id| !listed.contains(id.as_str()))
                .collect();
            if !missing.is_empty() {
                not_back.insert(format!("group {group} ({})", name_some(&missing)));
            }
        }
        not_back
    }

    /// Each group's unread messages of `topic` (and its `%RETRY%` topic)
    /// on `side`: groups seen through the proxy and groups `side`'s
    /// brokers list for the topic.
    async fn backlog(&self, name: &str, side: Side, topic: &str) -> CheckResult {
        let cluster = self.shared.cluster(side);
        let route = match self
            .route_or(name, side, topic, "so nothing is unread")
            .await
        {
            Ok(r) => r,
            Err(result) => return result,
        };
        let mut brokers = Brokers::new(&self.shared, side);
        let groups =
            match inventory::known_groups(&self.shared, &mut brokers, side, topic, &route).await {
                Ok((g, _)) => g,
                Err(e) => return CheckResult::fail(name, e),
            };
        if groups.is_empty() {
            return self.shared.recall.hedge(GROUPS, CheckResult::pass(
                name,
                format!(
                    "no consumer group of {topic} on cluster \"{cluster}\": none subscribed through the proxy and its brokers list none"
                ),
            ));
        }
        let mut behind = Vec::new();
        for group in &groups {
            for t in [topic.to_owned(), format!("%RETRY%{group}")] {
                let queues = match offsets::route(&self.shared, side, &t).await {
                    Ok(Some(r)) => offsets::queues(&r),
                    Ok(None) => continue,
                    Err(e) => return CheckResult::fail(name, e),
                };
                match brokers.backlog(group, &t, &queues).await {
                    Ok(0) => {}
                    Ok(n) => behind.push(format!("group {group} has {n} unread message(s) of {t}")),
                    Err(e) => return CheckResult::fail(name, e),
                }
            }
        }
        if behind.is_empty() {
            self.shared.recall.hedge(GROUPS, CheckResult::pass(
                name,
                format!(
                    "{} group(s) consumed everything of {topic} (and their %RETRY% topics) on cluster \"{cluster}\"",
                    groups.len()
                ),
            ))
        } else {
            CheckResult::fail(
                name,
                format!("on cluster \"{cluster}\": {}", behind.join("; ")),
            )
        }
    }

    /// Sum of the max offsets of the source's queues of `topic`.
    async fn source_max_offsets(&self, topic: &str) -> Result<i64, String> {
        let Some(route) = offsets::route(&self.shared, Side::Source, topic).await? else {
            return Ok(0);
        };
        let mut brokers = Brokers::new(&self.shared, Side::Source);
        let mut sum = 0;
        for q in offsets::queues(&route) {
            sum += brokers.max_offset(topic, &q).await?;
        }
        Ok(sum)
    }

    async fn source_inbound_zero(&self, topic: &str) -> CheckResult {
        const NAME: &str = "source_inbound_zero";
        let window = self.shared.quiet_window;
        let cluster = self.shared.cluster(Side::Source);
        if let Some(at) = self.shared.handles.last_sent(topic, Side::Source) {
            let ago = at.elapsed();
            if ago < window {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "a producer sent {topic} to cluster \"{cluster}\" through the proxy {ago:.1?} ago (quiet window {window:?}); producers still use an old route"
                    ),
                );
            }
        }
        let before = match self.source_max_offsets(topic).await {
            Ok(v) => v,
            Err(e) => return CheckResult::fail(NAME, e),
        };
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let after = match self.source_max_offsets(topic).await {
            Ok(v) => v,
            Err(e) => return CheckResult::fail(NAME, e),
        };
        let via_proxy = self
            .shared
            .handles
            .last_sent(topic, Side::Source)
            .is_some_and(|at| at >= started);
        if after != before || via_proxy {
            let mut why = format!(
                "cluster \"{cluster}\" received {} message(s) of {topic} in {window:?}",
                after - before
            );
            if !via_proxy {
                let _ = write!(why, ", none through the proxy: a producer bypasses it");
            }
            return CheckResult::fail(NAME, why);
        }
        CheckResult::pass(
            NAME,
            format!("cluster \"{cluster}\" received no message of {topic} in {window:?}"),
        )
    }

    /// Whether every transactional (half) message on the source's masters of
    /// `topic` is resolved: each broker keeps halves in one queue of
    /// [`HALF_TOPIC`] and moves its check service's offset ([`HALF_GROUP`])
    /// past a half once it is committed or rolled back, and re-appends an
    /// unresolved one after asking its producer. What lies between that
    /// offset and the queue's max is unresolved or not yet examined. The
    /// queue is shared by every topic of the broker, so transactions of
    /// other topics count too: the proxy cannot tell them apart without
    /// reading each half.
    async fn source_half_messages_resolved(&self, topic: &str) -> CheckResult {
        const NAME: &str = "source_half_messages_resolved";
        let cluster = self.shared.cluster(Side::Source);
        let route = match self
            .route_or(NAME, Side::Source, topic, "so nothing is open")
            .await
        {
            Ok(r) => r,
            Err(result) => return result,
        };
        let mut brokers = Brokers::new(&self.shared, Side::Source);
        let mut pending = Vec::new();
        for addr in masters(&route) {
            let q = Queue { addr, id: 0 };
            let open = async {
                let max = brokers.max_offset(HALF_TOPIC, &q).await?;
                let done = match brokers.group_offset(HALF_GROUP, HALF_TOPIC, &q).await? {
                    Some(o) => o,
                    None => brokers.min_offset(HALF_TOPIC, &q).await?,
                };
                Ok::<i64, String>((max - done).max(0))
            };
            match open.await {
                Ok(0) => {}
                Ok(n) => pending.push(format!("{n} on broker {}", q.addr)),
                Err(e) => return CheckResult::fail(NAME, e),
            }
        }
        if pending.is_empty() {
            CheckResult::pass(
                NAME,
                format!(
                    "no transactional half message is open on cluster \"{cluster}\"'s brokers of {topic}"
                ),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!(
                    "transactional half messages not yet resolved on cluster \"{cluster}\" (any topic of those brokers; the brokers ask their producers back): {}",
                    pending.join(", ")
                ),
            )
        }
    }

    /// Whether delayed messages still wait on `side`'s masters of `topic`:
    /// scheduled sends and retries (a `%RETRY%` message waits out its delay
    /// there) reach their topics only when due, so the backlog gates do not
    /// see them yet. The schedule queues are shared by every topic of a
    /// broker. Brokers running the 5.x timer wheel (`timerWheelEnable`,
    /// default true) keep timed messages where this check cannot count
    /// them, so there it refuses and says so.
    async fn delayed_zero(&self, name: &str, side: Side, topic: &str) -> CheckResult {
        let cluster = self.shared.cluster(side);
        let route = match self.route_or(name, side, topic, "so nothing waits").await {
            Ok(r) => r,
            Err(result) => return result,
        };
        let mut brokers = Brokers::new(&self.shared, side);
        let mut waiting = Vec::new();
        for addr in masters(&route) {
            match brokers.timer_wheel(&addr).await {
                Ok(false) => {}
                Ok(true) => {
                    return CheckResult::fail(
                        name,
                        format!(
                            "broker {addr} of cluster \"{cluster}\" keeps messages sent with a delivery time in its timer wheel (timerWheelEnable), which this check cannot count: advance with --force once the latest delivery time of {topic} has passed"
                        ),
                    );
                }
                Err(e) => return CheckResult::fail(name, e),
            }
            match brokers.delayed(&addr).await {
                Ok(0) => {}
                Ok(n) => waiting.push(format!("{n} on broker {addr}")),
                Err(e) => return CheckResult::fail(name, e),
            }
        }
        if waiting.is_empty() {
            CheckResult::pass(
                name,
                format!(
                    "no delayed or retried message waits on cluster \"{cluster}\"'s brokers of {topic}"
                ),
            )
        } else {
            CheckResult::fail(
                name,
                format!(
                    "delayed or retried messages not yet due on cluster \"{cluster}\" (any topic of those brokers, in {}): {}",
                    offsets::SCHEDULE_TOPIC,
                    waiting.join(", ")
                ),
            )
        }
    }

    /// Sets each known group's offsets on the target's queues of `topic`
    /// to their max offset where the group has none yet.
    async fn init_target_offsets(&self, topic: &str) -> Result<(), String> {
        // Groups the source lists count too: one the proxy forgot in a
        // restart must not meet the target's queues without an offset.
        let groups = match offsets::route(&self.shared, Side::Source, topic).await? {
            Some(source) => {
                let mut brokers = Brokers::new(&self.shared, Side::Source);
                inventory::known_groups(&self.shared, &mut brokers, Side::Source, topic, &source)
                    .await?
                    .0
            }
            None => self.shared.observed.groups(topic).into_iter().collect(),
        };
        if groups.is_empty() {
            return Ok(());
        }
        let Some(route) = offsets::route(&self.shared, Side::Target, topic).await? else {
            return Err(format!(
                "cluster \"{}\" (target) has no topic {topic}",
                self.shared.cluster(Side::Target)
            ));
        };
        let queues: Vec<Queue> = offsets::queues(&route);
        let mut brokers = Brokers::new(&self.shared, Side::Target);
        let mut set = 0;
        for group in &groups {
            for q in &queues {
                if brokers.group_offset(group, topic, q).await?.is_none() {
                    let max = brokers.max_offset(topic, q).await?;
                    brokers.commit(group, topic, q, max).await?;
                    set += 1;
                }
            }
        }
        tracing::info!(migration = %self.shared.migration.name, %topic, groups = groups.len(), queues_set = set,
            "target group offsets initialised at the queues' max offsets");
        Ok(())
    }
}

/// What the group checks rely on having seen, in a restart's refusal.
const GROUPS: &str = "consumer groups and members";

/// Names to show in a reason: the first [`NAMES_SHOWN`], then how many more.
fn name_some(names: &BTreeSet<String>) -> String {
    let mut out: Vec<&str> = names.iter().take(NAMES_SHOWN).map(String::as_str).collect();
    let more = names.len().saturating_sub(NAMES_SHOWN);
    let more = format!("{more} more");
    if names.len() > NAMES_SHOWN {
        out.push(&more);
    }
    out.join(", ")
}

/// Where a broker keeps transactional half messages (one queue, id 0).
const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// The group whose offset on [`HALF_TOPIC`] is the broker's transaction
/// check service's progress.
const HALF_GROUP: &str = "CID_RMQ_SYS_TRANS";

/// How many group names a check's reason lists before "N more": enough to
/// act on, short enough for one line of `ctl check`.
const NAMES_SHOWN: usize = 10;

/// Consumers connected to the source's brokers without the proxy, one
/// phrase per (client, broker), sorted and without repeats.
fn direct_connections(consumers: &inventory::Consumers) -> Vec<String> {
    let mut stray = Vec::new();
    for row in consumers.rows.iter().filter(|r| r.via == Via::Direct) {
        for addr in &row.brokers {
            stray.push(format!(
                "group {}: client {} from {} on broker {addr}",
                row.group, row.client_id, row.addr
            ));
        }
    }
    stray.sort();
    stray.dedup();
    stray
}

#[async_trait]
impl Driver for RocketmqDriver {
    async fn checks(&self, topic: &str, from: State, to: State) -> Vec<CheckResult> {
        match (from, to) {
            (State::Source, State::DualRead) => vec![
                self.target_reachable().await,
                self.target_topic_exists(topic, false).await,
                self.all_group_members_proxied(topic).await,
            ],
            (State::DualRead, State::DualWrite) => vec![
                self.target_reachable().await,
                self.target_topic_exists(topic, true).await,
            ],
            (State::DualWrite, State::Cutover) => vec![self.target_reachable().await],
            (State::Cutover, State::Target) => vec![
                self.source_inbound_zero(topic).await,
                self.source_half_messages_resolved(topic).await,
                self.delayed_zero("source_delayed_zero", Side::Source, topic)
                    .await,
                self.backlog("source_backlog_zero", Side::Source, topic)
                    .await,
            ],
            (State::DualRead, State::Source) => {
                vec![
                    self.backlog("target_backlog_zero", Side::Target, topic)
                        .await,
                    self.delayed_zero("target_delayed_zero", Side::Target, topic)
                        .await,
                ]
            }
            _ => Vec::new(),
        }
    }

    async fn action(
        &self,
        topic: &str,
        action: &str,
        _params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match action {
            "migrate_metadata" => Ok(super::metadata::migrate(&self.shared, topic).await),
            "clients" => {
                let inventory = inventory::inventory(&self.shared, topic).await?;
                serde_json::to_value(inventory).map_err(|e| e.to_string())
            }
            _ => Err(format!(
                "{action} is not available for rocketmq (actions: migrate_metadata, clients)"
            )),
        }
    }

    async fn migration_action(
        &self,
        action: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        match action {
            "metadata_plan" => {
                let plan = super::catalog::plan(&self.shared).await?;
                serde_json::to_value(plan).map_err(|e| e.to_string())
            }
            "metadata_apply" => {
                let plan: super::catalog::CatalogPlan = serde_json::from_value(params)
                    .map_err(|e| format!("the plan does not parse: {e}"))?;
                super::catalog::apply(&self.shared, &plan).await
            }
            "metadata_follow" => serde_json::to_value(super::catalog::follow(&self.shared))
                .map_err(|e| e.to_string()),
            _ => Err(format!(
                "{action} is not available for rocketmq migrations (actions: metadata_plan, metadata_apply, metadata_follow)"
            )),
        }
    }

    async fn prepare(&self, topic: &str, from: State, to: State) -> Result<(), String> {
        if (from, to) == (State::Source, State::DualRead) {
            return self.init_target_offsets(topic).await;
        }
        Ok(())
    }
}
