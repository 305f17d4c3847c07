//! Fuzz target: arbitrary bytes as a stream of Kafka request frames.
//!
//! `next_frame` must never panic and consume nothing on an incomplete
//! frame; every frame must survive `peek_request`, a correlation id rewrite
//! and a Metadata/Produce/Fetch body decode. The checks live in
//! `cutover_kafka::selfcheck` so the corpus replay test
//! (`protocols/kafka/tests/fuzz_corpus.rs`) runs exactly the same ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_kafka::selfcheck::check_frames(data);
});
