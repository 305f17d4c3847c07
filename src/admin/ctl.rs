//! `cutover ctl`: the operator's command line, a client of the admin socket.
//!
//! Exit codes: 0 done, 1 refused or failed (a check, a transition), 2 the
//! request itself was wrong or the proxy could not be reached.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use super::client::{self, Answer, ClientError};
use super::table;
use crate::config::DEFAULT_SOCKET;

/// `cutover ctl` arguments.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Admin socket of the running proxy.
    #[arg(long, env = "CUTOVER_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Every migration and topic with state and epoch.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run a topic's readiness checks for its next advance (or rollback).
    Check {
        /// Migration name.
        migration: String,
        /// Topic (Redis: keyspace) name.
        topic: String,
        /// Check the rollback instead of the advance.
        #[arg(long)]
        rollback: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Move topics one state forward.
    Advance(MoveArgs),
    /// Move topics one state back.
    Rollback(MoveArgs),
    /// Copy every key of a Redis keyspace the proxy has not converged yet.
    Backfill {
        /// Migration name.
        migration: String,
        /// Keyspace name.
        keyspace: String,
    },
    /// Compare a sample of a Redis keyspace's keys across both clusters.
    Verify {
        /// Migration name.
        migration: String,
        /// Keyspace name.
        keyspace: String,
        /// Keys to compare.
        #[arg(long)]
        sample: Option<u64>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Create topics on the target: Kafka with the source's partition count,
    /// replication factor (capped at the target's brokers) and topic configs;
    /// RocketMQ on every target master with at least the source's queue
    /// counts. Topics already on the target are compared, never changed.
    ///
    /// RocketMQ `--all`: every topic and subscription group of the source
    /// cluster, one outcome each; `--export FILE` writes that plan instead,
    /// `--import FILE` applies a (possibly edited) plan.
    MigrateMetadata {
        /// Migration name.
        migration: String,
        /// Topics to migrate.
        #[arg(required_unless_present_any = ["all", "import"], conflicts_with_all = ["all", "import"])]
        topics: Vec<String>,
        /// RocketMQ: every topic and group of the source cluster.
        #[arg(long, conflicts_with = "import")]
        all: bool,
        /// With `--all`: write the plan to FILE instead of applying it.
        #[arg(long, value_name = "FILE", requires = "all")]
        export: Option<PathBuf>,
        /// Apply the plan in FILE (as `--export` wrote it, edited or not).
        #[arg(long, value_name = "FILE")]
        import: Option<PathBuf>,
        /// With `--all`: then keep creating the source's new topics and
        /// groups on the target while the proxy runs.
        #[arg(long, requires = "all", conflicts_with = "export")]
        follow: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// RocketMQ: the producers and consumers of a topic (or of every topic
    /// of the migration), through the proxy or straight at the source.
    Clients {
        /// Migration name.
        migration: String,
        /// Only this topic.
        topic: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Kafka `dual_write`: set which partitions of a topic write to the
    /// target (each switches behind a short produce fence).
    Shift {
        /// Migration name.
        migration: String,
        /// Topic name.
        topic: String,
        /// The lowest N% of the partitions (rounded up).
        #[arg(
            long,
            conflicts_with = "partitions",
            required_unless_present = "partitions"
        )]
        percent: Option<u8>,
        /// Exactly these partitions, comma-separated.
        #[arg(long, value_delimiter = ',')]
        partitions: Vec<i32>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Kafka `history: copy`: change the history copy's speed limit now,
    /// for every partition, kept across restarts.
    HistoryRate {
        /// Migration name.
        migration: String,
        /// MB (10^6 bytes) of record batches per second, at least 1.
        mb_per_second: u32,
    },
    /// Transition history, oldest first; with `--actions`, the log of every
    /// other admin action (shifts, metadata copies, backfills, ...).
    History {
        /// Only this migration.
        migration: Option<String>,
        /// Only this topic.
        topic: Option<String>,
        /// The action log instead of state moves.
        #[arg(long)]
        actions: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct MoveArgs {
    /// Migration name.
    migration: String,
    /// Topics to move.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    topics: Vec<String>,
    /// Move every topic of the migration.
    #[arg(long)]
    all: bool,
    /// Override failed readiness checks (recorded in history).
    #[arg(long)]
    force: bool,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

/// Prints to stdout, ignoring a closed pipe (`ctl status | head` must not panic).
macro_rules! out {
    ($($arg:tt)*) => {{
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Runs one `ctl` command, printing its output.
///
/// # Errors
/// When the proxy cannot be reached or answers something unexpected.
pub async fn run(args: CtlArgs) -> Result<ExitCode, ClientError> {
    let socket = &args.socket;
    match args.command {
        CtlCommand::Status { json } => {
            let answer = client::call(socket, Method::GET, "/api/v1/status", None).await?;
            print_or(json, &answer, || print_status(&answer.body))
        }
        CtlCommand::Check {
            migration,
            topic,
            rollback,
            json,
        } => check(socket, &migration, &topic, rollback, json).await,
        CtlCommand::Advance(m) => transition(socket, "advance", m).await,
        CtlCommand::Rollback(m) => transition(socket, "rollback", m).await,
        CtlCommand::Backfill {
            migration,
            keyspace,
        } => backfill(socket, &migration, &keyspace).await,
        CtlCommand::Verify {
            migration,
            keyspace,
            sample,
            json,
        } => verify(socket, &migration, &keyspace, sample, json).await,
        CtlCommand::MigrateMetadata {
            migration,
            topics,
            all,
            export,
            import,
            follow,
            json,
        } => {
            if all || import.is_some() {
                let how = match (export, import) {
                    (Some(file), _) => super::ctl_metadata::How::Export(file),
                    (None, Some(file)) => super::ctl_metadata::How::Import(file),
                    (None, None) => super::ctl_metadata::How::All { follow },
                };
                return super::ctl_metadata::run(socket, &migration, how, json).await;
            }
            migrate_metadata(socket, &migration, &topics, json).await
        }
        CtlCommand::Clients {
            migration,
            topic,
            json,
        } => super::ctl_clients::run(socket, &migration, topic.as_deref(), json).await,
        CtlCommand::Shift {
            migration,
            topic,
            percent,
            partitions,
            json,
        } => shift(socket, &migration, &topic, percent, partitions, json).await,
        CtlCommand::History {
            migration,
            topic,
            actions,
            json,
        } => history(socket, migration, topic, actions, json).await,
        CtlCommand::HistoryRate {
            migration,
            mb_per_second,
        } => history_rate(socket, &migration, mb_per_second).await,
    }
}

/// `ctl check`: whether a topic may advance (or roll back) now, and why not.
async fn check(
    socket: &std::path::Path,
    migration: &str,
    topic: &str,
    rollback: bool,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let action = if rollback { "rollback" } else { "advance" };
    let path = format!("/api/v1/migrations/{migration}/topics/{topic}/check?action={action}");
    let answer = client::call(socket, Method::GET, &path, None).await?;
    print_or(json, &answer, || print_check(&answer.body))
}

/// `ctl backfill`: starts copying a keyspace; progress shows in `ctl status`.
async fn backfill(
    socket: &std::path::Path,
    migration: &str,
    keyspace: &str,
) -> Result<ExitCode, ClientError> {
    let path = format!("/api/v1/migrations/{migration}/topics/{keyspace}/actions/backfill");
    let answer = client::call(socket, Method::POST, &path, Some(json!({}))).await?;
    action_result(&answer, |body| {
        outln!(
            "backfill of {keyspace} started from the {} ({} keys in its databases); follow it with `ctl status`",
            text(&body["from"]),
            text(&body["total_keys"])
        );
        ExitCode::SUCCESS
    })
}

/// `ctl verify`: compares a sample of keys on both clusters.
async fn verify(
    socket: &std::path::Path,
    migration: &str,
    keyspace: &str,
    sample: Option<u64>,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let path = format!("/api/v1/migrations/{migration}/topics/{keyspace}/actions/verify");
    let answer = client::call(
        socket,
        Method::POST,
        &path,
        Some(json!({ "sample": sample })),
    )
    .await?;
    if json {
        return print_or(true, &answer, || ExitCode::SUCCESS);
    }
    action_result(&answer, print_verify)
}

/// `ctl history`: state moves, or with `actions` every other admin action.
async fn history(
    socket: &std::path::Path,
    migration: Option<String>,
    topic: Option<String>,
    actions: bool,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let mut path = String::from(if actions {
        "/api/v1/actions?"
    } else {
        "/api/v1/history?"
    });
    if let Some(m) = &migration {
        path.push_str(&format!("migration={m}&"));
    }
    if let Some(t) = &topic {
        path.push_str(&format!("topic={t}"));
    }
    let answer = client::call(socket, Method::GET, &path, None).await?;
    if actions {
        print_or(json, &answer, || print_actions(&answer.body))
    } else {
        print_or(json, &answer, || print_history(&answer.body))
    }
}

/// `ctl shift`: the partitions writing to the target, and each switch.
async fn shift(
    socket: &std::path::Path,
    migration: &str,
    topic: &str,
    percent: Option<u8>,
    partitions: Vec<i32>,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let path = format!("/api/v1/migrations/{migration}/topics/{topic}/actions/shift");
    let params = match percent {
        Some(p) => json!({ "percent": p }),
        None => json!({ "partitions": partitions }),
    };
    let answer = client::call(socket, Method::POST, &path, Some(params)).await?;
    action_result(&answer, |body| {
        if json {
            outln!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
            return ExitCode::SUCCESS;
        }
        outln!(
            "{topic}: partitions writing to the target: {}",
            body["on_target"]
        );
        for s in body["switched"].as_array().into_iter().flatten() {
            outln!(
                "  partition {} switched {} -> {} at virtual offset {} (produce held {:.1} ms)",
                text(&s["partition"]),
                text(&s["from"]),
                text(&s["to"]),
                text(&s["virtual_start"]),
                s["fenced_ms"].as_f64().unwrap_or(0.0)
            );
        }
        ExitCode::SUCCESS
    })
}

/// `ctl history-rate`: the Kafka history copy's speed limit.
async fn history_rate(
    socket: &std::path::Path,
    migration: &str,
    mb_per_second: u32,
) -> Result<ExitCode, ClientError> {
    let path = format!("/api/v1/migrations/{migration}/actions/history_rate");
    let params = json!({ "mb_per_second": mb_per_second });
    let answer = client::call(socket, Method::POST, &path, Some(params)).await?;
    action_result(&answer, |body| {
        outln!(
            "{migration}: history copy limited to {} MB/s (was {} MB/s)",
            text(&body["mb_per_second"]),
            text(&body["was"])
        );
        ExitCode::SUCCESS
    })
}

/// `ctl migrate-metadata`: one action per topic, one report for all.
/// Exit code 1 when any topic is in error or has too few partitions.
async fn migrate_metadata(
    socket: &std::path::Path,
    migration: &str,
    topics: &[String],
    json: bool,
) -> Result<ExitCode, ClientError> {
    let mut reports = Vec::new();
    for topic in topics {
        let path =
            format!("/api/v1/migrations/{migration}/topics/{topic}/actions/migrate_metadata");
        let answer = client::call(socket, Method::POST, &path, Some(json!({}))).await?;
        if answer.status.is_success() {
            reports.push(answer.body);
        } else {
            reports.push(json!({
                "topic": topic,
                "outcome": "error",
                "reason": answer.body["error"].as_str().unwrap_or("unexpected answer"),
            }));
        }
    }
    let ok = reports
        .iter()
        .all(|r| matches!(r["outcome"].as_str(), Some("created" | "present")));
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "migration": migration, "topics": reports }))?
        );
    } else {
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|r| {
                let outcome = match r["outcome"].as_str() {
                    Some("created") => "created",
                    Some("present") => "already present (ok)",
                    Some("too_few_partitions") => "already present, too few partitions (problem)",
                    _ => "error",
                };
                vec![
                    text(&r["topic"]),
                    outcome.to_owned(),
                    text(&r["source_partitions"]),
                    text(&r["target_partitions"]),
                    text(&r["reason"]),
                ]
            })
            .collect();
        out!(
            "{}",
            table::render(&["TOPIC", "RESULT", "SOURCE", "TARGET", "DETAIL"], &rows)
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints JSON or the human form; errors from the API become exit code 2.
fn print_or(
    json: bool,
    answer: &Answer,
    human: impl FnOnce() -> ExitCode,
) -> Result<ExitCode, ClientError> {
    if let Some(code) = api_error(answer) {
        return Ok(code);
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&answer.body)?);
        return Ok(ExitCode::SUCCESS);
    }
    Ok(human())
}

/// An action's report, or its refusal (409) as exit code 1.
fn action_result(
    answer: &Answer,
    human: impl FnOnce(&Value) -> ExitCode,
) -> Result<ExitCode, ClientError> {
    if answer.status == StatusCode::CONFLICT {
        eprintln!("refused: {}", text(&answer.body["error"]));
        return Ok(ExitCode::from(1));
    }
    if let Some(code) = api_error(answer) {
        return Ok(code);
    }
    Ok(human(&answer.body))
}

fn print_verify(body: &Value) -> ExitCode {
    outln!(
        "sampled {} key(s) on the {}: {} identical, {} differ",
        text(&body["sampled"]),
        text(&body["authoritative"]),
        text(&body["matching"]),
        text(&body["differing"])
    );
    let rows: Vec<Vec<String>> = body["examples"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| vec![text(&d["db"]), text(&d["key"]), text(&d["reason"])])
        .collect();
    if !rows.is_empty() {
        out!("{}", table::render(&["DB", "KEY", "DIFFERENCE"], &rows));
    }
    if body["differing"].as_u64() == Some(0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn api_error(answer: &Answer) -> Option<ExitCode> {
    if answer.status.is_success() || answer.status == StatusCode::CONFLICT {
        return None;
    }
    let message = answer.body["error"].as_str().unwrap_or("unexpected answer");
    eprintln!("error: {message}");
    Some(ExitCode::from(2))
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn when(ms: &Value) -> String {
    let Some(ms) = ms.as_u64() else {
        return "-".into();
    };
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn print_status(body: &Value) -> ExitCode {
    let mut rows = Vec::new();
    for m in body["migrations"].as_array().into_iter().flatten() {
        let topics = m["topics"].as_array().cloned().unwrap_or_default();
        if topics.is_empty() {
            let note = if m["served"].as_bool() == Some(true) {
                "(no topics seen yet)"
            } else {
                "(protocol not served by this build)"
            };
            rows.push(vec![
                text(&m["name"]),
                text(&m["protocol"]),
                note.into(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for t in topics {
            let last = &t["last_transition"];
            let last_text = if last.is_null() {
                "-".into()
            } else {
                format!(
                    "{} {}→{} by {}",
                    when(&last["at_ms"]),
                    text(&last["from"]),
                    text(&last["to"]),
                    text(&last["actor"])
                )
            };
            rows.push(vec![
                text(&m["name"]),
                text(&m["protocol"]),
                text(&t["name"]),
                text(&t["state"]),
                text(&t["epoch"]),
                last_text,
            ]);
        }
    }
    out!(
        "{}",
        table::render(
            &[
                "MIGRATION",
                "PROTOCOL",
                "TOPIC",
                "STATE",
                "EPOCH",
                "LAST TRANSITION"
            ],
            &rows
        )
    );
    ExitCode::SUCCESS
}

fn print_checks(checks: &Value) {
    let rows: Vec<Vec<String>> = checks
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let mark = if c["kind"] == "info" {
                "info"
            } else if c["passed"].as_bool() == Some(true) {
                "pass"
            } else {
                "FAIL"
            };
            vec![mark.into(), text(&c["name"]), text(&c["reason"])]
        })
        .collect();
    if rows.is_empty() {
        outln!("(no readiness checks for this step)");
    } else {
        out!("{}", table::render(&["RESULT", "CHECK", "REASON"], &rows));
    }
}

fn print_check(body: &Value) -> ExitCode {
    let to = if body["to"].is_null() {
        "(end of the walk)".to_owned()
    } else {
        text(&body["to"])
    };
    outln!(
        "{} {}: {} → {}",
        text(&body["migration"]),
        text(&body["topic"]),
        text(&body["from"]),
        to
    );
    print_checks(&body["checks"]);
    if body["ready"].as_bool() == Some(true) {
        outln!("ready");
        ExitCode::SUCCESS
    } else {
        outln!("not ready");
        ExitCode::from(1)
    }
}

async fn transition(
    socket: &std::path::Path,
    action: &str,
    args: MoveArgs,
) -> Result<ExitCode, ClientError> {
    let actor = format!("ctl:{}", super::identity::local_user());
    let body =
        json!({ "topics": args.topics, "all": args.all, "force": args.force, "actor": actor });
    let path = format!("/api/v1/migrations/{}/{action}", args.migration);
    let answer = client::call(socket, Method::POST, &path, Some(body)).await?;
    print_or(args.json, &answer, || print_outcomes(&answer.body))?;
    if answer.status.is_success() {
        Ok(ExitCode::SUCCESS)
    } else if answer.status == StatusCode::CONFLICT {
        Ok(ExitCode::from(1))
    } else {
        Ok(ExitCode::from(2))
    }
}

fn print_outcomes(body: &Value) -> ExitCode {
    for outcome in body["outcomes"].as_array().into_iter().flatten() {
        match outcome["outcome"].as_str() {
            Some("moved") => {
                let t = &outcome["transition"];
                let forced = if t["forced"].as_bool() == Some(true) {
                    " (forced)"
                } else {
                    ""
                };
                outln!(
                    "{}: {} → {} (epoch {}){forced}",
                    text(&t["topic"]),
                    text(&t["from"]),
                    text(&t["to"]),
                    text(&t["epoch"])
                );
            }
            Some("refused") => {
                outln!(
                    "{}: refused: {}",
                    text(&outcome["topic"]),
                    text(&outcome["reason"])
                );
                print_checks(&outcome["checks"]);
            }
            _ => outln!(
                "{}: failed: {}",
                text(&outcome["topic"]),
                text(&outcome["reason"])
            ),
        }
    }
    ExitCode::SUCCESS
}

fn print_history(body: &Value) -> ExitCode {
    let rows: Vec<Vec<String>> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let failed = t["checks"].as_array().map_or(0, |c| {
                c.iter()
                    .filter(|c| c["passed"] == false && c["kind"] != "info")
                    .count()
            });
            vec![
                when(&t["at_ms"]),
                text(&t["migration"]),
                text(&t["topic"]),
                format!("{}→{}", text(&t["from"]), text(&t["to"])),
                text(&t["epoch"]),
                text(&t["actor"]),
                if t["forced"].as_bool() == Some(true) {
                    format!("yes ({failed} failed)")
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &[
                "TIME",
                "MIGRATION",
                "TOPIC",
                "MOVE",
                "EPOCH",
                "ACTOR",
                "FORCED"
            ],
            &rows
        )
    );
    ExitCode::SUCCESS
}

fn print_actions(body: &Value) -> ExitCode {
    let rows: Vec<Vec<String>> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                when(&a["at_ms"]),
                text(&a["migration"]),
                a["topic"].as_str().unwrap_or("-").to_owned(),
                text(&a["action"]),
                text(&a["actor"]),
                text(&a["outcome"]),
            ]
        })
        .collect();
    out!(
        "{}",
        table::render(
            &["TIME", "MIGRATION", "TOPIC", "ACTION", "ACTOR", "OUTCOME"],
            &rows
        )
    );
    ExitCode::SUCCESS
}
