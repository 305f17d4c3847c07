//! Fuzz target: arbitrary bytes as a pipeline of client requests.
//!
//! `parse_request` must never panic, must consume nothing on an incomplete
//! request, and every parsed request must survive `lookup` + `keys`. The
//! checks live in `cutover_redis::selfcheck` so the corpus replay test
//! (`protocols/redis/tests/fuzz_corpus.rs`) runs exactly the same ones.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_redis::selfcheck::check_requests(data);
});
