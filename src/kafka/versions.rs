//! The API versions this proxy lets clients use, and the admission check
//! that keeps a client from using anything else. Every key listed is
//! either routed per partition or coordinator (and decoded where it must
//! be), or passes to the source relabelled; anything else is refused. The
//! rules that shape it:
//!
//! - **No topic ids reach clients.** Each cluster gives a topic its own
//!   UUID, so once the splice serves a partition from the target a client
//!   that had learnt the source's id would see the topic "recreated" or
//!   name a topic the target does not know. Produce/Fetch stop at v12 and
//!   OffsetCommit at v9 ([`cutover_kafka::TOPIC_ID_CAPS`]), Metadata at v9
//!   because v10+ *reports* ids; CreateTopics (v7 returns ids) and
//!   DeleteTopics (v6 deletes by id) likewise; DescribeTopicPartitions is
//!   left out. KIP-951 leader hints in Produce v10+ and Fetch v12+ answers
//!   name real brokers and are taken out (`hints`).
//! - **One group per request.** OffsetFetch stops at v7: v8+ batches
//!   groups, which may live on different coordinators.
//! - **No leader epochs.** Clients are shown epoch -1 (each cluster numbers
//!   its own), so OffsetForLeaderEpoch is not offered and clients skip
//!   epoch validation.
//! - **No per-connection state upstream.** One client connection fans out
//!   to several upstream connections, so SASL passthrough (which
//!   authenticates one connection) is not offered: clients log in to the
//!   proxy itself (`sasl::server`, before this table applies) and the
//!   proxy logs in to each cluster on every connection it opens.

use cutover_kafka::VersionRow;
use cutover_kafka::kafka_protocol::messages::ApiKey;

/// `(api_key, min, max)` the proxy offers; keys absent here are dropped from
/// ApiVersions responses and refused if a client sends them anyway.
pub const SUPPORTED: &[VersionRow] = &[
    (ApiKey::Produce as i16, 3, 12),
    (ApiKey::Fetch as i16, 4, 12),
    (ApiKey::ListOffsets as i16, 1, 10),
    (ApiKey::Metadata as i16, 0, 9),
    (ApiKey::OffsetCommit as i16, 2, 9),
    (ApiKey::OffsetFetch as i16, 1, 7),
    (ApiKey::FindCoordinator as i16, 0, 6),
    (ApiKey::JoinGroup as i16, 0, 9),
    (ApiKey::Heartbeat as i16, 0, 4),
    (ApiKey::LeaveGroup as i16, 0, 5),
    (ApiKey::SyncGroup as i16, 0, 5),
    (ApiKey::DescribeGroups as i16, 0, 6),
    (ApiKey::ListGroups as i16, 0, 5),
    (ApiKey::ApiVersions as i16, 0, 4),
    (ApiKey::CreateTopics as i16, 2, 6),
    (ApiKey::DeleteTopics as i16, 1, 5),
    (ApiKey::InitProducerId as i16, 0, 6),
    // v4+ is the broker-to-broker batch form; clients use v0-3.
    (ApiKey::AddPartitionsToTxn as i16, 0, 3),
    (ApiKey::AddOffsetsToTxn as i16, 0, 4),
    (ApiKey::EndTxn as i16, 0, 5),
    (ApiKey::TxnOffsetCommit as i16, 0, 5),
    (ApiKey::DescribeConfigs as i16, 1, 4),
    (ApiKey::AlterConfigs as i16, 0, 2),
    (ApiKey::CreatePartitions as i16, 0, 3),
    (ApiKey::DeleteGroups as i16, 0, 2),
    (ApiKey::IncrementalAlterConfigs as i16, 0, 1),
    (ApiKey::OffsetDelete as i16, 0, 0),
    (ApiKey::DescribeCluster as i16, 0, 2),
    // Answered by the proxy with a refusal that says why (groups.rs).
    (ApiKey::ConsumerGroupHeartbeat as i16, 0, 1),
    // Split per segment (`delete_records`).
    (ApiKey::DeleteRecords as i16, 0, 2),
];

/// Why a request may not pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refused {
    /// The key is known to kafka-protocol but not served by the proxy.
    #[error("API key {key:?} ({api_key}) is not served by the proxy")]
    Key {
        /// Enum form.
        key: ApiKey,
        /// Wire form.
        api_key: i16,
    },
    /// The version is outside what the proxy advertised.
    #[error("{key:?} v{version} is outside the versions the proxy advertised ({min}-{max})")]
    Version {
        /// Enum form.
        key: ApiKey,
        /// Version sent.
        version: i16,
        /// Lowest advertised.
        min: i16,
        /// Highest advertised.
        max: i16,
    },
}

/// Whether a client may send `key` at `version` through the proxy.
/// ApiVersions always passes: a client asking at a version the broker does
/// not know must get the broker's error answer (KIP-511), not a closed socket.
///
/// # Errors
/// [`Refused`] naming the key and, for versions, the advertised range.
pub(super) fn admit(key: ApiKey, version: i16) -> Result<(), Refused> {
    if key == ApiKey::ApiVersions {
        return Ok(());
    }
    let Some(&(_, min, max)) = SUPPORTED.iter().find(|row| row.0 == key as i16) else {
        return Err(Refused::Key {
            key,
            api_key: key as i16,
        });
    };
    if (min..=max).contains(&version) {
        Ok(())
    } else {
        Err(Refused::Version {
            key,
            version,
            min,
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::TOPIC_ID_CAPS;

    #[test]
    fn rows_are_within_kafka_protocol_and_topic_id_caps() {
        for &(key, min, max) in SUPPORTED {
            let range = ApiKey::try_from(key).unwrap().valid_versions();
            assert!(min <= max, "key {key}");
            assert!(
                range.min <= min && max <= range.max,
                "key {key}: {min}..{max} vs {range}"
            );
        }
        for &(key, _, cap) in TOPIC_ID_CAPS {
            let row = SUPPORTED.iter().find(|r| r.0 == key).unwrap();
            assert!(row.2 <= cap, "key {key} above its topic-id cap");
        }
        let metadata = SUPPORTED
            .iter()
            .find(|r| r.0 == ApiKey::Metadata as i16)
            .unwrap();
        assert_eq!(metadata.2, 9, "Metadata v10+ reports topic ids");
        assert!(
            !SUPPORTED
                .iter()
                .any(|r| r.0 == ApiKey::DescribeTopicPartitions as i16)
        );
    }

    #[test]
    fn admission_follows_the_table_except_api_versions() {
        assert!(admit(ApiKey::Produce, 12).is_ok());
        assert_eq!(
            admit(ApiKey::Produce, 13),
            Err(Refused::Version {
                key: ApiKey::Produce,
                version: 13,
                min: 3,
                max: 12
            })
        );
        assert!(admit(ApiKey::Metadata, 10).is_err());
        assert!(matches!(
            admit(ApiKey::DescribeTopicPartitions, 0),
            Err(Refused::Key { .. })
        ));
        assert!(admit(ApiKey::ApiVersions, 99).is_ok());
        assert_eq!(
            admit(ApiKey::Fetch, 13).unwrap_err().to_string(),
            "Fetch v13 is outside the versions the proxy advertised (4-12)"
        );
    }
}
