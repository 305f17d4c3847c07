//! cutover: a wire-level migration proxy for Kafka, RocketMQ and Redis.
//!
//! `main.rs` is the composition root; this library exposes the pieces so
//! integration tests and benchmarks can drive them directly.

pub mod admin;
pub mod app;
pub mod config;
pub mod kafka;
pub mod metrics;
pub mod migration;
pub mod pattern;
pub mod proxy;
pub mod redis;
pub mod rocketmq;
pub mod telemetry;
