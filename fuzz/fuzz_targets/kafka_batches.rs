//! Fuzz target: arbitrary bytes as a `records` blob of v2 record batches.
//!
//! `batches` must never panic, whole batches must tile the blob, a partial
//! batch may only come last, and `set_base_offset` must leave every CRC
//! verdict unchanged. The checks live in `cutover_kafka::selfcheck` so the
//! corpus replay test (`protocols/kafka/tests/fuzz_corpus.rs`) runs exactly
//! the same ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_kafka::selfcheck::check_batches(data);
});
