//! Record batch view and patches, proven against batches produced by
//! kafka-protocol's own `RecordBatchEncoder` and read back by its
//! `RecordBatchDecoder` (which verifies the CRC-32C), so the layout in
//! `src/batch.rs` is checked, not assumed.

mod seeds;

use bytes::{Bytes, BytesMut};
use cutover_kafka::kafka_protocol::indexmap::IndexMap;
use cutover_kafka::kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use cutover_kafka::{
    Batch, BatchView, FrameError, batches, crc_is_valid, set_base_offset, set_producer,
    shift_base_offsets,
};

fn record(offset: i64, producer_id: i64, sequence: i32) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 3,
        producer_id,
        producer_epoch: 1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence,
        timestamp: 1_700_000_000_000 + offset,
        key: Some(Bytes::from(format!("k{offset}"))),
        value: Some(Bytes::from(format!("value {offset}"))),
        headers: IndexMap::new(),
    }
}

/// Two batches: offsets 0..3 from producer 1000, offsets 3..5 from producer 2000.
fn two_batches() -> Vec<u8> {
    let records = vec![
        record(0, 1000, 0),
        record(1, 1000, 1),
        record(2, 1000, 2),
        record(3, 2000, 7),
        record(4, 2000, 8),
    ];
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).unwrap();
    buf.to_vec()
}

/// Note `RecordBatchDecoder::decode` reads only the first batch; `decode_all`
/// reads them all (and fails on a partial tail).
fn decode(blob: &[u8]) -> Vec<Record> {
    RecordBatchDecoder::decode_all(&mut Bytes::copy_from_slice(blob))
        .unwrap()
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

fn wholes(blob: &[u8]) -> Vec<BatchView<'_>> {
    batches(blob)
        .map(|b| match b.unwrap() {
            Batch::Whole(v) => v,
            Batch::Partial { .. } => panic!("unexpected partial batch"),
        })
        .collect()
}

#[test]
fn header_fields_match_what_the_encoder_wrote() {
    let blob = two_batches();
    let views = wholes(&blob);
    assert_eq!(views.len(), 2);
    let (a, b) = (views[0], views[1]);
    assert_eq!(a.range().start, 0);
    assert_eq!(a.range().end, b.range().start);
    assert_eq!(b.range().end, blob.len());
    assert_eq!(
        a.as_bytes().len(),
        12 + usize::try_from(a.batch_length()).unwrap()
    );
    assert_eq!(
        (a.base_offset(), a.last_offset_delta(), a.last_offset()),
        (0, 2, 2)
    );
    assert_eq!((b.base_offset(), b.last_offset()), (3, 4));
    assert_eq!(
        (a.producer_id(), a.producer_epoch(), a.base_sequence()),
        (1000, 1, 0)
    );
    assert_eq!((b.producer_id(), b.base_sequence()), (2000, 7));
    assert_eq!((a.record_count(), b.record_count()), (3, 2));
    assert_eq!((a.magic(), a.partition_leader_epoch()), (2, 3));
    assert_eq!(a.base_timestamp(), 1_700_000_000_000);
    assert_eq!(a.max_timestamp(), 1_700_000_000_002);
    assert_eq!(
        (a.compression(), a.is_transactional(), a.is_control()),
        (0, false, false)
    );
    assert!(a.crc_is_valid() && b.crc_is_valid());
}

#[test]
fn base_offset_is_outside_the_crc() {
    let mut blob = two_batches();
    let second = wholes(&blob)[1].range();
    set_base_offset(&mut blob[second.clone()], 1_000_000).unwrap();
    assert!(crc_is_valid(&blob[second]));
    let offsets: Vec<i64> = decode(&blob).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [0, 1, 2, 1_000_000, 1_000_001]);
}

#[test]
fn shift_rebases_every_whole_batch() {
    let mut blob = two_batches();
    assert_eq!(shift_base_offsets(&mut blob, 500).unwrap(), 2);
    let offsets: Vec<i64> = decode(&blob).iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [500, 501, 502, 503, 504]);
    // A partial tail is rebased too, but only whole batches are counted.
    let mut cut = two_batches();
    cut.truncate(cut.len() - 5);
    let tail = wholes(&two_batches())[1].range().start;
    assert_eq!(shift_base_offsets(&mut cut, 500).unwrap(), 1);
    assert_eq!(
        i64::from_be_bytes(cut[tail..tail + 8].try_into().unwrap()),
        503
    );
    // A tail too short to hold its base offset is left as it is.
    let mut stub = two_batches();
    stub.truncate(tail + 5);
    assert_eq!(shift_base_offsets(&mut stub, 500).unwrap(), 1);
}

#[test]
fn producer_patch_recomputes_the_crc() {
    let mut blob = two_batches();
    let first = wholes(&blob)[0].range();
    // Without the recomputation the CRC no longer matches.
    let mut raw = blob.clone();
    raw[43 + 7] ^= 1;
    assert!(!crc_is_valid(&raw[first.clone()]));
    assert!(RecordBatchDecoder::decode(&mut Bytes::from(raw)).is_err());

    set_producer(&mut blob[first.clone()], 77_000, 4, 1234).unwrap();
    assert!(crc_is_valid(&blob[first.clone()]));
    let view = BatchView::new(&blob[first]).unwrap();
    assert_eq!(
        (
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence()
        ),
        (77_000, 4, 1234)
    );
    let records = decode(&blob);
    assert_eq!(records[0].producer_id, 77_000);
    assert_eq!(records[0].producer_epoch, 4);
    assert_eq!(
        records[1].sequence, 1235,
        "record sequences follow the base sequence"
    );
    assert_eq!(records[3].producer_id, 2000, "the other batch is untouched");
}

#[test]
fn truncated_tail_is_a_partial_item() {
    let blob = two_batches();
    let first_len = wholes(&blob)[0].range().end;
    for cut in [first_len + 1, first_len + 12, blob.len() - 1] {
        let items: Vec<_> = batches(&blob[..cut]).collect();
        assert_eq!(items.len(), 2, "cut at {cut}");
        assert!(matches!(items[0], Ok(Batch::Whole(_))));
        assert_eq!(
            items[1],
            Ok(Batch::Partial {
                offset: first_len,
                available: cut - first_len
            })
        );
    }
    assert_eq!(batches(&blob[..first_len]).count(), 1);
    assert_eq!(batches(&[]).count(), 0);
    assert!(set_producer(&mut blob[..first_len - 1].to_vec(), 1, 1, 1).is_err());
    assert!(!crc_is_valid(&blob[..first_len - 1]));
}

#[test]
fn old_magic_and_short_lengths_are_errors_that_end_iteration() {
    let mut blob = two_batches();
    blob[16] = 1;
    let items: Vec<_> = batches(&blob).collect();
    assert_eq!(
        items,
        vec![Err(FrameError::UnsupportedMagic {
            magic: 1,
            offset: 0
        })]
    );
    assert_eq!(
        items[0].as_ref().unwrap_err().to_string(),
        "record batch at byte 0 has magic 1; only v2 batches are supported"
    );

    let mut blob = two_batches();
    blob[8..12].copy_from_slice(&48i32.to_be_bytes());
    assert!(matches!(
        batches(&blob).next(),
        Some(Err(FrameError::Malformed { offset: 8, .. }))
    ));
    assert!(!crc_is_valid(&blob));
}

/// Regenerates the seed corpora in `fuzz/corpus/kafka_*` from real encodings:
/// `cargo test -p cutover-kafka --test batches -- --ignored write_seed_corpora`.
#[test]
fn seed_corpora_match_current_encodings() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/kafka_batches");
    std::fs::create_dir_all(&dir).unwrap();
    let blob = two_batches();
    let first_len = wholes(&blob)[0].range().end;
    let mut old_magic = blob.clone();
    old_magic[16] = 1;
    let mut short_len = blob.clone();
    short_len[8..12].copy_from_slice(&48i32.to_be_bytes());
    let mut huge_len = blob[..first_len].to_vec();
    huge_len[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut negative_len = blob[..first_len].to_vec();
    negative_len[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    let mut bad_crc = blob.clone();
    bad_crc[30] ^= 0xff;
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("two_batches", blob.clone()),
        ("one_batch", blob[..first_len].to_vec()),
        ("partial_tail", blob[..blob.len() - 7].to_vec()),
        ("partial_log_overhead", blob[..first_len + 10].to_vec()),
        ("only_header", blob[..61].to_vec()),
        ("old_magic", old_magic),
        ("short_batch_length", short_len),
        ("huge_batch_length", huge_len),
        ("negative_batch_length", negative_len),
        ("bad_crc", bad_crc),
        ("empty", Vec::new()),
        ("twelve_zero_bytes", vec![0; 12]),
    ];
    for (name, data) in seeds {
        seeds::check_or_write(dir.join(name), data);
    }
}
