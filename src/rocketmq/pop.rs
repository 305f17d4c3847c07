//! Server-side rebalance and pop consumption (Apache 5.x) through the
//! proxy.
//!
//! - QUERY_ASSIGNMENT (400): a client that lets the brokers rebalance asks
//!   one broker, picked at random from the topic's route, for its queues
//!   (and whether to pull or pop them). A broker assigns only its own
//!   cluster's queues, so the proxy asks one master of each cluster the
//!   topic's state reads from, and answers the union, target names
//!   suffixed; a cluster the state does not read is left out even when it
//!   was the one asked.
//! - POP_MESSAGE (200050) and NOTIFICATION / POLLING_INFO (200054/5) carry the broker
//!   name only in `bname`, translated like every request.
//! - ACK_MESSAGE (200051) and CHANGE_MESSAGE_INVISIBLETIME (200053) carry
//!   the client's `extraInfo`, in which the client wrote the broker name it
//!   popped from (the suffixed one on a target endpoint); the broker
//!   matches acks to its checkpoints by its own name, so that field is
//!   translated back. BATCH_ACK_MESSAGE (200151) names it in its body.
//!
//! An ack reaches the broker the client resolves from that name: the one
//! the message was popped from, in every state whose route still lists it.

use bytes::Bytes;
use cutover_rocketmq::{Frame, Header, PERM_READ, RequestCode, ResponseCode, encode};
use serde_json::Value;

use super::Shared;
use super::endpoints::{Endpoint, Side};
use super::offsets;
use super::rpc::{self, Conn};

/// The field of a space-separated `extraInfo` holding the broker name
/// (Apache `ExtraInfoUtil`: ck offset, pop time, invisible time, revive
/// queue, topic type, broker name, queue id, offset).
const EXTRA_INFO_BROKER: usize = 5;

/// `extraInfo` with the broker name `from` replaced by `to`; `None` when it
/// does not name `from`.
#[must_use]
pub fn rename_extra_info(extra: &str, from: &str, to: &str) -> Option<String> {
    let mut fields: Vec<&str> = extra.split(' ').collect();
    if fields.get(EXTRA_INFO_BROKER) != Some(&from) {
        return None;
    }
    fields[EXTRA_INFO_BROKER] = to;
    Some(fields.join(" "))
}

/// Translates the broker name in an ack's `extraInfo` to the real one;
/// returns whether the header changed.
pub fn ack_to_real(header: &mut Header, endpoint: &Endpoint) -> bool {
    if !matches!(
        header.code,
        RequestCode::ACK_MESSAGE | RequestCode::CHANGE_MESSAGE_INVISIBLETIME
    ) {
        return false;
    }
    let renamed = header
        .ext("extraInfo")
        .and_then(|e| rename_extra_info(e, &endpoint.virtual_name, &endpoint.real_name));
    match renamed {
        Some(extra) => {
            header.set_ext("extraInfo", extra);
            true
        }
        None => false,
    }
}

/// The answer to a QUERY_ASSIGNMENT whose request body was `request`:
/// the assignments of every cluster the topic's state reads from. `None`
/// keeps the broker's own answer (the request or answer does not parse, or
/// the other cluster could not be asked: the client asks again on its next
/// rebalance).
pub async fn merged_assignment(
    shared: &Shared,
    endpoint: &Endpoint,
    answer: &Frame,
    request: &[u8],
) -> Option<Bytes> {
    let ask: Value = serde_json::from_slice(request).ok()?;
    let topic = ask["topic"].as_str()?.to_owned();
    let plan = shared.plan(&topic).await;
    let reads = |side: Side| plan.need(side).mask & PERM_READ != 0;
    let mut merged = Vec::new();
    let mut answered = false;
    if reads(endpoint.side) && answer.header.code == ResponseCode::SUCCESS {
        merged.extend(assignments(shared, endpoint.side, &answer.body)?);
        answered = true;
    }
    let other = match endpoint.side {
        Side::Source => Side::Target,
        Side::Target => Side::Source,
    };
    if reads(other) {
        match ask_other(shared, other, &topic, request).await {
            Ok(Some(body)) => {
                merged.extend(assignments(shared, other, &body)?);
                answered = true;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(migration = %shared.migration.name, %topic, error = %e,
                    "queue assignment from one cluster only: the other could not be asked");
                return None;
            }
        }
    }
    if !answered {
        return None;
    }
    let mut header = Header::response(ResponseCode::SUCCESS, answer.header.opaque, None);
    header.language = answer.header.language;
    header.version = answer.header.version;
    let body = serde_json::json!({ "messageQueueAssignments": merged });
    encode(&header, body.to_string().as_bytes(), answer.encoding).ok()
}

/// The assignments of a QUERY_ASSIGNMENT answer from `side`, target broker
/// names suffixed.
fn assignments(shared: &Shared, side: Side, body: &[u8]) -> Option<Vec<Value>> {
    let body = cutover_rocketmq::quote_integer_keys(body);
    let mut parsed: Value = serde_json::from_slice(&body).ok()?;
    let list = parsed.get_mut("messageQueueAssignments")?.as_array_mut()?;
    let mut out = Vec::with_capacity(list.len());
    for mut a in list.drain(..) {
        if side == Side::Target
            && let Some(name) = a["messageQueue"]["brokerName"].as_str()
        {
            let virtual_name = shared.virtual_name(side, name);
            a["messageQueue"]["brokerName"] = Value::String(virtual_name);
        }
        out.push(a);
    }
    Some(out)
}

/// The same QUERY_ASSIGNMENT asked of a master of `side`'s route of
/// `topic`; `Ok(None)` when that side has no such topic or refuses.
async fn ask_other(
    shared: &Shared,
    side: Side,
    topic: &str,
    request: &[u8],
) -> Result<Option<Vec<u8>>, String> {
    let Some(route) = offsets::route(shared, side, topic).await? else {
        return Ok(None);
    };
    let Some(addr) = route.broker_datas.iter().find_map(|b| b.master_addr()) else {
        return Ok(None);
    };
    let upstream = shared.broker_upstream(side, addr)?;
    let mut conn = Conn::open(&upstream, shared.max_frame)
        .await
        .map_err(|e| e.to_string())?;
    let got = conn
        .call(
            rpc::request(RequestCode::QUERY_ASSIGNMENT, &[]),
            request,
            shared.upstream_timeout,
        )
        .await
        .map_err(|e| e.to_string())?;
    if got.header.code != ResponseCode::SUCCESS {
        tracing::debug!(migration = %shared.migration.name, %topic, side = side.as_str(), code = got.header.code,
            "a cluster refused the queue assignment");
        return Ok(None);
    }
    Ok(Some(got.body.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_name_of_an_extra_info_is_translated() {
        let extra = "5 1700000000000 60000 1 0 broker-a-target 3 7";
        assert_eq!(
            rename_extra_info(extra, "broker-a-target", "broker-a").as_deref(),
            Some("5 1700000000000 60000 1 0 broker-a 3 7")
        );
        assert_eq!(
            rename_extra_info(extra, "broker-b-target", "broker-b"),
            None
        );
        assert_eq!(rename_extra_info("short", "x", "y"), None);
    }
}
