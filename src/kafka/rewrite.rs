//! Answers the proxy changes before a client sees them because they name
//! brokers or versions: ApiVersions is intersected with
//! [`super::versions::SUPPORTED`], and FindCoordinator and DescribeCluster
//! name virtual brokers instead of real ones (Metadata is built whole, in
//! `metadata`). Pure functions over decoded bodies, unit-tested without
//! sockets.

use bytes::Bytes;
use cutover_kafka::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, DescribeClusterResponse, FindCoordinatorResponse,
    api_versions_response::ApiVersion, describe_cluster_response::DescribeClusterBroker,
};
use cutover_kafka::kafka_protocol::protocol::{Encodable, StrBytes};
use cutover_kafka::{
    FrameError, VersionRow, decode_response_body, encode_response, intersect_api_versions,
    response_header_version,
};

use super::brokers::VirtualBrokers;
use super::cluster::CoordinatorKind;
use super::versions::SUPPORTED;

/// Error code a broker answers an ApiVersions request of a version it does not know.
const UNSUPPORTED_VERSION: i16 = 35;
/// Offset of an ApiVersions response's error code: prefix, correlation id
/// (its header is always v0).
const API_VERSIONS_ERROR_AT: usize = 8;

/// The client's ApiVersions answer: the broker's rows intersected with
/// what the proxy implements and, when known, with the `target`'s rows
/// (a key the target lacks is dropped), under `correlation_id`.
///
/// A broker answering a version it does not know replies in v0 form with
/// UNSUPPORTED_VERSION (KIP-511); the client only reads the ApiVersions row
/// from it and asks again, so that answer passes as sent (`None`).
///
/// # Errors
/// When the broker's answer does not decode.
pub(super) fn api_versions(
    frame: &Bytes,
    version: i16,
    correlation_id: i32,
    target: Option<&[VersionRow]>,
) -> Result<Option<Bytes>, FrameError> {
    let code = frame
        .get(API_VERSIONS_ERROR_AT..API_VERSIONS_ERROR_AT + 2)
        .map(|b| i16::from_be_bytes([b[0], b[1]]));
    if code == Some(UNSUPPORTED_VERSION) {
        return Ok(None);
    }
    let mut body: ApiVersionsResponse =
        decode_response_body(frame, ApiKey::ApiVersions as i16, version)?;
    let upstream: Vec<VersionRow> = body
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.min_version, a.max_version))
        .collect();
    let mut offered = intersect_api_versions(&upstream, SUPPORTED);
    if let Some(target) = target {
        offered = intersect_api_versions(&offered, target);
    }
    body.api_keys = offered
        .into_iter()
        .map(|(k, min, max)| {
            ApiVersion::default()
                .with_api_key(k)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    encode(ApiKey::ApiVersions, version, correlation_id, &body).map(Some)
}

/// The proxy's own answer to an ApiVersions request above the versions
/// it serves: UNSUPPORTED_VERSION in v0 form listing the ApiVersions
/// versions it does serve; `None` for a version it serves.
///
/// # Errors
/// When the answer cannot be encoded (never for v0).
pub(super) fn api_versions_too_new(
    version: i16,
    correlation_id: i32,
) -> Option<Result<Bytes, FrameError>> {
    let &(_, min, max) = SUPPORTED
        .iter()
        .find(|row| row.0 == ApiKey::ApiVersions as i16)?;
    if version <= max {
        return None;
    }
    let body = ApiVersionsResponse::default()
        .with_error_code(UNSUPPORTED_VERSION)
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(ApiKey::ApiVersions as i16)
                .with_min_version(min)
                .with_max_version(max),
        ]);
    Some(encode_response(correlation_id, 0, 0, &body))
}

/// What a FindCoordinator request asked: the key kind, and in v0-3 the key
/// (those answers do not repeat it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Asked {
    /// Group or transaction.
    pub(super) kind: CoordinatorKind,
    /// The single key of a v0-3 request.
    pub(super) key: Option<String>,
}

/// The client's FindCoordinator answer: each live coordinator is passed
/// to `remember(kind, key, "host:port")` and replaced by the key's virtual
/// coordinator; errors pass untouched.
///
/// # Errors
/// When the answer cannot be encoded at `version`.
pub(super) fn find_coordinator(
    mut body: FindCoordinatorResponse,
    version: i16,
    correlation_id: i32,
    asked: &Asked,
    host: &str,
    brokers: &VirtualBrokers,
    remember: &mut dyn FnMut(CoordinatorKind, &str, String),
) -> Result<Bytes, FrameError> {
    let advertised = StrBytes::from_string(host.to_owned());
    let mut door = |key: &str, real_host: &str, real_port: i32| {
        remember(asked.kind, key, format!("{real_host}:{real_port}"));
        let node = brokers.coordinator_of(key);
        (node, i32::from(brokers.port(node).unwrap_or(0)))
    };
    if version <= 3
        && let Some(key) = &asked.key
        && body.node_id.0 >= 0
    {
        let (node, port) = door(key, &body.host, body.port);
        body.node_id = BrokerId(node);
        body.host = advertised.clone();
        body.port = port;
    }
    for c in body.coordinators.iter_mut().filter(|c| c.node_id.0 >= 0) {
        let (node, port) = door(&c.key, &c.host, c.port);
        c.node_id = BrokerId(node);
        c.host = advertised.clone();
        c.port = port;
    }
    encode(ApiKey::FindCoordinator, version, correlation_id, &body)
}

/// The client's DescribeCluster answer: the virtual brokers, the first as
/// controller.
///
/// # Errors
/// When the answer cannot be encoded at `version`.
pub(super) fn describe_cluster(
    mut body: DescribeClusterResponse,
    version: i16,
    correlation_id: i32,
    host: &str,
    brokers: &VirtualBrokers,
) -> Result<Bytes, FrameError> {
    if body.error_code == 0 {
        body.controller_id = BrokerId(0);
        body.brokers = brokers
            .nodes()
            .map(|(node, port)| {
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(node))
                    .with_host(StrBytes::from_string(host.to_owned()))
                    .with_port(i32::from(port))
            })
            .collect();
    }
    encode(ApiKey::DescribeCluster, version, correlation_id, &body)
}

/// Encodes a response body as a whole frame for the client.
///
/// # Errors
/// When kafka-protocol cannot encode `body` at `version`.
pub(super) fn encode<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<Bytes, FrameError> {
    let header_version = response_header_version(key as i16, version).unwrap_or(0);
    encode_response(correlation_id, header_version, version, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cutover_kafka::kafka_protocol::messages::find_coordinator_response::Coordinator;
    use cutover_kafka::response_correlation_id;

    fn s(v: &str) -> StrBytes {
        StrBytes::from_string(v.to_owned())
    }

    fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        encode(key, version, 42, body).unwrap()
    }

    const VB: VirtualBrokers = VirtualBrokers::new(9000, 3);

    #[test]
    fn find_coordinator_single_and_list_forms_name_virtual_brokers() {
        let node = VB.coordinator_of("group");
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
            let asked = Asked {
                kind: CoordinatorKind::Group,
                key: (version <= 3).then(|| "group".to_owned()),
            };
            let mut seen = Vec::new();
            let out = find_coordinator(body, version, 7, &asked, "p", &VB, &mut |k, key, a| {
                seen.push((k, key.to_owned(), a));
            })
            .unwrap();
            assert_eq!(response_correlation_id(&out), Some(7));
            let back: FindCoordinatorResponse =
                decode_response_body(&out, ApiKey::FindCoordinator as i16, version).unwrap();
            let expected = ("p", 9000 + node, node);
            if version <= 3 {
                assert_eq!((back.host.as_str(), back.port, back.node_id.0), expected);
            } else {
                let c = &back.coordinators;
                assert_eq!((c[0].host.as_str(), c[0].port, c[0].node_id.0), expected);
                assert_eq!(
                    (c[1].node_id.0, c[1].host.as_str()),
                    (-1, ""),
                    "errors untouched"
                );
            }
            assert_eq!(
                seen,
                [(CoordinatorKind::Group, "group".into(), "k3:1".into())]
            );
        }
    }

    #[test]
    fn describe_cluster_lists_the_virtual_brokers() {
        for version in 0..=2 {
            let body = DescribeClusterResponse::default()
                .with_controller_id(BrokerId(5))
                .with_brokers(vec![
                    DescribeClusterBroker::default()
                        .with_broker_id(BrokerId(5))
                        .with_host(s("k5"))
                        .with_port(7),
                ]);
            let out = describe_cluster(body, version, 1, "p", &VB).unwrap();
            let back: DescribeClusterResponse =
                decode_response_body(&out, ApiKey::DescribeCluster as i16, version).unwrap();
            let brokers: Vec<_> = back
                .brokers
                .iter()
                .map(|b| (b.broker_id.0, b.host.to_string(), b.port))
                .collect();
            assert_eq!(
                brokers,
                [
                    (0, "p".into(), 9000),
                    (1, "p".into(), 9001),
                    (2, "p".into(), 9002)
                ]
            );
            assert_eq!(back.controller_id.0, 0);
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
        let out = api_versions(&frame(ApiKey::ApiVersions, 3, &body), 3, 9, None)
            .unwrap()
            .unwrap();
        assert_eq!(response_correlation_id(&out), Some(9));
        let back: ApiVersionsResponse =
            decode_response_body(&out, ApiKey::ApiVersions as i16, 3).unwrap();
        let rows: Vec<_> = back
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        assert_eq!(rows, [(0, 3, 12), (3, 0, 9)]);

        // An older target narrows Produce and lacks key 3 altogether.
        let target = [(0, 0, 9), (75, 0, 0)];
        let out = api_versions(&frame(ApiKey::ApiVersions, 3, &body), 3, 9, Some(&target))
            .unwrap()
            .unwrap();
        let back: ApiVersionsResponse =
            decode_response_body(&out, ApiKey::ApiVersions as i16, 3).unwrap();
        let rows: Vec<_> = back
            .api_keys
            .iter()
            .map(|a| (a.api_key, a.min_version, a.max_version))
            .collect();
        assert_eq!(rows, [(0, 3, 9)]);

        let error = ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION);
        let wire = frame(ApiKey::ApiVersions, 0, &error);
        assert_eq!(api_versions(&wire, 4, 9, None).unwrap(), None);
    }

    #[test]
    fn garbage_answers_are_errors() {
        let wire = Bytes::from_static(&[0, 0, 0, 6, 0, 0, 0, 1, 0xff, 0xff]);
        assert!(api_versions(&wire, 3, 1, None).is_err());
    }
}
