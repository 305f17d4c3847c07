//! Fuzz target: arbitrary bytes as a stream of upstream replies.
//!
//! Whenever `reply_len` reports a whole frame, `decode_reply` must not
//! panic on it, every strict prefix must be incomplete, and a resumed
//! `ReplyScanner` must agree. Checks shared with the corpus replay test via
//! `cutover_redis::selfcheck`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cutover_redis::selfcheck::check_replies(data);
});
