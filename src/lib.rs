//! cutover: a wire-level migration proxy for Kafka, RocketMQ and Redis.
//!
//! `main.rs` is the composition root; this library exposes the pieces so
//! integration tests and benchmarks can drive them directly.
//!
//! Modules, leaves first (each imports only those above it):
//! - [`pattern`], [`metrics`], [`telemetry`], [`credentials`]: leaves (glob
//!   patterns, the metric catalogue and recorder, logging, credential files);
//! - [`migration`]: the core (states, transitions, store, registry,
//!   controller), knowing no protocol, config format or metrics system;
//! - [`config`]: the YAML configuration and its validation;
//! - [`proxy`]: protocol-independent plumbing (listeners, TLS, upstreams,
//!   shutdown, what a restarted proxy remembers);
//! - [`redis`], [`kafka`], [`rocketmq`]: the protocol adapters, which never
//!   import each other;
//! - [`admin`]: the admin API, console and `ctl`;
//! - [`app`]: wires a config into running adapters, the admin API and the
//!   store.

pub mod admin;
pub mod app;
pub mod config;
pub mod credentials;
pub mod kafka;
pub mod metrics;
pub mod migration;
pub mod pattern;
pub mod proxy;
pub mod redis;
pub mod rocketmq;
pub mod telemetry;
