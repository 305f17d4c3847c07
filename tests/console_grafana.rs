//! The Grafana dashboard in `config/dashboards/` (issue: dashboards) holds
//! the fields Grafana needs to import it, and every query in it — panel
//! targets, template variables, annotations — names only metrics that
//! `src/metrics.rs` catalogues, so a renamed metric cannot leave a blank
//! panel behind.

use std::collections::BTreeSet;

use cutover::metrics::{CATALOGUE, Kind};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../config/dashboards/cutover.json");

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("config/dashboards/cutover.json is JSON")
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels array") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every `cutover_*` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("cutover_") {
        let preceded_by_ident = rest[..at].chars().next_back().is_some_and(ident);
        let tail = &rest[at..];
        let len = tail.find(|c: char| !ident(c)).unwrap_or(tail.len());
        if !preceded_by_ident {
            names.push(tail[..len].to_owned());
        }
        rest = &tail[len..];
    }
    names
}

/// The catalogued metric a series name belongs to (histograms export
/// `_bucket`, `_sum` and `_count` series).
fn catalogued(series: &str) -> bool {
    CATALOGUE.iter().any(|def| {
        def.name == series
            || (def.kind == Kind::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series.strip_suffix(suffix) == Some(def.name)))
    })
}

/// Every PromQL expression the dashboard runs.
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push(expr.to_owned());
            }
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            exprs.push(query.to_owned());
        }
        if let Some(definition) = variable["definition"].as_str() {
            exprs.push(definition.to_owned());
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            exprs.push(expr.to_owned());
        }
    }
    exprs
}

#[test]
fn dashboard_has_the_fields_grafana_requires() {
    let d = dashboard();
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "title");
    assert!(
        d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40),
        "uid (≤ 40 chars)"
    );
    let schema = d["schemaVersion"]
        .as_u64()
        .expect("schemaVersion is a number");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(
        d["panels"].as_array().is_some_and(|p| !p.is_empty()),
        "panels"
    );

    let mut ids = BTreeSet::new();
    for panel in panels(&d) {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(panel["type"].is_string(), "{title}: type");
        let id = panel["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "{title}: duplicate panel id {id}");
        let grid = &panel["gridPos"];
        for key in ["x", "y", "w", "h"] {
            assert!(grid[key].is_u64(), "{title}: gridPos.{key}");
        }
        let right = grid["x"].as_u64().unwrap() + grid["w"].as_u64().unwrap();
        assert!(right <= 24, "{title}: gridPos exceeds the 24-column grid");
        if panel["type"] != "row" {
            let targets = panel["targets"].as_array();
            assert!(
                targets.is_some_and(|t| !t.is_empty()),
                "{title}: panel without queries"
            );
            for target in targets.unwrap() {
                assert!(target["refId"].is_string(), "{title}: target without refId");
                assert!(target["expr"].is_string(), "{title}: target without expr");
            }
        }
    }
}

#[test]
fn every_query_names_only_catalogued_metrics() {
    let exprs = expressions(&dashboard());
    assert!(!exprs.is_empty());
    let mut used = BTreeSet::new();
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "query names no cutover metric: {expr}");
        for name in names {
            assert!(
                catalogued(&name),
                "{name} is not in src/metrics.rs's catalogue (query: {expr})"
            );
            used.insert(name);
        }
    }
    // The views operators need are all there.
    for needed in [
        "cutover_topic_state",
        "cutover_requests_total",
        "cutover_request_duration_seconds_bucket",
        "cutover_request_errors_total",
        "cutover_client_connections",
        "cutover_redis_copy_backlog",
        "cutover_redis_repair_set",
        "cutover_redis_backfill_percent",
        "cutover_transitions_total",
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn metric_name_scanner_sees_through_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(cutover_request_duration_seconds_bucket{migration=~\"$m\"}[1m]))) + my_cutover_x"
        ),
        vec!["cutover_request_duration_seconds_bucket"]
    );
    assert!(catalogued("cutover_request_duration_seconds_count"));
    assert!(!catalogued("cutover_requests_total_bucket"));
    assert!(!catalogued("cutover_nonexistent"));
}
