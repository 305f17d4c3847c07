//! Responses the proxy must change before a client sees them: those that
//! carry broker addresses (Metadata, FindCoordinator, DescribeCluster) get
//! the proxy's advertised host and the door port of each node, and
//! ApiVersions is intersected with [`super::versions::SUPPORTED`].
//! Every other response is forwarded as the broker sent it.
//!
//! Pure functions over frames, so every rule is unit-tested without sockets;
//! the session supplies `port_of`, which may open a listener for a broker it
//! has not seen yet.

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, DescribeClusterResponse, FindCoordinatorResponse,
    MetadataResponse, api_versions_response::ApiVersion,
};
use cutover_kafka::kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use cutover_kafka::{
    FrameError, VersionRow, decode_response_body, encode_response, intersect_api_versions,
    response_correlation_id, response_header_version,
};

use super::brokers::BrokerError;
use super::versions::SUPPORTED;

/// A response could not be rewritten; the client connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// The broker's response did not decode or re-encode.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// A broker it names cannot be advertised.
    #[error("{0}")]
    Broker(#[from] BrokerError),
}

/// Whether responses to `key` go through [`rewrite`].
#[must_use]
pub fn needs_rewrite(key: ApiKey) -> bool {
    matches!(
        key,
        ApiKey::ApiVersions | ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster
    )
}

/// A rewritten response and what it taught the proxy.
#[derive(Debug)]
pub struct Rewritten {
    /// The frame to send to the client.
    pub frame: Bytes,
    /// Topics a Metadata response listed without error (internal topics excluded).
    pub topics: Vec<String>,
}

/// Error code a broker answers an ApiVersions request of a version it does not know.
const UNSUPPORTED_VERSION: i16 = 35;
/// Offset of an ApiVersions response's error code: prefix, correlation id
/// (its header is always v0).
const API_VERSIONS_ERROR_AT: usize = 8;

/// Rewrites the response `frame` to a `key` request at `version`.
/// `port_of(node_id, upstream_host, upstream_port)` gives the proxy port
/// advertised for a broker.
///
/// # Errors
/// [`RewriteError`] when the response does not decode at the request's
/// version or a broker cannot be advertised.
pub fn rewrite(
    frame: &Bytes,
    key: ApiKey,
    version: i16,
    host: &str,
    port_of: &mut dyn FnMut(i32, &str, i32) -> Result<u16, BrokerError>,
) -> Result<Rewritten, RewriteError> {
    let unchanged = || Rewritten {
        frame: frame.clone(),
        topics: Vec::new(),
    };
    let advertised = StrBytes::from_string(host.to_owned());
    match key {
        ApiKey::ApiVersions => {
            // A broker answering a version it does not know replies in v0
            // form with UNSUPPORTED_VERSION (KIP-511); the client only reads
            // the ApiVersions row from it and asks again, and that second
            // answer is intersected.
            let code = frame
                .get(API_VERSIONS_ERROR_AT..API_VERSIONS_ERROR_AT + 2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]));
            if code == Some(UNSUPPORTED_VERSION) {
                return Ok(unchanged());
            }
            let mut body: ApiVersionsResponse = decode(frame, key, version)?;
            let upstream: Vec<VersionRow> = body
                .api_keys
                .iter()
                .map(|a| (a.api_key, a.min_version, a.max_version))
                .collect();
            body.api_keys = intersect_api_versions(&upstream, SUPPORTED)
                .into_iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(k)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect();
            encode(frame, key, version, &body, Vec::new())
        }
        ApiKey::Metadata => {
            let mut body: MetadataResponse = decode(frame, key, version)?;
            for broker in &mut body.brokers {
                let port = port_of(broker.node_id.0, &broker.host, broker.port)?;
                broker.host = advertised.clone();
                broker.port = i32::from(port);
            }
            let topics = body
                .topics
                .iter()
                .filter(|t| t.error_code == 0 && !t.is_internal)
                .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
                .collect();
            encode(frame, key, version, &body, topics)
        }
        ApiKey::FindCoordinator => {
            let mut body: FindCoordinatorResponse = decode(frame, key, version)?;
            // v0-3 answer one coordinator in top-level fields, v4+ a list
            // (one per key); an error leaves node id -1 and no address.
            if version <= 3 && body.node_id.0 >= 0 {
                let port = port_of(body.node_id.0, &body.host, body.port)?;
                body.host = advertised.clone();
                body.port = i32::from(port);
            }
            for c in body.coordinators.iter_mut().filter(|c| c.node_id.0 >= 0) {
                let port = port_of(c.node_id.0, &c.host, c.port)?;
                c.host = advertised.clone();
                c.port = i32::from(port);
            }
            encode(frame, key, version, &body, Vec::new())
        }
        ApiKey::DescribeCluster => {
            let mut body: DescribeClusterResponse = decode(frame, key, version)?;
            for b in &mut body.brokers {
                let port = port_of(b.broker_id.0, &b.host, b.port)?;
                b.host = advertised.clone();
                b.port = i32::from(port);
            }
            encode(frame, key, version, &body, Vec::new())
        }
        _ => Ok(unchanged()),
    }
}

fn decode<T: Decodable>(frame: &Bytes, key: ApiKey, version: i16) -> Result<T, FrameError> {
    decode_response_body(frame, key as i16, version)
}

fn encode<T: Encodable>(
    frame: &Bytes,
    key: ApiKey,
    version: i16,
    body: &T,
    topics: Vec<String>,
) -> Result<Rewritten, RewriteError> {
    // Pairing is 1:1, so the broker's correlation id is the client's own.
    let correlation_id = response_correlation_id(frame).unwrap_or(-1);
    let header_version = response_header_version(key as i16, version).unwrap_or(0);
    let frame = encode_response(correlation_id, header_version, version, body)?;
    Ok(Rewritten { frame, topics })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::{
        BrokerId, TopicName,
        describe_cluster_response::DescribeClusterBroker,
        find_coordinator_response::Coordinator,
        metadata_response::{MetadataResponseBroker, MetadataResponseTopic},
    };

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let hv = response_header_version(key as i16, version).unwrap();
        encode_response(42, hv, version, body).unwrap()
    }

    /// Node n → port 9000 + n, recording what was asked.
    fn ports(
        seen: &mut Vec<(i32, String, i32)>,
    ) -> impl FnMut(i32, &str, i32) -> Result<u16, BrokerError> + '_ {
        move |node, host, port| {
            seen.push((node, host.to_owned(), port));
            Ok(9000 + u16::try_from(node).unwrap())
        }
    }

    #[test]
    fn metadata_brokers_get_proxy_addresses_at_every_version() {
        for version in 0..=12 {
            let body = MetadataResponse::default()
                .with_brokers(vec![
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(s("kafka-1.internal"))
                        .with_port(9092),
                    MetadataResponseBroker::default()
                        .with_node_id(BrokerId(2))
                        .with_host(s("kafka-2.internal"))
                        .with_port(9093),
                ])
                .with_topics(vec![
                    MetadataResponseTopic::default().with_name(Some(TopicName(s("orders")))),
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(s("__consumer_offsets"))))
                        .with_is_internal(version >= 1),
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(s("missing"))))
                        .with_error_code(3),
                ]);
            let mut seen = Vec::new();
            let out = rewrite(
                &frame(ApiKey::Metadata, version, &body),
                ApiKey::Metadata,
                version,
                "proxy.local",
                &mut ports(&mut seen),
            )
            .unwrap();
            assert_eq!(response_correlation_id(&out.frame), Some(42));
            let back: MetadataResponse =
                decode_response_body(&out.frame, ApiKey::Metadata as i16, version).unwrap();
            let addrs: Vec<_> = back
                .brokers
                .iter()
                .map(|b| (b.node_id.0, b.host.to_string(), b.port))
                .collect();
            assert_eq!(
                addrs,
                [
                    (1, "proxy.local".into(), 9001),
                    (2, "proxy.local".into(), 9002)
                ],
                "v{version}"
            );
            assert_eq!(seen[0], (1, "kafka-1.internal".into(), 9092));
            let expected: &[&str] = if version >= 1 {
                &["orders"]
            } else {
                &["orders", "__consumer_offsets"]
            };
            assert_eq!(out.topics, expected, "v{version}");
        }
    }

    #[test]
    fn find_coordinator_single_and_list_forms() {
        for version in 0..=6 {
            let body = if version <= 3 {
                FindCoordinatorResponse::default()
                    .with_node_id(BrokerId(3))
                    .with_host(s("k3"))
                    .with_port(1)
            } else {
                FindCoordinatorResponse::default().with_coordinators(vec![
                    Coordinator::default()
                        .with_key(s("group"))
                        .with_node_id(BrokerId(3))
                        .with_host(s("k3"))
                        .with_port(1),
                    Coordinator::default()
                        .with_key(s("gone"))
                        .with_node_id(BrokerId(-1))
                        .with_error_code(15),
                ])
            };
            let mut seen = Vec::new();
            let out = rewrite(
                &frame(ApiKey::FindCoordinator, version, &body),
                ApiKey::FindCoordinator,
                version,
                "p",
                &mut ports(&mut seen),
            )
            .unwrap();
            let back: FindCoordinatorResponse =
                decode_response_body(&out.frame, ApiKey::FindCoordinator as i16, version).unwrap();
            if version <= 3 {
                assert_eq!((back.host.as_str(), back.port), ("p", 9003));
            } else {
                let c = &back.coordinators;
                assert_eq!((c[0].host.as_str(), c[0].port), ("p", 9003));
                assert_eq!(
                    (c[1].node_id.0, c[1].host.as_str()),
                    (-1, ""),
                    "errors untouched"
                );
            }
            assert_eq!(seen.len(), 1, "v{version}: only the live coordinator");
        }
    }

    #[test]
    fn find_coordinator_error_is_left_alone() {
        let body = FindCoordinatorResponse::default()
            .with_error_code(15)
            .with_node_id(BrokerId(-1))
            .with_port(-1);
        let mut seen = Vec::new();
        rewrite(
            &frame(ApiKey::FindCoordinator, 2, &body),
            ApiKey::FindCoordinator,
            2,
            "p",
            &mut ports(&mut seen),
        )
        .unwrap();
        assert!(seen.is_empty());
    }

    #[test]
    fn describe_cluster_brokers_are_rewritten() {
        for version in 0..=2 {
            let body = DescribeClusterResponse::default().with_brokers(vec![
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(5))
                    .with_host(s("k5"))
                    .with_port(7),
            ]);
            let mut seen = Vec::new();
            let out = rewrite(
                &frame(ApiKey::DescribeCluster, version, &body),
                ApiKey::DescribeCluster,
                version,
                "p",
                &mut ports(&mut seen),
            )
            .unwrap();
            let back: DescribeClusterResponse =
                decode_response_body(&out.frame, ApiKey::DescribeCluster as i16, version).unwrap();
            assert_eq!(
                (back.brokers[0].host.as_str(), back.brokers[0].port),
                ("p", 9005)
            );
        }
    }

    #[test]
    fn api_versions_are_intersected_and_errors_pass() {
        let body = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(0)
                .with_min_version(0)
                .with_max_version(13),
            ApiVersion::default()
                .with_api_key(3)
                .with_min_version(0)
                .with_max_version(13),
            ApiVersion::default()
                .with_api_key(75)
                .with_min_version(0)
                .with_max_version(0),
        ]);
        let out = rewrite(
            &frame(ApiKey::ApiVersions, 3, &body),
            ApiKey::ApiVersions,
            3,
            "p",
            &mut |_, _, _| unreachable!(),
        )
        .unwrap();
        let back: ApiVersionsResponse =
            decode_response_body(&out.frame, ApiKey::ApiVersions as i16, 3).unwrap();
        let rows: Vec<_> = back
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        assert_eq!(rows, [(0, 3, 12), (3, 0, 9)]);

        let error = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION);
        let wire = frame(ApiKey::ApiVersions, 0, &error);
        let out = rewrite(
            &wire,
            ApiKey::ApiVersions,
            4,
            "p",
            &mut |_, _, _| unreachable!(),
        )
        .unwrap();
        assert_eq!(
            out.frame, wire,
            "an UNSUPPORTED_VERSION answer passes as sent"
        );
    }

    #[test]
    fn a_full_broker_map_fails_the_rewrite() {
        let body = MetadataResponse::default().with_brokers(vec![
            MetadataResponseBroker::default().with_node_id(BrokerId(1)),
        ]);
        let err = rewrite(
            &frame(ApiKey::Metadata, 9, &body),
            ApiKey::Metadata,
            9,
            "p",
            &mut |node_id, _, _| Err(BrokerError::Full { node_id, max: 0 }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("broker 1 cannot be advertised"));
    }

    #[test]
    fn garbage_responses_are_errors() {
        let wire = Bytes::from_static(&[0, 0, 0, 6, 0, 0, 0, 1, 0xff, 0xff]);
        let err = rewrite(&wire, ApiKey::Metadata, 9, "p", &mut |_, _, _| Ok(1)).unwrap_err();
        assert!(matches!(err, RewriteError::Frame(_)), "{err}");
    }
}
