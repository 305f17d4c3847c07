//! `ctl clients MIGRATION [TOPIC]`: the endpoint inventory of a RocketMQ
//! migration's topics (the `clients` topic action of the admin API), one
//! row per producer or consumer, marked `proxied` or `direct`.
//!
//! Exit codes: 0 listed, 1 some topic could not be listed, 2 the request
//! itself was wrong or the proxy could not be reached.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use hyper::Method;
use serde_json::{Value, json};

use super::client::{self, ClientError};
use super::table;

/// Lists the clients of `topic`, or of every topic of `migration`.
///
/// # Errors
/// When the proxy cannot be reached or answers something unexpected.
pub async fn run(
    socket: &Path,
    migration: &str,
    topic: Option<&str>,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let topics = match topic {
        Some(t) => vec![t.to_owned()],
        None => match topics_of(socket, migration).await? {
            Ok(t) => t,
            Err(why) => {
                let _ = writeln!(std::io::stderr(), "{why}");
                return Ok(ExitCode::from(2));
            }
        },
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for topic in &topics {
        let path = format!("/api/v1/migrations/{migration}/topics/{topic}/actions/clients");
        let answer = client::call(socket, Method::POST, &path, Some(json!({}))).await?;
        if answer.status.is_success() {
            reports.push(answer.body);
        } else {
            failed = true;
            let why = answer.body["error"].as_str().unwrap_or("unexpected answer");
            reports.push(json!({ "topic": topic, "error": why }));
        }
    }
    let mut out = std::io::stdout();
    if json {
        let body = json!({ "migration": migration, "topics": reports });
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&body)?);
    } else {
        let _ = write!(out, "{}", human(&reports));
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The migration's topics from `GET /api/v1/status`.
async fn topics_of(
    socket: &Path,
    migration: &str,
) -> Result<Result<Vec<String>, String>, ClientError> {
    let answer = client::call(socket, Method::GET, "/api/v1/status", None).await?;
    let found = answer.body["migrations"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"].as_str() == Some(migration));
    let Some(m) = found else {
        return Ok(Err(format!("no migration named {migration}")));
    };
    Ok(Ok(m["topics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()))
}

fn human(reports: &[Value]) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for r in reports {
        let topic = r["topic"].as_str().unwrap_or("?");
        if let Some(e) = r["error"].as_str() {
            notes.push(format!("{topic}: cannot list its clients: {e}"));
            continue;
        }
        for n in r["notes"].as_array().into_iter().flatten() {
            notes.push(format!("{topic}: {}", n.as_str().unwrap_or_default()));
        }
        for c in r["clients"].as_array().into_iter().flatten() {
            rows.push(row(topic, c));
        }
    }
    let mut text = if rows.is_empty() {
        "no client seen through the proxy or listed by the source's brokers\n".to_owned()
    } else {
        table::render(
            &[
                "TOPIC",
                "ROLE",
                "GROUP",
                "CLIENT ID",
                "ADDRESS",
                "CLIENT",
                "PATH",
                "BROKERS",
                "LAST SEEN",
            ],
            &rows,
        )
    };
    for n in notes {
        text.push_str(&format!("note: {n}\n"));
    }
    text
}

fn row(topic: &str, c: &Value) -> Vec<String> {
    let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    let dash = |v: String| if v.is_empty() { "-".to_owned() } else { v };
    let mut path = s("via");
    if c["connected"].as_bool() == Some(false) {
        path.push_str(" (gone)");
    }
    if c["topic_known"].as_bool() == Some(false) {
        path.push_str(" (any topic)");
    }
    let brokers: Vec<&str> = c["brokers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    vec![
        topic.to_owned(),
        s("role"),
        dash(s("group")),
        dash(s("client_id")),
        dash(s("addr")),
        format!("{} {}", s("language"), s("version_name")),
        path,
        dash(brokers.join(",")),
        c["last_seen_ms"].as_u64().map_or_else(
            || "-".to_owned(),
            |ms| {
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms))
                    .to_string()
            },
        ),
    ]
}
