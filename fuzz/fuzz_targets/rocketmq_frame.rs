//! Fuzz target: arbitrary bytes as a stream of RocketMQ remoting frames.
//!
//! `next_frame` must never panic, consume nothing on an incomplete frame or
//! a framing error, and consume exactly one frame on a header error; every
//! decoded header must re-encode to itself in its own encoding and to what
//! the other encoding can carry. The checks live in
//! `cutover_rocketmq::selfcheck` so the corpus replay test
//! (`protocols/rocketmq/tests/fuzz_corpus.rs`) runs exactly the same ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_rocketmq::selfcheck::check_frames(data);
});
