//! Route and cluster-info bodies: the legacy fastjson form (bare integer
//! keys) and standard JSON both parse to the same value; encoding writes
//! standard JSON that both Java (fastjson) and rocketmq-rust accept.

use cutover_rocketmq::{
    BrokerData, ClusterInfo, MASTER_ID, PERM_READ, PERM_WRITE, QueueData, TopicRouteData,
};

/// What a Java 4.x/5.x NameServer sends for GET_ROUTEINFO_BY_TOPIC with
/// fastjson defaults: `Long` keys unquoted.
const LEGACY_ROUTE: &str = r#"{"brokerDatas":[{"brokerAddrs":{0:"192.168.1.10:10911",1:"192.168.1.11:10911"},"brokerName":"broker-a","cluster":"DefaultCluster","enableActingMaster":false}],"filterServerTable":{},"queueDatas":[{"brokerName":"broker-a","perm":6,"readQueueNums":4,"topicSysFlag":0,"writeQueueNums":4}],"topicQueueMappingByBroker":{}}"#;

/// The same route as rocketmq-rust writes it (quoted keys, nulls, field
/// order of its structs).
const STANDARD_ROUTE: &str = r#"{"orderTopicConf":null,"queueDatas":[{"brokerName":"broker-a","readQueueNums":4,"writeQueueNums":4,"perm":6,"topicSysFlag":0}],"brokerDatas":[{"cluster":"DefaultCluster","brokerName":"broker-a","brokerAddrs":{"0":"192.168.1.10:10911","1":"192.168.1.11:10911"},"zoneName":null,"enableActingMaster":false}],"filterServerTable":{},"topicQueueMappingByBroker":{}}"#;

const LEGACY_CLUSTER: &str = r#"{"brokerAddrTable":{"broker-a":{"brokerAddrs":{0:"127.0.0.1:10911"},"brokerName":"broker-a","cluster":"c1","enableActingMaster":false},"broker-b":{"brokerAddrs":{0:"127.0.0.1:20911", 2 :"127.0.0.1:20912"},"brokerName":"broker-b","cluster":"c1","zoneName":"z1"}},"clusterAddrTable":{"c1":["broker-a","broker-b"]}}"#;

#[test]
fn legacy_and_standard_routes_parse_to_the_same_value() {
    let legacy = TopicRouteData::decode(LEGACY_ROUTE.as_bytes()).unwrap();
    let standard = TopicRouteData::decode(STANDARD_ROUTE.as_bytes()).unwrap();
    assert_eq!(legacy, standard);

    let b = legacy.broker("broker-a").unwrap();
    assert_eq!(b.master_addr(), Some("192.168.1.10:10911"));
    assert_eq!(b.broker_addrs[&1], "192.168.1.11:10911");
    assert_eq!(b.cluster, "DefaultCluster");
    let q = legacy.queue("broker-a").unwrap();
    assert_eq!(q.perm, PERM_READ | PERM_WRITE);
    assert_eq!((q.read_queue_nums, q.write_queue_nums), (4, 4));
    assert!(legacy.extra.contains_key("topicQueueMappingByBroker"));
}

#[test]
fn encode_writes_standard_json_with_fields_rust_peers_require() {
    let route = TopicRouteData::decode(LEGACY_ROUTE.as_bytes()).unwrap();
    let json = String::from_utf8(route.encode()).unwrap();
    assert!(json.contains(r#""brokerAddrs":{"0":"192.168.1.10:10911","1":"192.168.1.11:10911"}"#));
    assert!(json.contains(r#""filterServerTable":{}"#));
    assert!(json.contains(r#""enableActingMaster":false"#));
    assert!(
        json.contains(r#""topicQueueMappingByBroker":{}"#),
        "unknown fields kept"
    );
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(value.is_object(), "standard JSON");
    assert_eq!(TopicRouteData::decode(json.as_bytes()).unwrap(), route);
}

#[test]
fn a_built_route_round_trips_both_forms() {
    let mut route = TopicRouteData::default();
    route.queue_datas.push(QueueData {
        broker_name: "broker-a%target".into(),
        read_queue_nums: 8,
        write_queue_nums: 0,
        perm: PERM_READ,
        ..QueueData::default()
    });
    route.broker_datas.push(BrokerData {
        cluster: "target".into(),
        broker_name: "broker-a%target".into(),
        broker_addrs: [(MASTER_ID, "127.0.0.1:30911".to_owned())].into(),
        ..BrokerData::default()
    });
    let standard = route.encode();
    assert_eq!(TopicRouteData::decode(&standard).unwrap(), route);
    let legacy = String::from_utf8(standard)
        .unwrap()
        .replace(r#"{"0":"#, "{0:");
    assert!(legacy.contains("{0:\"127.0.0.1:30911\"}"));
    assert_eq!(TopicRouteData::decode(legacy.as_bytes()).unwrap(), route);
}

#[test]
fn legacy_cluster_info_round_trips() {
    let info = ClusterInfo::decode(LEGACY_CLUSTER.as_bytes()).unwrap();
    assert_eq!(info.broker_addr_table.len(), 2);
    let b = &info.broker_addr_table["broker-b"];
    assert_eq!(b.broker_addrs[&2], "127.0.0.1:20912");
    assert_eq!(b.zone_name.as_deref(), Some("z1"));
    assert_eq!(
        info.cluster_addr_table["c1"].iter().collect::<Vec<_>>(),
        ["broker-a", "broker-b"]
    );
    let json = info.encode();
    assert!(
        String::from_utf8_lossy(&json).contains(r#"{"0":"127.0.0.1:20911","2":"127.0.0.1:20912"}"#)
    );
    assert_eq!(ClusterInfo::decode(&json).unwrap(), info);
}

#[test]
fn nulls_and_missing_fields_default() {
    let info = ClusterInfo::decode(br#"{"brokerAddrTable":null,"clusterAddrTable":null}"#).unwrap();
    assert_eq!(info, ClusterInfo::default());
    let route = TopicRouteData::decode(br#"{"brokerDatas":[{"brokerAddrs":{0:null}}]}"#).unwrap();
    assert!(route.broker_datas[0].broker_addrs.is_empty());
    assert!(route.queue_datas.is_empty());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for bad in [
        &b""[..],
        b"{",
        b"[]",
        b"{\"queueDatas\":{}}",
        b"\xff\xfe",
        b"{0:1",
    ] {
        let err = TopicRouteData::decode(bad).unwrap_err();
        assert!(err.to_string().starts_with("malformed TopicRouteData body"));
    }
    for bad in [&b""[..], b"[]", b"{\"clusterAddrTable\":[]}", b"{0:1"] {
        assert!(ClusterInfo::decode(bad).is_err());
    }
}
