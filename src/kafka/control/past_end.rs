//! What lies past the end of a partition's closed segment on a cluster:
//! records written around the proxy, or transaction markers.
//!
//! A transaction coordinator writes its COMMIT/ABORT marker to every
//! partition in the transaction, including one added to it before the
//! switch whose records then went to the other cluster (or none at all),
//! or when an EndTxn was in flight across the switch. Such a marker lands
//! past the closed end even though no client wrote there. Markers carry
//! no data: a reader skips them and the fetch path cuts them off with the
//! rest of what lies past the segment, so they are not bypassing writes.
//! Only data records are counted here; a read that cannot tell counts the
//! rest as data, so a check refuses rather than passes blindly.

use cutover_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName,
};
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::{Batch, batches};

use crate::kafka::Shared;
use crate::kafka::cluster::Side;
use crate::kafka::retry::{Failure, STEP_DEADLINE, retrying};

/// Fetch version: v4, the first with isolation levels and the oldest Apache
/// Kafka 4 still answers; every source from 0.11 on knows it.
const FETCH_VERSION: i16 = 4;
/// Bytes one read asks for; a larger first batch still comes whole (KIP-74).
const READ_MAX_BYTES: i32 = 1 << 20;
/// Reads per partition; what is left unread after them counts as data.
const MAX_READS: usize = 16;

/// How many offsets in `end..leo` of `topic`/`partition` on `side` hold
/// data records (markers excluded).
///
/// # Errors
/// When the partition's leader cannot be asked or answers an error.
pub(super) async fn data_offsets(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
    end: i64,
    leo: i64,
) -> Result<i64, String> {
    let mut at = end;
    let mut data = 0;
    for _ in 0..MAX_READS {
        if at >= leo {
            return Ok(data);
        }
        let records = retrying(STEP_DEADLINE, || read(shared, side, topic, partition, at)).await?;
        let (next, found) = count_data(&records, at, leo);
        if next <= at {
            break; // nothing whole came back: cannot tell
        }
        data += found;
        at = next;
    }
    Ok(data + (leo - at).max(0))
}

/// In a records blob read from `from`: the offset after its last whole
/// batch (`from` when none) and how many offsets in `from..leo` its data
/// batches hold.
fn count_data(records: &[u8], from: i64, leo: i64) -> (i64, i64) {
    let (mut next, mut data) = (from, 0);
    for item in batches(records) {
        let Ok(Batch::Whole(view)) = item else {
            break;
        };
        let last = view.last_offset().min(leo - 1);
        let first = view.base_offset().max(next);
        if last < first {
            continue;
        }
        if !view.is_control() {
            data += last - first + 1;
        }
        next = last + 1;
    }
    (next, data)
}

/// One read-uncommitted Fetch of `topic`/`partition` from `offset` on its
/// leader on `side`, returning the records blob.
async fn read(
    shared: &Shared,
    side: Side,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Vec<u8>, Failure> {
    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(READ_MAX_BYTES)
        .with_isolation_level(0)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(partition)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(READ_MAX_BYTES),
                ]),
        ]);
    let addr = shared.dest(side, topic, partition).addr;
    let upstream = shared.upstream(side, addr.as_deref())?;
    let response: FetchResponse = shared
        .exchange(&upstream, ApiKey::Fetch, FETCH_VERSION, &request)
        .await
        .map_err(|e| Failure {
            retriable: matches!(e, crate::kafka::probe::ProbeError::Exchange { .. }),
            message: e.to_string(),
        })?;
    let part = response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            Failure::fatal(format!(
                "the {} did not answer Fetch for {topic}/{partition}",
                side.as_str()
            ))
        })?;
    if part.error_code != 0 {
        return Err(Failure::code(
            part.error_code,
            format!(
                "the {} answered Fetch for {topic}/{partition}",
                side.as_str()
            ),
        ));
    }
    Ok(part
        .records
        .as_ref()
        .map(|r| r.to_vec())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal v2 batch at `base` holding `count` offsets.
    fn batch(base: i64, count: i32, control: bool) -> Vec<u8> {
        let mut b = vec![0u8; 61];
        b[..8].copy_from_slice(&base.to_be_bytes());
        b[8..12].copy_from_slice(&49i32.to_be_bytes());
        b[16] = 2;
        let attributes: i16 = if control { 0x30 } else { 0x10 };
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).to_be_bytes());
        b
    }

    #[test]
    fn markers_are_not_data() {
        let marker = batch(26, 1, true);
        assert_eq!(count_data(&marker, 26, 27), (27, 0), "a lone marker");
        let mixed = [batch(26, 1, true), batch(27, 3, false), batch(30, 1, true)].concat();
        assert_eq!(count_data(&mixed, 26, 31), (31, 3));
    }

    #[test]
    fn only_offsets_from_the_start_and_below_the_end_count() {
        let blob = [batch(20, 10, false), batch(30, 5, false)].concat();
        assert_eq!(count_data(&blob, 26, 33), (33, 7), "26..30 and 30..33");
    }

    #[test]
    fn a_partial_batch_stops_the_count() {
        let whole = batch(26, 2, false);
        let partial = &batch(28, 2, false)[..30];
        let blob = [whole, partial.to_vec()].concat();
        assert_eq!(count_data(&blob, 26, 30), (28, 2));
        assert_eq!(count_data(partial, 28, 30), (28, 0), "nothing whole");
    }
}
