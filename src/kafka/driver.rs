//! What `ctl check/advance/rollback` runs for a Kafka topic in this build.
//!
//! `source → dual_read` needs the target to answer ApiVersions with the
//! APIs the proxy will use on it (`target_reachable`). Further states move
//! writes and need the per-partition offset splice, which this build does
//! not have: `offset_splice_available` fails with that reason (an operator
//! may still `--force`, knowing traffic keeps going to the source).
//! Rollbacks need no checks.

use std::sync::Arc;

use async_trait::async_trait;
use cutover_kafka::kafka_protocol::messages::ApiKey;

use super::Shared;
use super::probe;
use super::versions::SUPPORTED;
use crate::migration::{CheckResult, Driver, State};

/// APIs the target must offer, within the proxy's versions, before clients'
/// reads may involve it.
const TARGET_NEEDS: &[ApiKey] = &[
    ApiKey::Metadata,
    ApiKey::Produce,
    ApiKey::Fetch,
    ApiKey::ListOffsets,
    ApiKey::CreateTopics,
    ApiKey::DescribeConfigs,
];

/// The Kafka driver.
pub struct KafkaDriver {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KafkaDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDriver")
            .field("migration", &self.shared.migration.name)
            .finish_non_exhaustive()
    }
}

impl KafkaDriver {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        KafkaDriver { shared }
    }

    async fn target_reachable(&self) -> CheckResult {
        const NAME: &str = "target_reachable";
        let target = &self.shared.target;
        let answer =
            probe::api_versions(target, self.shared.connect_timeout, self.shared.max_frame).await;
        let response = match answer {
            Ok(r) if r.error_code == 0 => r,
            Ok(r) => {
                return CheckResult::fail(
                    NAME,
                    format!(
                        "cluster \"{}\" answered ApiVersions with error code {}",
                        target.cluster, r.error_code
                    ),
                );
            }
            Err(e) => return CheckResult::fail(NAME, e.to_string()),
        };
        let missing: Vec<String> = TARGET_NEEDS
            .iter()
            .filter(|&&key| {
                let Some(&(_, min, max)) = SUPPORTED.iter().find(|r| r.0 == key as i16) else {
                    return true;
                };
                !response.api_keys.iter().any(|a| {
                    a.api_key == key as i16 && a.min_version <= max && min <= a.max_version
                })
            })
            .map(|key| format!("{key:?}"))
            .collect();
        if missing.is_empty() {
            CheckResult::pass(
                NAME,
                format!(
                    "cluster \"{}\" answers ApiVersions with every API the proxy needs ({} keys offered)",
                    target.cluster,
                    response.api_keys.len()
                ),
            )
        } else {
            CheckResult::fail(
                NAME,
                format!(
                    "cluster \"{}\" lacks, at the proxy's versions: {}",
                    target.cluster,
                    missing.join(", ")
                ),
            )
        }
    }
}

#[async_trait]
impl Driver for KafkaDriver {
    async fn checks(&self, _topic: &str, from: State, to: State) -> Vec<CheckResult> {
        if to <= from {
            return Vec::new();
        }
        match to {
            State::DualRead => vec![self.target_reachable().await],
            _ => vec![CheckResult::fail(
                "offset_splice_available",
                format!(
                    "this build routes every Kafka request to the source; {to} moves writes and needs the per-partition offset splice, which is not built yet"
                ),
            )],
        }
    }
}
