//! The endpoint inventory of a topic (`ctl clients`, the admin API's
//! `clients` action, the console): its producers and consumers connected
//! through the proxy, from the proxy's client table ([`super::seen`]), and
//! the groups and clients connected to the source's brokers directly, from
//! the brokers' own lists (GET_CONSUMER_CONNECTION_LIST per group,
//! GET_ALL_PRODUCER_INFO per broker). A broker sees a proxied client only
//! from one of the proxy's upstream addresses, which is how the two are
//! told apart; the `all_group_members_proxied` gate reads the same rows.
//!
//! Brokers list producers per producer group, not per topic, so a
//! producer connected directly is shown on every topic of the brokers it
//! is connected to, marked as such.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::Shared;
use super::endpoints::Side;
use super::offsets::{self, Brokers};
use super::seen::{SeenClient, version_name};

/// The producer group every Java client instance registers for its own
/// internal sends (messages sent back for retry); it is the consumer's
/// row, not a producer of the topic.
const CLIENT_INNER_PRODUCER: &str = "CLIENT_INNER_PRODUCER";

/// What a client does with the topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sends to it.
    Producer,
    /// Subscribes to it.
    Consumer,
}

/// How a client reaches the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// Through the proxy.
    Proxied,
    /// Straight at the source's brokers.
    Direct,
}

/// One client of a topic.
#[derive(Clone, Debug, Serialize)]
pub struct ClientRow {
    /// Producer or consumer.
    pub role: Role,
    /// Its producer or consumer group.
    pub group: String,
    /// Its client id (`ip@instance`); empty for a proxied producer not yet
    /// heard heartbeating.
    pub client_id: String,
    /// Its own address (`ip:port`); for a proxied client, the connection
    /// it opened to the proxy.
    pub addr: String,
    /// Its language (`JAVA`, ...).
    pub language: String,
    /// Its version number, and Apache's name for it.
    pub version: i32,
    /// E.g. `V5_3_3`.
    pub version_name: String,
    /// Proxied or direct.
    pub via: Via,
    /// The source brokers listing it.
    pub brokers: Vec<String>,
    /// Whether it holds a connection now (a proxied client the proxy
    /// remembers may have left).
    pub connected: bool,
    /// When the proxy (or, for a direct producer, the broker) last heard
    /// from it, ms since the Unix epoch.
    pub last_seen_ms: Option<u64>,
    /// Whether it is known to use this topic (false for a producer
    /// connected directly: brokers do not say what a producer sends).
    pub topic_known: bool,
}

/// A topic's inventory.
#[derive(Debug, Serialize)]
pub struct Inventory {
    /// The topic.
    pub topic: String,
    /// The source cluster's name.
    pub cluster: String,
    /// Its consumer groups, seen through the proxy or listed by the
    /// source's brokers.
    pub groups: Vec<String>,
    /// Clients, producers first.
    pub clients: Vec<ClientRow>,
    /// Rows through the proxy.
    pub proxied: usize,
    /// Rows straight at the source.
    pub direct: usize,
    /// What the inventory could not see, in sentences.
    pub notes: Vec<String>,
}

/// The consumers of a topic on the source.
#[derive(Debug, Default)]
pub struct Consumers {
    /// Groups seen through the proxy or listed by the source's brokers.
    pub groups: BTreeSet<String>,
    /// How many of those came only from the brokers' lists.
    pub listed_only: usize,
    /// Connections the source's brokers list for those groups.
    pub connections: usize,
    /// One row per (group, client, way in).
    pub rows: Vec<ClientRow>,
}

/// The consumer groups of `topic` on `side`: those seen subscribing
/// through the proxy and those the side's masters list (online subscribers
/// and groups with offsets), so a group that never touched the proxy, or
/// one the proxy forgot in a restart, still counts. Also returns how many
/// came only from the brokers' lists.
///
/// # Errors
/// A sentence saying which broker could not be asked: a caller deciding a
/// step refuses, since a group it cannot see may be reading the topic.
pub async fn known_groups(
    shared: &Shared,
    brokers: &mut Brokers<'_>,
    side: Side,
    topic: &str,
    route: &cutover_rocketmq::TopicRouteData,
) -> Result<(BTreeSet<String>, usize), String> {
    let mut groups: BTreeSet<String> = shared.observed.groups(topic).into_iter().collect();
    let seen = groups.len();
    for addr in masters(route) {
        let listed = brokers.topic_groups(&addr, topic).await.map_err(|e| {
            format!(
                "cannot list the consumer groups of {topic} on cluster \"{}\": {e}; a group reading it without the proxy would go unnoticed (--force to move anyway)",
                shared.cluster(side)
            )
        })?;
        groups.extend(listed);
    }
    let listed_only = groups.len() - seen;
    Ok((groups, listed_only))
}

/// The distinct master addresses of a route.
#[must_use]
pub fn masters(route: &cutover_rocketmq::TopicRouteData) -> Vec<String> {
    let mut addrs: Vec<String> = route
        .broker_datas
        .iter()
        .filter_map(|b| b.master_addr().map(str::to_owned))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

/// The consumers of `topic` on the source (whose route is `route`): every
/// member each source master lists for each known group, marked proxied or
/// direct, plus the proxied subscribers no broker lists.
///
/// # Errors
/// A sentence naming the broker that could not be asked.
pub async fn consumers(
    shared: &Shared,
    brokers: &mut Brokers<'_>,
    topic: &str,
    route: &cutover_rocketmq::TopicRouteData,
) -> Result<Consumers, String> {
    let (groups, listed_only) = known_groups(shared, brokers, Side::Source, topic, route).await?;
    let mut rows: BTreeMap<(String, String, Via), ClientRow> = BTreeMap::new();
    let mut connections = 0;
    for group in &groups {
        for addr in masters(route) {
            for m in brokers.members(&addr, group).await? {
                connections += 1;
                let via = if shared.observed.is_proxied(&m.client_addr) {
                    Via::Proxied
                } else {
                    Via::Direct
                };
                let key = (group.clone(), m.client_id.clone(), via);
                let row = rows.entry(key).or_insert_with(|| {
                    let seen = (via == Via::Proxied)
                        .then(|| shared.observed.clients.get(&m.client_id))
                        .flatten();
                    listed_row(Role::Consumer, group, &m, via, seen.as_ref())
                });
                row.brokers.push(addr.clone());
            }
        }
    }
    let (table, _) = shared.observed.clients.snapshot();
    for c in &table {
        for (group, topics) in &c.subscriptions {
            let key = (group.clone(), c.client_id.clone(), Via::Proxied);
            if topics.contains(topic) && !rows.contains_key(&key) {
                rows.insert(key, seen_row(Role::Consumer, group, c));
            }
        }
    }
    Ok(Consumers {
        groups,
        listed_only,
        connections,
        rows: rows.into_values().collect(),
    })
}

fn listed_row(
    role: Role,
    group: &str,
    m: &offsets::Member,
    via: Via,
    seen: Option<&SeenClient>,
) -> ClientRow {
    match seen {
        Some(c) => ClientRow {
            brokers: Vec::new(),
            connected: true,
            ..seen_row(role, group, c)
        },
        None => ClientRow {
            role,
            group: group.to_owned(),
            client_id: m.client_id.clone(),
            // A proxied client the table lost (full) is listed from one of
            // the proxy's own addresses, which says nothing about it.
            addr: if via == Via::Direct {
                m.client_addr.clone()
            } else {
                String::new()
            },
            language: m.language.clone(),
            version: m.version,
            version_name: version_name(m.version),
            via,
            brokers: Vec::new(),
            connected: true,
            last_seen_ms: None,
            topic_known: true,
        },
    }
}

fn seen_row(role: Role, group: &str, c: &SeenClient) -> ClientRow {
    ClientRow {
        role,
        group: group.to_owned(),
        client_id: c.client_id.clone(),
        addr: c.addr.clone(),
        language: c.language.clone(),
        version: c.version,
        version_name: version_name(c.version),
        via: Via::Proxied,
        brokers: Vec::new(),
        connected: c.connections > 0,
        last_seen_ms: Some(c.last_seen_ms),
        topic_known: true,
    }
}

/// The producers of `topic`: those that sent it through the proxy, and
/// every producer connected directly to the source's masters of it.
async fn producers(
    shared: &Shared,
    brokers: &mut Brokers<'_>,
    topic: &str,
    route: Option<&cutover_rocketmq::TopicRouteData>,
    notes: &mut Vec<String>,
) -> Vec<ClientRow> {
    let (table, _) = shared.observed.clients.snapshot();
    let mut rows: BTreeMap<(String, String, Via), ClientRow> = BTreeMap::new();
    for c in &table {
        if let Some(group) = c.produced.get(topic) {
            let key = (group.clone(), c.client_id.clone(), Via::Proxied);
            rows.insert(key, seen_row(Role::Producer, group, c));
        }
    }
    for addr in route.map(masters).unwrap_or_default() {
        let listed = match brokers.producers(&addr).await {
            Ok(l) => l,
            Err(e) => {
                notes.push(format!(
                    "producers connected directly to broker {addr} are unknown: {e}"
                ));
                continue;
            }
        };
        for (group, list) in listed {
            if group == CLIENT_INNER_PRODUCER {
                continue;
            }
            for p in list {
                // Java's `SocketAddress.toString()`: `host/ip:port`.
                let remote = p.remote_ip.rsplit('/').next().unwrap_or_default();
                let proxied = shared.observed.is_proxied(remote);
                if proxied {
                    // Already a row if it sent this topic; name the broker.
                    let key = (group.clone(), p.client_id.clone(), Via::Proxied);
                    if let Some(row) = rows.get_mut(&key) {
                        row.brokers.push(addr.clone());
                    }
                    continue;
                }
                let key = (group.clone(), p.client_id.clone(), Via::Direct);
                rows.entry(key)
                    .or_insert_with(|| ClientRow {
                        role: Role::Producer,
                        group: group.clone(),
                        client_id: p.client_id.clone(),
                        addr: remote.to_owned(),
                        language: p.language.clone(),
                        version: p.version,
                        version_name: version_name(p.version),
                        via: Via::Direct,
                        brokers: Vec::new(),
                        connected: true,
                        last_seen_ms: Some(p.last_update_timestamp),
                        topic_known: false,
                    })
                    .brokers
                    .push(addr.clone());
            }
        }
    }
    rows.into_values().collect()
}

/// The inventory of `topic`.
///
/// # Errors
/// A sentence when the source's route or a broker's consumer list cannot
/// be read (an inventory missing consumers would look clean).
pub async fn inventory(shared: &Shared, topic: &str) -> Result<Inventory, String> {
    let cluster = shared.cluster(Side::Source).to_owned();
    let route = offsets::route(shared, Side::Source, topic).await?;
    let mut brokers = Brokers::new(shared, Side::Source);
    let mut notes = Vec::new();
    let mut clients = producers(shared, &mut brokers, topic, route.as_ref(), &mut notes).await;
    let consumers = match &route {
        Some(r) => consumers(shared, &mut brokers, topic, r).await?,
        None => {
            notes.push(format!(
                "cluster \"{cluster}\" has no topic {topic}: only clients seen through the proxy are listed"
            ));
            Consumers::default()
        }
    };
    clients.extend(consumers.rows);
    let (_, dropped) = shared.observed.clients.snapshot();
    if dropped > 0 {
        notes.push(format!(
            "{dropped} client(s) were not remembered: the proxy's client table was full ({} clients)",
            super::seen::MAX_CLIENTS
        ));
    }
    let direct = clients.iter().filter(|c| c.via == Via::Direct).count();
    Ok(Inventory {
        topic: topic.to_owned(),
        cluster,
        groups: consumers.groups.into_iter().collect(),
        proxied: clients.len() - direct,
        direct,
        clients,
        notes,
    })
}
