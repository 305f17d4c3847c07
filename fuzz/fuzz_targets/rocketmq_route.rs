//! Fuzz target: arbitrary bytes as a TopicRouteData or ClusterInfo body.
//!
//! Parsing (including the pre-pass that quotes fastjson's bare integer
//! keys) must never panic; whatever parses must re-encode to standard JSON
//! that parses back equal. The checks live in `cutover_rocketmq::selfcheck`
//! so the corpus replay test (`protocols/rocketmq/tests/fuzz_corpus.rs`)
//! runs exactly the same ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_rocketmq::selfcheck::check_bodies(data);
});
