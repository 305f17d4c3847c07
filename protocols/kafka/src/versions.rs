//! ApiVersions intersection: clients must only ever see versions that the
//! upstream broker and the proxy both implement, or a newer client (or
//! broker) breaks the proxy on the next Kafka release.

use kafka_protocol::messages::ApiKey;

/// One ApiVersions row: `(api_key, min_version, max_version)`.
pub type VersionRow = (i16, i16, i16);

/// Version caps where a higher version would make the proxy translate topic
/// IDs, which differ between the source and target clusters (each cluster
/// assigns its own UUID to a topic).
///
/// - Produce v13+ and Fetch v13+ name topics by ID instead of name;
/// - OffsetCommit v10+ and OffsetFetch v10+ (KIP-848) carry topic IDs, and
///   kafka-protocol 0.18's message types stop at v9 even though
///   `ApiKey::valid_versions` says 10.
///
/// Metadata v10+ only *reports* topic IDs; a client that later names a topic
/// by ID needs one of the capped APIs above, so Metadata is not capped.
pub const TOPIC_ID_CAPS: &[VersionRow] = &[
    (ApiKey::Produce as i16, 3, 12),
    (ApiKey::Fetch as i16, 4, 12),
    (ApiKey::OffsetCommit as i16, 2, 9),
    (ApiKey::OffsetFetch as i16, 1, 9),
];

/// Keeps only the API keys both sides support, each with the overlap
/// `[max(mins), min(maxes)]`; keys whose overlap is empty are dropped.
/// The result follows `upstream`'s order.
#[must_use]
pub fn intersect_api_versions(
    upstream: &[VersionRow],
    supported: &[VersionRow],
) -> Vec<VersionRow> {
    upstream
        .iter()
        .filter_map(|&(key, umin, umax)| {
            let &(_, smin, smax) = supported.iter().find(|row| row.0 == key)?;
            let (min, max) = (umin.max(smin), umax.min(smax));
            (min <= max).then_some((key, min, max))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_common_keys_with_the_overlap() {
        let upstream = [(0, 0, 11), (1, 4, 17), (3, 0, 13), (42, 0, 3), (9, 0, 1)];
        let supported = [(0, 3, 12), (1, 4, 12), (3, 0, 12), (9, 2, 9)];
        assert_eq!(
            intersect_api_versions(&upstream, &supported),
            vec![(0, 3, 11), (1, 4, 12), (3, 0, 12)]
        );
    }

    #[test]
    fn topic_id_caps_are_within_kafka_protocol_ranges() {
        for &(key, min, max) in TOPIC_ID_CAPS {
            let range = ApiKey::try_from(key).unwrap().valid_versions();
            assert!(min <= max, "key {key}");
            assert!(
                range.min <= min && max <= range.max,
                "key {key}: {min}..{max} vs {range}"
            );
        }
    }

    #[test]
    fn offset_commit_message_types_stop_below_api_key_range() {
        use kafka_protocol::messages::{OffsetCommitRequest, OffsetFetchRequest};
        use kafka_protocol::protocol::Message;
        // The pitfall TOPIC_ID_CAPS documents: do not trust valid_versions alone.
        assert_eq!(OffsetCommitRequest::VERSIONS.max, 9);
        assert_eq!(OffsetFetchRequest::VERSIONS.max, 9);
        assert_eq!(ApiKey::OffsetCommit.valid_versions().max, 10);
    }
}
