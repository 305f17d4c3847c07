//! Queue and group offsets of one cluster, read with the proxy's own
//! requests: the backlog checks, the bypass check's view of a group's
//! members, and the target group offsets set when reads start there.

use std::collections::{BTreeMap, BTreeSet};

use cutover_rocketmq::{RequestCode, ResponseCode, TopicRouteData};
use serde::Deserialize;

use super::Shared;
use super::endpoints::Side;
use super::rpc::{self, Conn};

/// QUERY_TOPIC_CONSUME_BY_WHO: a broker's consumer groups of a topic.
/// Apache RocketMQ 5.3.3 names groups holding offsets of the topic
/// correctly but lists each online subscriber as the topic's own name, so
/// its answer is used only for offset holders, checked against the
/// broker's group table. Apache's codes; not in the protocol crate's
/// table, which lists the codes the proxy relays with special handling.
const QUERY_TOPIC_CONSUME_BY_WHO: i32 = 300;
/// GET_ALL_SUBSCRIPTIONGROUP_CONFIG: every subscription group of a broker.
const GET_ALL_SUBSCRIPTIONGROUP_CONFIG: i32 = 201;
/// GET_ALL_PRODUCER_INFO (Apache 5.x): every producer connected to a
/// broker, per producer group.
const GET_ALL_PRODUCER_INFO: i32 = 328;
/// GET_ALL_DELAY_OFFSET: the schedule service's progress per delay level.
const GET_ALL_DELAY_OFFSET: i32 = 45;
/// Apache `RequestCode.GET_BROKER_CONFIG`: the broker's settings as a
/// properties text.
const GET_BROKER_CONFIG: i32 = 26;
/// Where a broker keeps delayed messages (and retries waiting for their
/// delay) until due: one queue per delay level, queue id = level − 1.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";
/// Apache's default delay levels (1s … 2h); a broker configured with more
/// has its extra levels unseen by the delayed-message gate.
pub const DELAY_LEVELS: i32 = 18;

/// The most groups one broker's table may hold for the group checks: each
/// is asked for its connections once per check.
pub const MAX_GROUPS_INSPECTED: usize = 10_000;

/// One queue of a topic on a side.
#[derive(Clone, Debug)]
pub struct Queue {
    /// Master address.
    pub addr: String,
    /// Queue id.
    pub id: i32,
}

/// The topic's route on `side` (`None`: no such topic).
///
/// # Errors
/// A sentence naming the cluster when the NameServer cannot be asked.
pub async fn route(
    shared: &Shared,
    side: Side,
    topic: &str,
) -> Result<Option<TopicRouteData>, String> {
    let mut conn = Conn::open(shared.nameserver(side), shared.max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let got = conn
        .call(
            rpc::request(RequestCode::GET_ROUTEINFO_BY_TOPIC, &[("topic", topic)]),
            &[],
            shared.upstream_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    match got.header.code {
        ResponseCode::SUCCESS => TopicRouteData::decode(&got.body)
            .map(Some)
            .map_err(|e| format!("cluster \"{}\": {e}", shared.cluster(side))),
        ResponseCode::TOPIC_NOT_EXIST => Ok(None),
        code => Err(format!(
            "cluster \"{}\" answered the route of {topic} with code {code}: {}",
            shared.cluster(side),
            got.header.remark.unwrap_or_default()
        )),
    }
}

/// Every readable queue of a route, on its master.
#[must_use]
pub fn queues(route: &TopicRouteData) -> Vec<Queue> {
    let mut out = Vec::new();
    for q in &route.queue_datas {
        let Some(addr) = route.broker(&q.broker_name).and_then(|b| b.master_addr()) else {
            continue;
        };
        for id in 0..q.read_queue_nums {
            out.push(Queue {
                addr: addr.to_owned(),
                id,
            });
        }
    }
    out
}

/// Broker connections of one check, opened once per address.
pub struct Brokers<'a> {
    shared: &'a Shared,
    side: Side,
    conns: BTreeMap<String, Conn>,
}

impl<'a> Brokers<'a> {
    /// No connection yet.
    #[must_use]
    pub fn new(shared: &'a Shared, side: Side) -> Self {
        Brokers {
            shared,
            side,
            conns: BTreeMap::new(),
        }
    }

    async fn call(
        &mut self,
        addr: &str,
        code: i32,
        ext: &[(&str, &str)],
    ) -> Result<cutover_rocketmq::Frame, String> {
        self.call_with(addr, code, ext, &[]).await
    }

    async fn call_with(
        &mut self,
        addr: &str,
        code: i32,
        ext: &[(&str, &str)],
        body: &[u8],
    ) -> Result<cutover_rocketmq::Frame, String> {
        if !self.conns.contains_key(addr) {
            let upstream = self.shared.broker_upstream(self.side, addr)?;
            let conn = Conn::open(&upstream, self.shared.max_frame)
                .await
                .map_err(|e| e.to_string())?;
            self.conns.insert(addr.to_owned(), conn);
        }
        let conn = self.conns.get_mut(addr).expect("just opened");
        let got = conn
            .call(rpc::request(code, ext), body, self.shared.upstream_timeout)
            .await;
        if got.is_err() {
            self.conns.remove(addr);
        }
        got.map_err(|e| format!("broker {addr}: {e}"))
    }

    async fn offset(
        &mut self,
        addr: &str,
        code: i32,
        ext: &[(&str, &str)],
    ) -> Result<Option<i64>, String> {
        let got = self.call(addr, code, ext).await?;
        match got.header.code {
            ResponseCode::SUCCESS => got
                .header
                .ext("offset")
                .and_then(|o| o.parse().ok())
                .map(Some)
                .ok_or_else(|| {
                    format!("broker {addr} answered request code {code} without an offset")
                }),
            ResponseCode::QUERY_NOT_FOUND => Ok(None),
            other => Err(format!(
                "broker {addr} answered request code {code} with code {other}: {}",
                got.header.remark.unwrap_or_default()
            )),
        }
    }

    /// The queue's max (next) offset.
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn max_offset(&mut self, topic: &str, q: &Queue) -> Result<i64, String> {
        let id = q.id.to_string();
        self.offset(
            &q.addr,
            RequestCode::GET_MAX_OFFSET,
            &[("topic", topic), ("queueId", &id)],
        )
        .await?
        .ok_or_else(|| format!("broker {} has no max offset for {topic}/{id}", q.addr))
    }

    /// The queue's min offset.
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn min_offset(&mut self, topic: &str, q: &Queue) -> Result<i64, String> {
        let id = q.id.to_string();
        self.offset(
            &q.addr,
            RequestCode::GET_MIN_OFFSET,
            &[("topic", topic), ("queueId", &id)],
        )
        .await?
        .ok_or_else(|| format!("broker {} has no min offset for {topic}/{id}", q.addr))
    }

    /// The group's committed offset of the queue, if it has one.
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn group_offset(
        &mut self,
        group: &str,
        topic: &str,
        q: &Queue,
    ) -> Result<Option<i64>, String> {
        let id = q.id.to_string();
        self.offset(
            &q.addr,
            RequestCode::QUERY_CONSUMER_OFFSET,
            &[("consumerGroup", group), ("topic", topic), ("queueId", &id)],
        )
        .await
    }

    /// Commits `offset` for the group on the queue, creating the group on
    /// the broker first if the broker does not know it (a group meets a
    /// target broker only once target queues appear in its routes, and
    /// its offsets must be set before that).
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn commit(
        &mut self,
        group: &str,
        topic: &str,
        q: &Queue,
        offset: i64,
    ) -> Result<(), String> {
        let mut code = self.try_commit(group, topic, q, offset).await?;
        if code == ResponseCode::SUBSCRIPTION_GROUP_NOT_EXIST {
            self.create_group(&q.addr, group).await?;
            code = self.try_commit(group, topic, q, offset).await?;
        }
        if code == ResponseCode::SUCCESS {
            Ok(())
        } else {
            Err(format!(
                "broker {} refused the offset of {group} on {topic}/{} with code {code}",
                q.addr, q.id
            ))
        }
    }

    /// Creates subscription group `group` with Apache's defaults.
    async fn create_group(&mut self, addr: &str, group: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "groupName": group, "consumeEnable": true, "consumeFromMinEnable": true,
            "consumeBroadcastEnable": true, "retryQueueNums": 1, "retryMaxTimes": 16,
            "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1, "notifyConsumerIdsChangedEnable": true,
        });
        let got = self
            .call_with(
                addr,
                RequestCode::UPDATE_AND_CREATE_SUBSCRIPTIONGROUP,
                &[],
                body.to_string().as_bytes(),
            )
            .await?;
        if got.header.code == ResponseCode::SUCCESS {
            tracing::info!(broker = %addr, %group, "subscription group created on the target broker");
            Ok(())
        } else {
            Err(format!(
                "broker {addr} refused to create subscription group {group}: code {}: {}",
                got.header.code,
                got.header.remark.unwrap_or_default()
            ))
        }
    }

    async fn try_commit(
        &mut self,
        group: &str,
        topic: &str,
        q: &Queue,
        offset: i64,
    ) -> Result<i32, String> {
        let (id, offset) = (q.id.to_string(), offset.to_string());
        let got = self
            .call(
                &q.addr,
                RequestCode::UPDATE_CONSUMER_OFFSET,
                &[
                    ("consumerGroup", group),
                    ("topic", topic),
                    ("queueId", &id),
                    ("commitOffset", &offset),
                ],
            )
            .await?;
        Ok(got.header.code)
    }

    /// Messages of `topic` the group has not consumed, summed over the
    /// given queues (a queue the group never committed counts from its min).
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn backlog(
        &mut self,
        group: &str,
        topic: &str,
        queues: &[Queue],
    ) -> Result<i64, String> {
        let mut total = 0;
        for q in queues {
            let max = self.max_offset(topic, q).await?;
            let done = match self.group_offset(group, topic, q).await? {
                Some(o) => o,
                None => self.min_offset(topic, q).await?,
            };
            total += (max - done).max(0);
        }
        Ok(total)
    }

    /// The client addresses of the group's members connected to the broker
    /// at `addr` (empty when the group is not online there).
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn members(&mut self, addr: &str, group: &str) -> Result<Vec<Member>, String> {
        let got = self
            .call(
                addr,
                RequestCode::GET_CONSUMER_CONNECTION_LIST,
                &[("consumerGroup", group)],
            )
            .await?;
        if got.header.code != ResponseCode::SUCCESS {
            return Ok(Vec::new());
        }
        let body = cutover_rocketmq::quote_integer_keys(&got.body);
        let list: ConnectionList = serde_json::from_slice(&body)
            .map_err(|e| format!("broker {addr}: consumer connection list of {group}: {e}"))?;
        Ok(list.connection_set)
    }
}

impl Brokers<'_> {
    /// The consumer groups the broker at `addr` knows for `topic`: groups
    /// online with a subscription to it (their connection lists carry the
    /// subscriptions) and groups holding offsets of it.
    ///
    /// # Errors
    /// A sentence naming the broker when it cannot be asked, refuses, or
    /// holds more than [`MAX_GROUPS_INSPECTED`] groups.
    pub async fn topic_groups(&mut self, addr: &str, topic: &str) -> Result<Vec<String>, String> {
        let table = self.group_table(addr).await?;
        if table.len() > MAX_GROUPS_INSPECTED {
            return Err(format!(
                "broker {addr} has {} subscription groups, more than the {MAX_GROUPS_INSPECTED} a check inspects",
                table.len()
            ));
        }
        let mut found = BTreeSet::new();
        for group in &table {
            if self.subscribes(addr, group, topic).await? {
                found.insert(group.clone());
            }
        }
        let got = self
            .call(addr, QUERY_TOPIC_CONSUME_BY_WHO, &[("topic", topic)])
            .await?;
        let list: GroupList = ok_json(addr, &got, "the consumer groups of a topic")?;
        found.extend(list.group_list.into_iter().filter(|g| table.contains(g)));
        Ok(found.into_iter().collect())
    }

    /// Every subscription group name of the broker at `addr`.
    async fn group_table(&mut self, addr: &str) -> Result<BTreeSet<String>, String> {
        let got = self
            .call(addr, GET_ALL_SUBSCRIPTIONGROUP_CONFIG, &[])
            .await?;
        let wrapper: GroupTable = ok_json(addr, &got, "the subscription groups")?;
        Ok(wrapper.subscription_group_table.into_keys().collect())
    }

    /// Whether `group` has members online at `addr` subscribed to `topic`.
    async fn subscribes(&mut self, addr: &str, group: &str, topic: &str) -> Result<bool, String> {
        let got = self
            .call(
                addr,
                RequestCode::GET_CONSUMER_CONNECTION_LIST,
                &[("consumerGroup", group)],
            )
            .await?;
        if got.header.code != ResponseCode::SUCCESS {
            // Not online there.
            return Ok(false);
        }
        let body = cutover_rocketmq::quote_integer_keys(&got.body);
        let list: ConnectionList = serde_json::from_slice(&body)
            .map_err(|e| format!("broker {addr}: consumer connection list of {group}: {e}"))?;
        Ok(!list.connection_set.is_empty() && list.subscription_table.contains_key(topic))
    }
}

impl Brokers<'_> {
    /// Every producer connected to the broker at `addr`, per producer group.
    ///
    /// # Errors
    /// A sentence naming the broker when it cannot be asked or refuses.
    pub async fn producers(
        &mut self,
        addr: &str,
    ) -> Result<BTreeMap<String, Vec<ProducerInfo>>, String> {
        let got = self.call(addr, GET_ALL_PRODUCER_INFO, &[]).await?;
        let table: ProducerTable = ok_json(addr, &got, "its producers")?;
        Ok(table.data)
    }

    /// Whether the broker at `addr` keeps messages with a delivery time in
    /// its timer wheel (`timerWheelEnable`, on by default in 5.x), where
    /// [`Brokers::delayed`] cannot count them.
    ///
    /// # Errors
    /// A sentence naming the broker when it does not say.
    pub async fn timer_wheel(&mut self, addr: &str) -> Result<bool, String> {
        let got = self.call(addr, GET_BROKER_CONFIG, &[]).await?;
        if got.header.code != ResponseCode::SUCCESS {
            return Err(format!(
                "broker {addr} did not give its config (code {}): whether it keeps delayed messages in a timer wheel is unknown",
                got.header.code
            ));
        }
        Ok(timer_wheel_enabled(&got.body))
    }

    /// Delayed messages on the broker at `addr` not yet due or not yet
    /// delivered to their topics: per delay level, the queue's max offset
    /// minus the schedule service's offset.
    ///
    /// # Errors
    /// A sentence naming the broker.
    pub async fn delayed(&mut self, addr: &str) -> Result<i64, String> {
        let got = self.call(addr, GET_ALL_DELAY_OFFSET, &[]).await?;
        let table: DelayOffsets = ok_json(addr, &got, "the delay offsets")?;
        let mut total = 0;
        for level in 1..=DELAY_LEVELS {
            let q = Queue {
                addr: addr.to_owned(),
                id: level - 1,
            };
            let max = self.max_offset(SCHEDULE_TOPIC, &q).await?;
            if max == 0 {
                continue;
            }
            let done = match table.offset_table.get(&level.to_string()) {
                Some(o) => *o,
                None => self.min_offset(SCHEDULE_TOPIC, &q).await?,
            };
            total += (max - done).max(0);
        }
        Ok(total)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DelayOffsets {
    /// Delay level → offset in its queue.
    #[serde(default)]
    offset_table: BTreeMap<String, i64>,
}

/// The JSON body of a successful answer.
/// `timerWheelEnable` in a broker's properties text; a broker that does
/// not name it runs the default, which is on.
fn timer_wheel_enabled(properties: &[u8]) -> bool {
    String::from_utf8_lossy(properties)
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "timerWheelEnable")
        .is_none_or(|(_, v)| v.trim() != "false")
}

fn ok_json<T: serde::de::DeserializeOwned>(
    addr: &str,
    got: &cutover_rocketmq::Frame,
    what: &str,
) -> Result<T, String> {
    if got.header.code != ResponseCode::SUCCESS {
        return Err(format!(
            "broker {addr} answered the request for {what} with code {}: {}",
            got.header.code,
            got.header.remark.clone().unwrap_or_default()
        ));
    }
    let body = cutover_rocketmq::quote_integer_keys(&got.body);
    serde_json::from_slice(&body).map_err(|e| format!("broker {addr}: {what}: {e}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupList {
    #[serde(default)]
    group_list: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupTable {
    #[serde(default)]
    subscription_group_table: BTreeMap<String, serde::de::IgnoredAny>,
}

/// One member of a consumer group as a broker lists it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    /// The client's id (`ip@instance`).
    #[serde(default)]
    pub client_id: String,
    /// The address the broker sees the connection from.
    #[serde(default)]
    pub client_addr: String,
    /// The client's language (`JAVA`, ...).
    #[serde(default)]
    pub language: String,
    /// The client's version number.
    #[serde(default)]
    pub version: i32,
}

/// One producer as a broker lists it (GET_ALL_PRODUCER_INFO).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProducerInfo {
    /// The client's id.
    #[serde(default)]
    pub client_id: String,
    /// The address the broker sees the connection from.
    #[serde(default, rename = "remoteIP")]
    pub remote_ip: String,
    /// The client's language.
    #[serde(default)]
    pub language: String,
    /// The client's version number.
    #[serde(default)]
    pub version: i32,
    /// When its last heartbeat reached the broker (ms since the epoch).
    #[serde(default)]
    pub last_update_timestamp: u64,
}

#[derive(Deserialize)]
struct ProducerTable {
    /// Producer group → its producers.
    #[serde(default)]
    data: BTreeMap<String, Vec<ProducerInfo>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionList {
    #[serde(default)]
    connection_set: Vec<Member>,
    /// Topic → subscription; only the topics matter here.
    #[serde(default)]
    subscription_table: BTreeMap<String, serde::de::IgnoredAny>,
}

#[cfg(test)]
mod timer_wheel_tests {
    use super::timer_wheel_enabled;

    #[test]
    fn the_timer_wheel_is_on_unless_the_broker_says_false() {
        assert!(!timer_wheel_enabled(
            b"brokerName=a\ntimerWheelEnable=false\n"
        ));
        assert!(timer_wheel_enabled(
            b"brokerName=a\ntimerWheelEnable=true\n"
        ));
        assert!(timer_wheel_enabled(b"brokerName=a\n"), "the 5.x default");
    }
}
