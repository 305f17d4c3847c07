//! Metadata of the whole source cluster for `ctl migrate-metadata
//! MIGRATION --all` (`--export FILE` / `--import FILE`): every topic and
//! subscription group the source's masters hold, not only those seen
//! through the proxy, planned for the target and then created there, with
//! one outcome per item (created / already there / failed with the
//! broker's reason), the way a console's batch import reports.
//!
//! - Topics come from each source master's topic table
//!   (GET_ALL_TOPIC_CONFIG); queue counts are summed over the masters and
//!   spread over the target's masters, rounded up: a total the target's
//!   masters cannot split evenly is adjusted upwards and the plan says so.
//!   Names are kept exactly, `%` namespace prefixes included. The brokers'
//!   own topics (RocketMQ's system topics, the cluster's and brokers'
//!   names) and `%RETRY%`/`%DLQ%` topics (the brokers make those for their
//!   groups) are left out.
//! - Groups come from each source master's group table
//!   (GET_ALL_SUBSCRIPTIONGROUP_CONFIG) and are created with the source's
//!   settings as they are (UPDATE_AND_CREATE_SUBSCRIPTIONGROUP).
//!
//! An item the target already has on every master is reported, never
//! changed. Every request runs on one connection per broker, in turn.
//!
//! Following ([`follow`], `--all --follow`): every [`FOLLOW_INTERVAL`] the
//! plan is made again and applied, so topics and groups created on the
//! source during the migration reach the target without an operator.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cutover_rocketmq::{RequestCode, ResponseCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Shared;
use super::endpoints::Side;
use super::route;
use super::rpc::{self, Conn};

/// Apache `RequestCode.GET_ALL_TOPIC_CONFIG`.
const GET_ALL_TOPIC_CONFIG: i32 = RequestCode::GET_ALL_TOPIC_CONFIG;

/// The most topics or groups one plan holds: a cluster with more is
/// migrated in parts (`--import` of edited plans).
pub const MAX_ITEMS: usize = 50_000;

/// A plan for the target, as `--export` writes it and `--import` reads it.
#[derive(Debug, Serialize, Deserialize)]
pub struct CatalogPlan {
    /// The source cluster's name.
    pub source: String,
    /// The target cluster's name.
    pub target: String,
    /// How many masters the target had when planned.
    pub target_masters: usize,
    /// Topics to create.
    pub topics: Vec<TopicPlan>,
    /// Subscription groups to create.
    pub groups: Vec<GroupPlan>,
}

/// One topic of a plan.
#[derive(Debug, Serialize, Deserialize)]
pub struct TopicPlan {
    /// Its name, exactly as on the source.
    pub name: String,
    /// Read queues over all source masters.
    #[serde(default)]
    pub source_read_queues: i32,
    /// Write queues over all source masters.
    #[serde(default)]
    pub source_write_queues: i32,
    /// Read queues to create on each target master.
    pub read_queues_per_master: i32,
    /// Write queues to create on each target master.
    pub write_queues_per_master: i32,
    /// Permission bits (6 = read and write).
    #[serde(default = "default_perm")]
    pub perm: i32,
    /// Whether it is an ordered topic.
    #[serde(default)]
    pub order: bool,
    /// Why the counts differ from the source's, when they do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusted: Option<String>,
}

fn default_perm() -> i32 {
    6
}

/// One subscription group of a plan.
#[derive(Debug, Serialize, Deserialize)]
pub struct GroupPlan {
    /// Its name.
    pub name: String,
    /// The source's settings, created as they are.
    pub config: Value,
}

/// What happened to one item.
#[derive(Debug, Serialize)]
pub struct ItemOutcome {
    /// `topic` or `group`.
    pub kind: &'static str,
    /// Its name.
    pub name: String,
    /// `created`, `present` or `failed`.
    pub outcome: &'static str,
    /// Details: the counts created, or the broker's refusal.
    pub reason: String,
}

/// How often a following migration compares the source's tables with the
/// target's: new topics are rare, and a round reads every table (0.2 s for
/// 1,000 topics and groups).
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(10);

/// Names of the last round's new items kept for the report.
const FOLLOW_NAMES_KEPT: usize = 20;

/// The follower of one migration.
#[derive(Debug, Default)]
pub struct Follow {
    running: AtomicBool,
    state: Mutex<FollowState>,
}

/// What following has done so far.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FollowState {
    /// Whether it runs.
    pub following: bool,
    /// Whether the state store records it, so a restarted proxy follows
    /// again (false until recorded, and if the store refused).
    pub resumes_after_restart: bool,
    /// Rounds done.
    pub rounds: u64,
    /// Items created on the target by following.
    pub created: u64,
    /// Items that failed (retried next round).
    pub failed: u64,
    /// The latest items created (`topic NAME` / `group NAME`).
    pub latest: Vec<String>,
    /// Why the last round could not run, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Follow {
    fn recorded(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resumes_after_restart = true;
    }

    /// What following has done.
    #[must_use]
    pub fn state(&self) -> FollowState {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        s.following = self.running.load(Ordering::Acquire);
        s
    }
}

/// The state-store blob that records that a migration follows its source,
/// so a restarted proxy follows again.
fn follow_blob(migration: &str) -> String {
    format!("rocketmq-follow-{migration}")
}

/// Starts following the source (once per migration; later calls only
/// report), and records it in the state store first, so a restart
/// resumes it ([`resume_following`]); stops at shutdown.
pub fn follow(shared: &Arc<Shared>) -> FollowState {
    if !shared.catalog_follow.running.swap(true, Ordering::AcqRel) {
        let shared = shared.clone();
        let token = shared.shutdown.token.clone();
        tokio::spawn(async move {
            let blob = follow_blob(&shared.migration.name);
            match shared.store.put_blob(&blob, b"follow".to_vec()).await {
                Ok(()) => shared.catalog_follow.recorded(),
                // Following still runs; only a restart would forget it.
                Err(e) => tracing::error!(migration = %shared.migration.name, error = %e,
                    "following the source is not recorded in the state store: a restart will not resume it"),
            }
            tracing::info!(migration = %shared.migration.name, every = ?FOLLOW_INTERVAL,
                "following the source's topics and groups");
            loop {
                tokio::select! {
                    () = token.cancelled() => break,
                    () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
                }
                follow_round(&shared).await;
            }
            shared
                .catalog_follow
                .running
                .store(false, Ordering::Release);
        });
    }
    shared.catalog_follow.state()
}

/// Follows the source again when an earlier run of the proxy was asked to
/// (the state store says so).
pub async fn resume_following(shared: &Arc<Shared>) {
    match shared
        .store
        .get_blob(&follow_blob(&shared.migration.name))
        .await
    {
        Ok(Some(_)) => {
            tracing::info!(migration = %shared.migration.name,
                "resuming following the source's topics and groups, as asked before the restart");
            follow(shared);
        }
        Ok(None) => {}
        Err(e) => tracing::error!(migration = %shared.migration.name, error = %e,
            "cannot read whether to follow the source's topics and groups: ask again with `ctl migrate-metadata MIGRATION --all --follow`"),
    }
}

async fn follow_round(shared: &Shared) {
    let report = match plan(shared).await {
        Ok(p) => apply(shared, &p).await,
        Err(e) => Err(e),
    };
    let mut state = shared
        .catalog_follow
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    state.rounds += 1;
    match report {
        Ok(r) => {
            state.error = None;
            let new: Vec<String> = r["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["outcome"] == "created")
                .map(|i| {
                    format!(
                        "{} {}",
                        i["kind"].as_str().unwrap_or("?"),
                        i["name"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            state.created += new.len() as u64;
            state.failed += r["failed"].as_u64().unwrap_or(0);
            if !new.is_empty() {
                tracing::info!(migration = %shared.migration.name, created = new.len(), items = ?new.iter().take(FOLLOW_NAMES_KEPT).collect::<Vec<_>>(),
                    "new source topics and groups created on the target");
                state.latest = new.into_iter().take(FOLLOW_NAMES_KEPT).collect();
            }
        }
        Err(e) => {
            tracing::warn!(migration = %shared.migration.name, error = %e, "following the source's metadata: this round failed");
            state.error = Some(e);
        }
    }
}

/// The masters (name, address) of `side`.
async fn masters(shared: &Shared, side: Side) -> Result<Vec<(String, String)>, String> {
    Ok(masters_and_clusters(shared, side).await?.0)
}

/// The masters of `side` and the RocketMQ cluster names its NameServer
/// lists (brokers keep a topic named after their cluster).
async fn masters_and_clusters(
    shared: &Shared,
    side: Side,
) -> Result<(Vec<(String, String)>, BTreeSet<String>), String> {
    let info = shared.cluster_info(side).await?;
    let clusters: BTreeSet<String> = info.cluster_addr_table.keys().cloned().collect();
    let mut out: Vec<(String, String)> = info
        .broker_addr_table
        .values()
        .filter_map(|b| {
            b.master_addr()
                .map(|a| (b.broker_name.clone(), a.to_owned()))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!(
            "cluster \"{}\" has no master broker",
            shared.cluster(side)
        ));
    }
    Ok((out, clusters))
}

/// One connection to a broker of `side`.
async fn open(shared: &Shared, side: Side, addr: &str) -> Result<Conn, String> {
    let upstream = shared.broker_upstream(side, addr)?;
    Conn::open(&upstream, shared.max_frame)
        .await
        .map_err(|e| e.to_string())
}

/// A table (`topicConfigTable` / `subscriptionGroupTable`) of a broker.
async fn table(
    conn: &mut Conn,
    shared: &Shared,
    addr: &str,
    code: i32,
    key: &str,
) -> Result<BTreeMap<String, Value>, String> {
    let got = conn
        .call(rpc::request(code, &[]), &[], shared.upstream_timeout)
        .await
        .map_err(|e| format!("broker {addr}: {e}"))?;
    if got.header.code != ResponseCode::SUCCESS {
        return Err(format!(
            "broker {addr} answered request code {code} with code {}: {}",
            got.header.code,
            got.header.remark.unwrap_or_default()
        ));
    }
    let body = cutover_rocketmq::quote_integer_keys(&got.body);
    let mut parsed: Value =
        serde_json::from_slice(&body).map_err(|e| format!("broker {addr}: {key}: {e}"))?;
    let Some(Value::Object(map)) = parsed.get_mut(key).map(Value::take) else {
        return Err(format!("broker {addr} answered without {key}"));
    };
    if map.len() > MAX_ITEMS {
        return Err(format!(
            "broker {addr} holds {} entries in {key}, more than the {MAX_ITEMS} a plan takes",
            map.len()
        ));
    }
    Ok(map.into_iter().collect())
}

/// The tables of every master of `side`: topic name → config per master,
/// group name → config per master.
type Tables = (BTreeMap<String, Vec<Value>>, BTreeMap<String, Vec<Value>>);

async fn tables(
    shared: &Shared,
    side: Side,
    masters: &[(String, String)],
) -> Result<Tables, String> {
    let (mut topics, mut groups) = (BTreeMap::new(), BTreeMap::new());
    for (_, addr) in masters {
        let mut conn = open(shared, side, addr).await?;
        for (name, config) in table(
            &mut conn,
            shared,
            addr,
            GET_ALL_TOPIC_CONFIG,
            "topicConfigTable",
        )
        .await?
        {
            topics.entry(name).or_insert_with(Vec::new).push(config);
        }
        let code = RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG;
        for (name, config) in table(&mut conn, shared, addr, code, "subscriptionGroupTable").await?
        {
            groups.entry(name).or_insert_with(Vec::new).push(config);
        }
    }
    Ok((topics, groups))
}

/// Whether a source topic is the brokers' own rather than the users':
/// `own` holds the source's RocketMQ cluster and broker names.
fn is_internal(name: &str, own: &BTreeSet<String>) -> bool {
    route::is_system_topic(name)
        || route::is_group_topic(name)
        || own.contains(name)
        || name == "TRANS_CHECK_MAX_TIME_TOPIC"
}

/// Whether a group is one RocketMQ keeps for itself.
fn is_internal_group(name: &str) -> bool {
    name.starts_with("CID_RMQ_SYS_") || name.starts_with("CID_SYS_RMQ")
}

fn int(v: &Value, key: &str) -> i32 {
    v[key]
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(0)
}

/// Queues per target master for a source total, and why it differs.
fn spread(total: i32, masters: usize, what: &str) -> (i32, Option<String>) {
    let n = i32::try_from(masters.max(1)).unwrap_or(i32::MAX);
    let per = ((total.max(1)) + n - 1) / n;
    let adjusted = (per * n != total).then(|| {
        format!(
            "{total} {what} queue(s) on the source become {per} on each of {n} target master(s) ({} in all)",
            per * n
        )
    });
    (per, adjusted)
}

/// Plans every user topic and group of the source for the target.
///
/// # Errors
/// A sentence when a cluster or broker cannot be asked.
pub async fn plan(shared: &Shared) -> Result<CatalogPlan, String> {
    let (source_masters, mut own) = masters_and_clusters(shared, Side::Source).await?;
    let target_masters = masters(shared, Side::Target).await?;
    let (topics, groups) = tables(shared, Side::Source, &source_masters).await?;
    own.extend(source_masters.iter().map(|(n, _)| n.clone()));
    let mut plan = CatalogPlan {
        source: shared.cluster(Side::Source).to_owned(),
        target: shared.cluster(Side::Target).to_owned(),
        target_masters: target_masters.len(),
        topics: Vec::new(),
        groups: Vec::new(),
    };
    for (name, configs) in topics {
        if is_internal(&name, &own) {
            continue;
        }
        let read: i32 = configs.iter().map(|c| int(c, "readQueueNums")).sum();
        let write: i32 = configs.iter().map(|c| int(c, "writeQueueNums")).sum();
        let (per_read, adj_read) = spread(read, target_masters.len(), "read");
        let (per_write, adj_write) = spread(write, target_masters.len(), "write");
        let adjusted = match (adj_read, adj_write) {
            (None, None) => None,
            (a, b) => Some(a.into_iter().chain(b).collect::<Vec<_>>().join("; ")),
        };
        plan.topics.push(TopicPlan {
            name,
            source_read_queues: read,
            source_write_queues: write,
            read_queues_per_master: per_read,
            write_queues_per_master: per_write,
            perm: configs.first().map_or(6, |c| int(c, "perm")),
            order: configs.iter().any(|c| c["order"].as_bool() == Some(true)),
            adjusted,
        });
    }
    for (name, mut configs) in groups {
        if is_internal_group(&name) {
            continue;
        }
        plan.groups.push(GroupPlan {
            name,
            config: configs.swap_remove(0),
        });
    }
    Ok(plan)
}

/// Creates what `plan` lists on every target master lacking it.
///
/// # Errors
/// A sentence when the target cannot be asked at all; a single item's
/// failure is its outcome.
pub async fn apply(shared: &Shared, plan: &CatalogPlan) -> Result<Value, String> {
    if plan.topics.len() > MAX_ITEMS || plan.groups.len() > MAX_ITEMS {
        return Err(format!(
            "a plan takes at most {MAX_ITEMS} topics and {MAX_ITEMS} groups; split it"
        ));
    }
    let target_masters = masters(shared, Side::Target).await?;
    let mut conns = Vec::new();
    let mut existing = Vec::new();
    for (name, addr) in &target_masters {
        let mut conn = open(shared, Side::Target, addr).await?;
        let topics = table(
            &mut conn,
            shared,
            addr,
            GET_ALL_TOPIC_CONFIG,
            "topicConfigTable",
        )
        .await?;
        let code = RequestCode::GET_ALL_SUBSCRIPTIONGROUP_CONFIG;
        let groups = table(&mut conn, shared, addr, code, "subscriptionGroupTable").await?;
        existing.push((topics, groups));
        conns.push((name.clone(), addr.clone(), Some(conn)));
    }
    let mut items = Vec::with_capacity(plan.topics.len() + plan.groups.len());
    for t in &plan.topics {
        let missing: Vec<usize> = (0..conns.len())
            .filter(|&i| !existing[i].0.contains_key(&t.name))
            .collect();
        let mut outcome = create_each(shared, &mut conns, &missing, Item::Topic(t)).await;
        if outcome.outcome == "created" {
            outcome.reason = format!(
                "{}: {} read / {} write queue(s) per master",
                outcome.reason, t.read_queues_per_master, t.write_queues_per_master
            );
            if let Some(why) = &t.adjusted {
                outcome.reason = format!("{}; adjusted: {why}", outcome.reason);
            }
        }
        items.push(outcome);
    }
    for g in &plan.groups {
        let missing: Vec<usize> = (0..conns.len())
            .filter(|&i| !existing[i].1.contains_key(&g.name))
            .collect();
        items.push(create_each(shared, &mut conns, &missing, Item::Group(g)).await);
    }
    let count = |o: &str| items.iter().filter(|i| i.outcome == o).count();
    let (created, present, failed) = (count("created"), count("present"), count("failed"));
    tracing::info!(migration = %shared.migration.name, created, present, failed, "source metadata applied to the target");
    Ok(serde_json::json!({
        "source": plan.source, "target": shared.cluster(Side::Target),
        "created": created, "present": present, "failed": failed, "items": items,
    }))
}

/// One item of a plan.
#[derive(Clone, Copy)]
enum Item<'a> {
    Topic(&'a TopicPlan),
    Group(&'a GroupPlan),
}

/// Creates `item` on the connection of each master in `missing`; the
/// item's outcome. A connection that failed is reopened for the next item.
async fn create_each(
    shared: &Shared,
    conns: &mut [(String, String, Option<Conn>)],
    missing: &[usize],
    item: Item<'_>,
) -> ItemOutcome {
    let (kind, name) = match item {
        Item::Topic(t) => ("topic", t.name.as_str()),
        Item::Group(g) => ("group", g.name.as_str()),
    };
    if missing.is_empty() {
        return ItemOutcome {
            kind,
            name: name.to_owned(),
            outcome: "present",
            reason: format!(
                "already on every master of cluster \"{}\"",
                shared.cluster(Side::Target)
            ),
        };
    }
    let mut done = Vec::new();
    for &i in missing {
        let (broker, addr, conn) = &mut conns[i];
        if conn.is_none() {
            match open(shared, Side::Target, addr).await {
                Ok(c) => *conn = Some(c),
                Err(e) => return failed(kind, name, format!("broker {broker}: {e}")),
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        let result = match item {
            Item::Topic(t) => create_topic(shared, c, t).await,
            Item::Group(g) => create_group(shared, c, g).await,
        };
        if let Err(e) = result {
            if e.starts_with("io:") {
                *conn = None;
            }
            return failed(
                kind,
                name,
                format!("broker {broker}: {}", e.trim_start_matches("io:")),
            );
        }
        done.push(broker.clone());
    }
    ItemOutcome {
        kind,
        name: name.to_owned(),
        outcome: "created",
        reason: format!("on {}", done.join(", ")),
    }
}

fn failed(kind: &'static str, name: &str, reason: String) -> ItemOutcome {
    ItemOutcome {
        kind,
        name: name.to_owned(),
        outcome: "failed",
        reason,
    }
}

/// One request of `apply`; a transport failure is prefixed `io:` so the
/// connection is reopened.
async fn call(
    shared: &Shared,
    conn: &mut Conn,
    code: i32,
    ext: &[(&str, &str)],
    body: &[u8],
) -> Result<(), String> {
    let got = conn
        .call(rpc::request(code, ext), body, shared.upstream_timeout)
        .await
        .map_err(|e| format!("io:{e}"))?;
    if got.header.code == ResponseCode::SUCCESS {
        Ok(())
    } else {
        Err(format!(
            "refused with code {}: {}",
            got.header.code,
            got.header.remark.unwrap_or_default()
        ))
    }
}

async fn create_topic(shared: &Shared, conn: &mut Conn, t: &TopicPlan) -> Result<(), String> {
    let (r, w, perm) = (
        t.read_queues_per_master.max(1).to_string(),
        t.write_queues_per_master.max(1).to_string(),
        t.perm.to_string(),
    );
    let order = if t.order { "true" } else { "false" };
    call(
        shared,
        conn,
        RequestCode::UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", &t.name),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", &r),
            ("writeQueueNums", &w),
            ("perm", &perm),
            ("topicFilterType", "SINGLE_TAG"),
            ("topicSysFlag", "0"),
            ("order", order),
        ],
        &[],
    )
    .await
}

async fn create_group(shared: &Shared, conn: &mut Conn, g: &GroupPlan) -> Result<(), String> {
    let mut config = g.config.clone();
    if !config.is_object() {
        config = serde_json::json!({});
    }
    // The plan's name wins over an edited config's.
    config["groupName"] = Value::String(g.name.clone());
    call(
        shared,
        conn,
        RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
        &[],
        config.to_string().as_bytes(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_are_spread_rounding_up_and_say_so() {
        assert_eq!(spread(8, 1, "read"), (8, None));
        assert_eq!(spread(8, 2, "read"), (4, None));
        let (per, why) = spread(3, 2, "write");
        assert_eq!(per, 2);
        assert!(why.unwrap().contains(
            "3 write queue(s) on the source become 2 on each of 2 target master(s) (4 in all)"
        ));
        assert_eq!(spread(0, 1, "read").0, 1, "at least one queue");
    }

    #[test]
    fn the_brokers_own_topics_are_left_out() {
        let own: BTreeSet<String> = ["broker-a".to_owned(), "ClusterOld".to_owned()].into();
        for t in [
            "TBW102",
            "%RETRY%g",
            "%DLQ%g",
            "ClusterOld",
            "broker-a",
            "RMQ_SYS_TRANS_HALF_TOPIC",
        ] {
            assert!(is_internal(t, &own), "{t}");
        }
        for t in ["orders", "ns1%orders", "broker-b-orders"] {
            assert!(!is_internal(t, &own), "{t}");
        }
        assert!(is_internal_group("CID_RMQ_SYS_TRANS"));
        assert!(!is_internal_group("ns1%readers"));
    }
}
