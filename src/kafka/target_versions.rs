//! The target's API versions (and, for the answer the proxy gives before a
//! client has logged in, the source's), for the ApiVersions answer clients get: the
//! proxy's table ∩ the source's answer ∩ the target's, so a client never
//! negotiates a version one of the clusters would refuse once its
//! partitions move there (Kafka 4 removed old versions, KIP-896; an older
//! target lacks the newest).
//!
//! The source answers each client's ApiVersions itself; the target is
//! asked by the proxy, once, then again every [`REFRESH`] (an upgrade of
//! the target shows up without a restart). A target that cannot be asked
//! leaves the last rows it gave; never asked successfully, the answer is
//! the source's alone, and the proxy asks again after [`RETRY`], so a
//! target that is down does not hold up every client's handshake.

use std::sync::Arc;
use std::time::Duration;

use cutover_kafka::VersionRow;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::Shared;
use super::probe;

/// How long the target's rows are used before it is asked again.
const REFRESH: Duration = Duration::from_secs(300);
/// How long after a failed ask the target is asked again.
const RETRY: Duration = Duration::from_secs(10);
/// The longest a client's ApiVersions waits for the target.
const ASK_DEADLINE: Duration = Duration::from_secs(2);

/// The target's rows as last asked.
#[derive(Debug, Default)]
pub(super) struct TargetVersions {
    cached: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    rows: Option<Arc<Vec<VersionRow>>>,
    asked: Option<Instant>,
}

impl Cached {
    /// Whether the target should be asked (again) now.
    fn due(&self, now: Instant) -> bool {
        let wait = if self.rows.is_some() { REFRESH } else { RETRY };
        self.asked.is_none_or(|at| now.duration_since(at) >= wait)
    }
}

impl TargetVersions {
    /// The target's `(api_key, min, max)` rows, asked when due; `None`
    /// while the target has never answered.
    pub(super) async fn rows(&self, shared: &Shared) -> Option<Arc<Vec<VersionRow>>> {
        self.rows_of(shared, &shared.target).await
    }

    /// The same for `upstream` (the source, for the ApiVersions the proxy
    /// answers before a client has logged in).
    pub(super) async fn rows_of(
        &self,
        shared: &Shared,
        upstream: &crate::proxy::Upstream,
    ) -> Option<Arc<Vec<VersionRow>>> {
        let mut cached = self.cached.lock().await;
        let now = Instant::now();
        if cached.due(now) {
            cached.asked = Some(now);
            let deadline = shared.connect_timeout.min(ASK_DEADLINE);
            match probe::api_versions(upstream, deadline, shared.max_frame).await {
                Ok(answer) if answer.error_code == 0 => {
                    let rows = answer
                        .api_keys
                        .iter()
                        .map(|a| (a.api_key, a.min_version, a.max_version))
                        .collect();
                    cached.rows = Some(Arc::new(rows));
                }
                Ok(answer) => tracing::warn!(
                    migration = %shared.migration.name,
                    cluster = %upstream.cluster,
                    error = %super::retry::describe(answer.error_code),
                    "the cluster refused ApiVersions; clients are offered the other's versions"
                ),
                Err(e) => tracing::warn!(
                    migration = %shared.migration.name, cluster = %upstream.cluster, error = %e,
                    "the cluster did not answer ApiVersions; clients are offered the other's versions"
                ),
            }
        }
        cached.rows.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asked_at_once_then_on_refresh_or_retry() {
        let now = Instant::now();
        let mut c = Cached::default();
        assert!(c.due(now), "never asked");
        c.asked = Some(now);
        assert!(!c.due(now + RETRY / 2));
        assert!(c.due(now + RETRY), "failed: asked again soon");
        c.rows = Some(Arc::new(vec![(0, 3, 12)]));
        assert!(!c.due(now + RETRY));
        assert!(c.due(now + REFRESH));
    }
}
