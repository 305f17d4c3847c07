//! Splitting compacted batches (issue 16, the history copy): batches are
//! written by kafka-protocol's `RecordBatchEncoder`, cleaned here the way
//! Kafka's log cleaner leaves them (records dropped, base offset and last
//! offset kept), split by `split_dense`, and read back by
//! `RecordBatchDecoder`, which verifies each piece's CRC-32C.

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::indexmap::IndexMap;
use cutover_kafka::kafka_protocol::protocol::StrBytes;
use cutover_kafka::kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use cutover_kafka::{
    BatchView, ControlType, FrameError, RecordsError, control_type, has_offset_gaps,
    set_attributes, split_dense, split_dense_from,
};
use proptest::prelude::*;

const BASE: i64 = 1_000;
const PRODUCER: i64 = 4_001;

/// A record at `BASE + i`; its sequence follows its offset, as one
/// idempotent producer batch's do.
fn record(i: i64, value_len: usize, timestamp: i64, headers: usize) -> Record {
    let mut h = IndexMap::new();
    for n in 0..headers {
        h.insert(
            StrBytes::from_string(format!("h{n}")),
            Some(Bytes::from(format!("hv{i}.{n}"))),
        );
    }
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 2,
        producer_id: PRODUCER,
        producer_epoch: 0,
        timestamp_type: TimestampType::Creation,
        offset: BASE + i,
        sequence: i32::try_from(i).unwrap(),
        timestamp,
        key: (i % 3 != 0).then(|| Bytes::from(format!("key-{i}"))),
        value: (i % 5 != 4).then(|| Bytes::from(vec![b'a' + (i % 26) as u8; value_len])),
        headers: h,
    }
}

fn encode(records: &[Record]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options).unwrap();
    let blob = buf.to_vec();
    assert_eq!(
        BatchView::new(&blob).unwrap().as_bytes().len(),
        blob.len(),
        "one batch"
    );
    blob
}

/// Zigzag varint (a record's length), read independently of the crate.
fn varint(b: &[u8]) -> (i64, usize) {
    let (mut raw, mut shift, mut n) = (0u64, 0, 0);
    loop {
        let byte = b[n];
        raw |= u64::from(byte & 0x7f) << shift;
        n += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    ((raw >> 1) as i64 ^ -((raw & 1) as i64), n)
}

/// What the cleaner leaves of `batch`: the records `keep` says, byte for
/// byte, under the original header (base offset and lastOffsetDelta kept),
/// with the count, the length and the CRC updated.
fn clean(batch: &[u8], keep: impl Fn(usize) -> bool) -> Vec<u8> {
    let mut out = batch[..61].to_vec();
    let (mut pos, mut i, mut kept) = (61, 0, 0i32);
    while pos < batch.len() {
        let (len, width) = varint(&batch[pos..]);
        let end = pos + width + usize::try_from(len).unwrap();
        if keep(i) {
            out.extend_from_slice(&batch[pos..end]);
            kept += 1;
        }
        pos = end;
        i += 1;
    }
    let length = i32::try_from(out.len() - 12).unwrap();
    out[8..12].copy_from_slice(&length.to_be_bytes());
    out[57..61].copy_from_slice(&kept.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

fn decode(blob: &[u8]) -> Vec<Record> {
    RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(blob))
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// Every piece is dense, valid and starts at its first record; together
/// they hold exactly `expected`, field for field.
fn check_pieces(pieces: &[Vec<u8>], expected: &[Record]) {
    let mut blob = Vec::new();
    for p in pieces {
        let view = BatchView::new(p).unwrap();
        assert_eq!(view.as_bytes().len(), p.len());
        assert!(view.crc_is_valid());
        assert!(!has_offset_gaps(&view));
        let records = decode(p);
        assert_eq!(view.base_offset(), records[0].offset);
        let max = records.iter().map(|r| r.timestamp).max().unwrap();
        assert_eq!(view.max_timestamp(), max);
        blob.extend_from_slice(p);
    }
    let got = decode(&blob);
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(
            (
                g.offset,
                g.sequence,
                g.timestamp,
                &g.key,
                &g.value,
                &g.headers
            ),
            (
                e.offset,
                e.sequence,
                e.timestamp,
                &e.key,
                &e.value,
                &e.headers
            ),
        );
        assert_eq!((g.producer_id, g.partition_leader_epoch), (PRODUCER, 2));
    }
}

fn ten() -> Vec<Record> {
    (0..10)
        .map(|i| {
            record(
                i,
                12,
                1_700_000_000_000 + 7 * i,
                usize::try_from(i % 3).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_cleaned_batch_splits_into_one_batch_per_offset_run() {
    let all = ten();
    // The first, 3 and 4, and the last are compacted away.
    let dropped = [0, 3, 4, 9];
    let cleaned = clean(&encode(&all), |i| !dropped.contains(&i));
    let view = BatchView::new(&cleaned).unwrap();
    assert_eq!((view.base_offset(), view.last_offset()), (BASE, BASE + 9));
    assert!(has_offset_gaps(&view));
    assert_eq!(
        decode(&cleaned).len(),
        6,
        "the cleaned batch itself is valid"
    );

    let pieces = split_dense(&cleaned).unwrap();
    let starts: Vec<_> = pieces
        .iter()
        .map(|p| {
            let v = BatchView::new(p).unwrap();
            (v.base_offset(), v.record_count())
        })
        .collect();
    assert_eq!(starts, [(BASE + 1, 2), (BASE + 5, 4)]);
    let kept: Vec<_> = (0..10)
        .filter(|i| !dropped.contains(i))
        .map(|i| all[i].clone())
        .collect();
    check_pieces(&pieces, &kept);
}

#[test]
fn a_dense_batch_comes_back_unchanged() {
    let batch = encode(&ten());
    let pieces = split_dense(&batch).unwrap();
    assert_eq!(pieces, [batch]);
}

#[test]
fn records_below_the_read_position_are_left_out() {
    let all = ten();
    let batch = encode(&all);
    let pieces = split_dense_from(&batch, BASE + 6).unwrap();
    check_pieces(&pieces, &all[6..]);
    assert!(split_dense_from(&batch, BASE + 10).unwrap().is_empty());
    let empty = clean(&batch, |_| false);
    assert!(
        split_dense(&empty).unwrap().is_empty(),
        "the cleaner's empty batch"
    );
}

#[test]
fn offset_and_length_varints_change_width() {
    // 200 records: deltas from 64 on take two bytes; values sized so some
    // records' lengths cross 63/64 as their delta shrinks to one byte.
    let all: Vec<_> = (0..200)
        .map(|i| {
            record(
                i,
                44 + usize::try_from(i % 8).unwrap(),
                1_700_000_000_000 + i,
                0,
            )
        })
        .collect();
    let cleaned = clean(&encode(&all), |i| i >= 100 && i != 150);
    let pieces = split_dense(&cleaned).unwrap();
    assert_eq!(pieces.len(), 2);
    let kept: Vec<_> = (100..200)
        .filter(|&i| i != 150)
        .map(|i| all[i].clone())
        .collect();
    check_pieces(&pieces, &kept);
    assert!(pieces.iter().map(Vec::len).sum::<usize>() < cleaned.len());
}

#[test]
fn compressed_corrupt_and_malformed_batches_are_refused() {
    let batch = encode(&ten());
    let attributes = BatchView::new(&batch).unwrap().attributes();

    let mut gzip = batch.clone();
    set_attributes(&mut gzip, attributes | 1).unwrap();
    assert!(matches!(
        split_dense(&gzip),
        Err(RecordsError::Compressed {
            codec: 1,
            base_offset: BASE
        })
    ));

    let mut corrupt = batch.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert!(matches!(
        split_dense(&corrupt),
        Err(RecordsError::Corrupt { .. })
    ));

    let mut overcounted = batch.clone();
    overcounted[57..61].copy_from_slice(&11i32.to_be_bytes());
    set_attributes(&mut overcounted, attributes).unwrap(); // reseal
    assert!(matches!(
        split_dense(&overcounted),
        Err(RecordsError::Frame(FrameError::Malformed { .. }))
    ));

    let mut short_range = batch.clone();
    short_range[23..27].copy_from_slice(&5i32.to_be_bytes());
    set_attributes(&mut short_range, attributes).unwrap();
    assert!(matches!(
        split_dense(&short_range),
        Err(RecordsError::Frame(FrameError::Malformed { .. }))
    ));

    assert!(matches!(
        split_dense(&batch[..batch.len() - 3]),
        Err(RecordsError::Frame(FrameError::Truncated { .. }))
    ));
}

#[test]
fn log_append_time_keeps_the_brokers_stamp() {
    let batch = encode(&ten());
    let attributes = BatchView::new(&batch).unwrap().attributes();
    let mut stamped = batch.clone();
    stamped[35..43].copy_from_slice(&1_800_000_000_000i64.to_be_bytes());
    set_attributes(&mut stamped, attributes | 0x08).unwrap();
    let cleaned = clean(&stamped, |i| i != 5);
    for p in split_dense(&cleaned).unwrap() {
        assert_eq!(
            BatchView::new(&p).unwrap().max_timestamp(),
            1_800_000_000_000
        );
    }
}

#[test]
fn clearing_the_transactional_bit_keeps_the_batch_valid() {
    let records: Vec<_> = ten()
        .into_iter()
        .map(|r| Record {
            transactional: true,
            ..r
        })
        .collect();
    let mut batch = encode(&records);
    let view = BatchView::new(&batch).unwrap();
    assert!(view.is_transactional());
    let attributes = view.attributes();
    set_attributes(&mut batch, attributes & !0x10).unwrap();
    let view = BatchView::new(&batch).unwrap();
    assert!(!view.is_transactional() && view.crc_is_valid());
    assert!(decode(&batch).iter().all(|r| !r.transactional));
    assert!(set_attributes(&mut batch[..40], 0).is_err());
}

fn marker(kind: u8) -> Vec<u8> {
    let mut r = record(0, 0, 1_700_000_000_000, 0);
    r.control = true;
    r.transactional = true;
    r.key = Some(Bytes::from(vec![0, 0, 0, kind]));
    r.value = Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0]));
    encode(&[r])
}

#[test]
fn control_records_say_abort_or_commit() {
    let abort = marker(0);
    let commit = marker(1);
    let other = marker(7);
    let data = encode(&ten());
    let kind = |b: &[u8]| control_type(&BatchView::new(b).unwrap()).unwrap();
    assert_eq!(kind(&abort), Some(ControlType::Abort));
    assert_eq!(kind(&commit), Some(ControlType::Commit));
    assert_eq!(kind(&other), Some(ControlType::Other(7)));
    assert_eq!(kind(&data), None);
}

proptest! {
    #[test]
    fn any_gap_pattern_splits_into_its_runs(
        shape in proptest::collection::vec((any::<bool>(), 0usize..90, 0i64..5_000, 0usize..3), 1..80),
        from in 0i64..80,
    ) {
        let all: Vec<_> = shape
            .iter()
            .enumerate()
            .map(|(i, &(_, len, ts, headers))| {
                record(i64::try_from(i).unwrap(), len, 1_700_000_000_000 + ts, headers)
            })
            .collect();
        let cleaned = clean(&encode(&all), |i| shape[i].0);
        let kept: Vec<_> = (0..all.len())
            .filter(|&i| shape[i].0 && all[i].offset >= BASE + from)
            .map(|i| all[i].clone())
            .collect();
        let pieces = split_dense_from(&cleaned, BASE + from).unwrap();
        let runs = kept.windows(2).filter(|w| w[0].offset + 1 != w[1].offset).count()
            + usize::from(!kept.is_empty());
        prop_assert_eq!(pieces.len(), runs);
        if !kept.is_empty() {
            check_pieces(&pieces, &kept);
        }
    }
}
