//! The live console's server side against a running proxy and real Redis
//! peers: the page is refused without the token on TCP (401, no data in
//! it) and served with it or over the Unix socket; `/api/v1/dashboard`
//! lists the topics and its rates, latency and client count move with
//! traffic; `/metrics` exports the Redis progress gauges the sampler sets.

#[path = "console/rig.rs"]
mod rig;
mod support;

use std::time::Duration;

use rig::{ConsoleRig, MIGRATION, TOKEN, Traffic};
use serde_json::Value;
use support::wait_until;

/// The sampler ticks every second; rates need two samples and a margin.
const RATE_DEADLINE: Duration = Duration::from_secs(15);

fn cluster<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["migrations"][0]["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {dashboard}"))
}

fn topic<'a>(dashboard: &'a Value, name: &str) -> &'a Value {
    dashboard["migrations"][0]["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no topic {name} in {dashboard}"))
}

#[test]
fn console_page_needs_the_token_on_tcp_only() {
    let rig = ConsoleRig::start("{ backfill_on_enter: false }");

    for path in ["/", "/console"] {
        let refused = rig.http("GET", path, None);
        assert_eq!(refused.status, 401, "GET {path} without token");
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
        assert!(refused.body.contains("<form id=\"login\""), "login form");
        assert!(!refused.body.contains(MIGRATION), "refused page leaks data");

        let wrong = rig.http("GET", path, Some("not-the-token"));
        assert_eq!(wrong.status, 401, "GET {path} with a wrong token");

        let page = rig.http("GET", path, Some(TOKEN));
        assert_eq!(page.status, 200, "GET {path} with token");
        assert!(
            page.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        let csp = page.header("content-security-policy").expect("CSP header");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(
            !page.body.contains("http://") && !page.body.contains("https://"),
            "no external URL in the page"
        );
    }
    let api = rig.http("GET", "/api/v1/dashboard", None);
    assert_eq!(api.status, 401);
    assert!(!api.body.contains(MIGRATION));

    let unix = rig.http_unix("/");
    assert_eq!(unix.status, 200, "the Unix socket needs no token");
    let unix = rig.http_unix("/api/v1/dashboard");
    assert_eq!(unix.status, 200);
    assert!(unix.body.contains(MIGRATION));
}

#[test]
fn dashboard_rates_move_with_traffic() {
    let rig = ConsoleRig::start("{ backfill_on_enter: false }");
    let first = rig.dashboard();
    let migration = &first["migrations"][0];
    assert_eq!(migration["name"], MIGRATION);
    assert_eq!(migration["served"], true);
    assert_eq!(topic(&first, "sessions")["state"], "source");
    assert_eq!(topic(&first, "rest")["state"], "source");
    assert_eq!(cluster(&first, "old")["role"], "source");
    assert_eq!(cluster(&first, "new")["role"], "target");
    assert!(topic(&first, "sessions")["details"]["copy_backlog"].is_u64());

    let traffic = Traffic::start(rig.port);
    let mut last = Value::Null;
    wait_until(
        RATE_DEADLINE,
        "request rate and latency on the source",
        || {
            last = rig.dashboard();
            let old = cluster(&last, "old");
            let sessions_split = &topic(&last, "sessions")["split"][0];
            old["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0
                && old["bytes_per_s"].as_f64().unwrap_or(0.0) > 0.0
                && old["p50_ms"].is_f64()
                && old["p99_ms"].is_f64()
                && sessions_split["cluster"] == "old"
                && sessions_split["requests_per_s"].as_f64().unwrap_or(0.0) > 0.0
                && last["migrations"][0]["clients"]["now"].as_f64() == Some(1.0)
        },
    );
    let old = cluster(&last, "old");
    let samples = old["series"]["requests"].as_array().expect("series");
    assert!(samples.len() >= 2 && samples.len() <= 120, "{samples:?}");
    assert_eq!(
        cluster(&last, "new")["requests_per_s"].as_f64(),
        Some(0.0),
        "nothing reaches the target in source"
    );
    drop(traffic);

    // A transition shows in the history, newest first.
    rig.ctl_ok(&["advance", MIGRATION, "sessions"]);
    let after = rig.dashboard();
    assert_eq!(topic(&after, "sessions")["state"], "dual_read");
    assert_eq!(topic(&after, "sessions")["epoch"], 1);
    let newest = &after["history"][0];
    assert_eq!(newest["topic"], "sessions");
    assert_eq!(newest["to"], "dual_read");

    // The sampler exports the Redis progress gauges.
    wait_until(RATE_DEADLINE, "Redis progress gauges on /metrics", || {
        let metrics = rig.http("GET", "/metrics", Some(TOKEN)).body;
        ["cutover_redis_copy_backlog", "cutover_redis_repair_set"]
            .iter()
            .all(|name| {
                metrics.contains(&format!(
                    "{name}{{migration=\"{MIGRATION}\",topic=\"sessions\"}} 0"
                ))
            })
    });
    rig.ctl_ok(&["advance", MIGRATION, "sessions"]);
    rig.ctl_ok(&["backfill", MIGRATION, "sessions"]);
    wait_until(RATE_DEADLINE, "backfill percent on /metrics", || {
        rig.http("GET", "/metrics", Some(TOKEN))
            .body
            .contains(&format!(
                "cutover_redis_backfill_percent{{migration=\"{MIGRATION}\",topic=\"sessions\"}} 100"
            ))
    });
}
