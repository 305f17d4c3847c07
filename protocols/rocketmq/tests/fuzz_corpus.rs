//! Replays the checked-in fuzz corpora through the same invariant checks
//! the fuzz targets run, so CI catches regressions without fuzzing.

#[path = "../../corpus_replay.rs"]
mod corpus_replay;

use cutover_rocketmq::selfcheck::{check_bodies, check_frames};

#[test]
fn frame_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "rocketmq_frame", check_frames);
}

#[test]
fn route_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "rocketmq_route", check_bodies);
}
