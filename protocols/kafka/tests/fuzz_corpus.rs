//! Replays the checked-in fuzz corpora through the same invariant checks
//! the fuzz targets run, so CI catches regressions without fuzzing.

#[path = "../../corpus_replay.rs"]
mod corpus_replay;

use cutover_kafka::selfcheck::{check_batches, check_frames};

#[test]
fn frame_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "kafka_frame", check_frames);
}

#[test]
fn batch_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "kafka_batches", check_batches);
}
