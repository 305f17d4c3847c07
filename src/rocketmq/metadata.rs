//! `ctl migrate-metadata MIGRATION TOPIC` for RocketMQ: creates the topic
//! on every master of the target cluster with at least the source's queue
//! counts, so `target_topic_exists` can pass. An existing target topic is
//! left alone (the operator may have sized it on purpose). Subscription
//! groups are not copied: brokers create them on first use
//! (`autoCreateSubscriptionGroup`, on by default).

use cutover_rocketmq::{RequestCode, ResponseCode};

use super::Shared;
use super::endpoints::Side;
use super::offsets;
use super::rpc::{self, Conn};

/// Creates `topic` on the target if it is missing; returns a JSON report
/// (errors too, as `ctl` expects).
pub async fn migrate(shared: &Shared, topic: &str) -> serde_json::Value {
    match migrate_inner(shared, topic).await {
        Ok(v) => v,
        Err(reason) => serde_json::json!({"topic": topic, "outcome": "error", "reason": reason}),
    }
}

async fn migrate_inner(shared: &Shared, topic: &str) -> Result<serde_json::Value, String> {
    let target_cluster = shared.cluster(Side::Target).to_owned();
    if let Some(existing) = offsets::route(shared, Side::Target, topic).await? {
        let queues: i32 = existing
            .queue_datas
            .iter()
            .map(|q| q.write_queue_nums)
            .sum();
        return Ok(serde_json::json!({
            "topic": topic, "outcome": "present", "target_partitions": queues,
            "reason": format!("cluster \"{target_cluster}\" already has {topic} with {queues} write queue(s)"),
        }));
    }
    let Some(source) = offsets::route(shared, Side::Source, topic).await? else {
        return Err(format!(
            "cluster \"{}\" (source) has no topic {topic}",
            shared.cluster(Side::Source)
        ));
    };
    let read: i32 = source.queue_datas.iter().map(|q| q.read_queue_nums).sum();
    let write: i32 = source.queue_datas.iter().map(|q| q.write_queue_nums).sum();
    let info = shared.cluster_info(Side::Target).await?;
    let masters: Vec<(String, String)> = info
        .broker_addr_table
        .values()
        .filter_map(|b| {
            b.master_addr()
                .map(|a| (b.broker_name.clone(), a.to_owned()))
        })
        .collect();
    if masters.is_empty() {
        return Err(format!("cluster \"{target_cluster}\" has no master broker"));
    }
    let n = i32::try_from(masters.len()).unwrap_or(i32::MAX);
    // Each master gets its share, rounded up, so the total is at least the source's.
    let (per_read, per_write) = ((read.max(1) + n - 1) / n, (write.max(1) + n - 1) / n);
    let mut created = Vec::new();
    for (name, addr) in &masters {
        create_on_broker(shared, (name, addr), topic, (per_read, per_write)).await?;
        created.push(
            serde_json::json!({"broker": name, "read_queues": per_read, "write_queues": per_write}),
        );
    }
    tracing::info!(migration = %shared.migration.name, %topic, brokers = masters.len(), per_read, per_write,
        "topic created on the target");
    // Field names follow `ctl migrate-metadata`'s report (queues stand
    // where Kafka has partitions).
    Ok(serde_json::json!({
        "topic": topic, "outcome": "created", "source_partitions": write,
        "target_partitions": per_write * n, "brokers": created,
        "reason": format!("created on {} master(s) of cluster \"{target_cluster}\"", masters.len()),
    }))
}

/// Creates `topic` on one target master broker with `(read, write)`
/// queues and perm 6 (readable and writable).
async fn create_on_broker(
    shared: &Shared,
    (name, addr): (&str, &str),
    topic: &str,
    (read, write): (i32, i32),
) -> Result<(), String> {
    let upstream = shared.broker_upstream(Side::Target, addr)?;
    let mut conn = Conn::open(&upstream, shared.max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let (r, w) = (read.to_string(), write.to_string());
    let ask = rpc::request(
        RequestCode::UPDATE_AND_CREATE_TOPIC,
        &[
            ("topic", topic),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", &r),
            ("writeQueueNums", &w),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("topicSysFlag", "0"),
            ("order", "false"),
        ],
    );
    let got = conn
        .call(ask, &[], shared.upstream_timeout)
        .await
        .map_err(|e| e.to_string())?;
    if got.header.code != ResponseCode::SUCCESS {
        return Err(format!(
            "broker {name} at {addr} refused to create {topic}: code {}: {}",
            got.header.code,
            got.header.remark.unwrap_or_default()
        ));
    }
    Ok(())
}
