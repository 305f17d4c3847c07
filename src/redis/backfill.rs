//! Backfill (stub while the session is brought up).
use super::keyspace::Keyspace;
use super::shared::Shared;
use crate::migration::CheckResult;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
/// Readiness checks.
pub async fn readiness(_shared: &Shared, _keyspace: &Keyspace) -> Vec<CheckResult> {
    Vec::new()
}
/// Status.
pub fn status(_shared: &Shared, _keyspace: &Keyspace) -> Option<serde_json::Value> {
    None
}
/// Resume.
pub async fn resume(_shared: &Arc<Shared>, _token: &CancellationToken) {}
