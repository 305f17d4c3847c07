//! Lifecycle of the real peers that black-box tests run against (DESIGN.md
//! §4): Redis, Apache Kafka, Apache RocketMQ, etcd and cutover's own binary, each on free
//! loopback ports, each killed on drop even when the test panics.
//!
//! Included by every integration test as `mod support;`, so each test binary
//! compiles its own copy and uses only part of it.
//!
//! Binaries are looked up in `$CUTOVER_PEERS/bin`, `$CUTOVER_PEERS/venv/bin`
//! (default `~/.cache/cutover-peers`, filled by `tests/peers/install.sh`), then
//! on `PATH`, so tests need no environment set up.
#![allow(dead_code, unused_imports)]

mod apache_kafka;
mod child;
mod cutover_process;
mod etcd;
mod kafka_client;
mod kafka_raw;
mod kafka_rig;
mod net;
mod redis_rig;
mod redis_server;
mod rocketmq;
pub mod tls;
mod wait;

use std::env;
use std::path::PathBuf;

pub use apache_kafka::{
    KAFKA_VERSION, KafkaCluster, SaslUsers, TOOL_DEADLINE, finish_java, kafka_home, kafka_tool,
    output_text, spawn_java,
};
pub use child::ChildGuard;
pub use cutover_process::{Config, CutoverProcess, cutover_bin};
pub use etcd::Etcd;
pub use kafka_client::{
    KAFKA_SCRIPT_DEADLINE, finish_client, finish_kafka_script, kafka_migration, kafka_python,
};
pub use kafka_raw::{RawKafka, record_batch};
pub use kafka_rig::KafkaRig;
pub use net::{free_port, free_port_block, http_get, tcp_accepts};
pub use redis_rig::{RawClient, RedisRig};
pub use redis_server::RedisServer;
pub use rocketmq::{
    ClientLib, RocketmqBroker, RocketmqClient, RocketmqCluster, RocketmqRig, create_topic_fields,
    read_frame, rocketmq_home, rocketmq_migration, rpc, shared_clusters,
};
pub use wait::{wait_until, wait_until_async};

/// Where `tests/peers/install.sh` puts what is not a Debian package.
pub fn peers_dir() -> PathBuf {
    if let Some(dir) = env::var_os("CUTOVER_PEERS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("cutover-peers")
}

/// Finds `name` in the peers' bin dirs, then on `PATH`.
pub fn find_bin(name: &str) -> Option<PathBuf> {
    let peers = peers_dir();
    let mut dirs = vec![peers.join("bin"), peers.join("venv").join("bin")];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Like [`find_bin`], but panics with the install command for `group`.
pub fn require_bin(name: &str, group: &str) -> PathBuf {
    find_bin(name)
        .unwrap_or_else(|| panic!("{name} is not installed: run tests/peers/install.sh {group}"))
}
