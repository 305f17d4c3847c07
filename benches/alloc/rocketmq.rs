//! RocketMQ rows of `alloc_per_request`: not measured yet (the RocketMQ
//! data-plane work fills this in with sync SEND_MESSAGE_V2 frames against
//! Apache RocketMQ 5.3.3).

use super::Row;

/// No rows yet.
pub fn run(_n: u64) -> Vec<Row> {
    println!("rocketmq: not measured yet");
    Vec::new()
}
