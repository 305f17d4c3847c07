//! Replays the checked-in fuzz corpora through the same invariant checks
//! the fuzz targets run, so CI catches regressions without fuzzing.

#[path = "../../corpus_replay.rs"]
mod corpus_replay;

use cutover_redis::selfcheck::{check_replies, check_requests};

#[test]
fn request_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "redis_request", check_requests);
}

#[test]
fn reply_corpus_replays() {
    corpus_replay::replay(env!("CARGO_MANIFEST_DIR"), "redis_reply", check_replies);
}
