//! `ctl migrate-metadata MIGRATION --all | --all --export FILE | --import
//! FILE` (RocketMQ): the whole source cluster's topics and subscription
//! groups, planned (`metadata_plan`) and applied (`metadata_apply`) by the
//! migration's driver, one outcome per item.
//!
//! Exit codes: 0 every item created or already there (or the plan
//! written), 1 some item failed, 2 the request was wrong, the file could
//! not be used or the proxy could not be reached.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use hyper::Method;
use serde_json::Value;

use super::client::{self, ClientError};
use super::table;

/// What to do.
#[derive(Debug)]
pub enum How {
    /// Plan and apply, then follow the source if asked.
    All {
        /// Keep creating the source's new items.
        follow: bool,
    },
    /// Plan and write it to the file.
    Export(PathBuf),
    /// Apply the plan in the file.
    Import(PathBuf),
}

/// Runs one `migrate-metadata --all/--export/--import`.
///
/// # Errors
/// When the proxy cannot be reached or answers something unexpected.
pub async fn run(
    socket: &Path,
    migration: &str,
    how: How,
    json: bool,
) -> Result<ExitCode, ClientError> {
    let plan = match &how {
        How::All { .. } | How::Export(_) => {
            match call(socket, migration, "metadata_plan", None).await? {
                Ok(plan) => plan,
                Err(code) => return Ok(code),
            }
        }
        How::Import(file) => match read_plan(file) {
            Ok(plan) => plan,
            Err(why) => return Ok(complain(&why)),
        },
    };
    if let How::Export(file) = &how {
        let text = serde_json::to_string_pretty(&plan)?;
        if let Err(e) = std::fs::write(file, text + "\n") {
            return Ok(complain(&format!("cannot write {}: {e}", file.display())));
        }
        let count = |k: &str| plan[k].as_array().map_or(0, Vec::len);
        let _ = writeln!(
            std::io::stdout(),
            "wrote the plan for {} topic(s) and {} group(s) of cluster \"{}\" to {}; apply it with --import",
            count("topics"),
            count("groups"),
            plan["source"].as_str().unwrap_or("?"),
            file.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let report = match call(socket, migration, "metadata_apply", Some(plan)).await? {
        Ok(report) => report,
        Err(code) => return Ok(code),
    };
    let mut report = report;
    if let How::All { follow: true } = how {
        match call(socket, migration, "metadata_follow", None).await? {
            Ok(state) => report["follow"] = state,
            Err(code) => return Ok(code),
        }
    }
    let mut out = std::io::stdout();
    if json {
        let _ = writeln!(out, "{}", serde_json::to_string_pretty(&report)?);
    } else {
        let _ = write!(out, "{}", human(&report));
        if report["follow"].is_object() {
            let _ = writeln!(
                out,
                "following: topics and groups created on the source from now on are created on the target"
            );
        }
    }
    Ok(if report["failed"].as_u64() == Some(0) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn complain(why: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{why}");
    ExitCode::from(2)
}

fn read_plan(file: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{} is not a plan: {e}", file.display()))
}

/// The migration action's answer, or the exit code of its refusal.
async fn call(
    socket: &Path,
    migration: &str,
    action: &str,
    body: Option<Value>,
) -> Result<Result<Value, ExitCode>, ClientError> {
    let path = format!("/api/v1/migrations/{migration}/actions/{action}");
    let answer = client::call(
        socket,
        Method::POST,
        &path,
        Some(body.unwrap_or(Value::Null)),
    )
    .await?;
    if answer.status.is_success() {
        return Ok(Ok(answer.body));
    }
    let why = answer.body["error"].as_str().unwrap_or("unexpected answer");
    let code = if answer.status == hyper::StatusCode::CONFLICT {
        1
    } else {
        2
    };
    let _ = writeln!(std::io::stderr(), "{why}");
    Ok(Err(ExitCode::from(code)))
}

fn human(report: &Value) -> String {
    let rows: Vec<Vec<String>> = report["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap_or_default().to_owned();
            let outcome = match i["outcome"].as_str() {
                Some("present") => "already there".to_owned(),
                _ => s("outcome"),
            };
            vec![s("kind"), s("name"), outcome, s("reason")]
        })
        .collect();
    let mut text = table::render(&["KIND", "NAME", "RESULT", "DETAIL"], &rows);
    text.push_str(&format!(
        "{} created, {} already there, {} failed\n",
        report["created"], report["present"], report["failed"]
    ));
    text
}
