//! The pure transition function: (record, action, check results, force) →
//! a transition to persist, or a refusal that says why.
//!
//! No IO happens here, so every (state, action, outcome) combination is
//! tested exhaustively below; the controller does the IO around it.

use serde::{Deserialize, Serialize};

use super::state::{Action, State};

/// Whether a check result can hold a transition back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A readiness gate: a failed one refuses the transition unless forced.
    #[default]
    Gate,
    /// Something the operator should read before moving, never blocking
    /// (e.g. how many records the target already holds).
    Info,
}

/// One named readiness check, e.g. `target_reachable`, with a human reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Stable identifier operators grep for.
    pub name: String,
    /// Gate or information; records written before kinds existed are gates.
    #[serde(default)]
    pub kind: CheckKind,
    /// Whether this check allows the transition (always true for
    /// [`CheckKind::Info`]).
    pub passed: bool,
    /// A sentence saying what was found, pass or fail.
    pub reason: String,
}

impl CheckResult {
    /// A passing gate.
    pub fn pass(name: impl Into<String>, reason: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            kind: CheckKind::Gate,
            passed: true,
            reason: reason.into(),
        }
    }

    /// A failing gate.
    pub fn fail(name: impl Into<String>, reason: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            kind: CheckKind::Gate,
            passed: false,
            reason: reason.into(),
        }
    }

    /// An informational result: shown with the gates, never blocking.
    pub fn info(name: impl Into<String>, reason: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            kind: CheckKind::Info,
            passed: true,
            reason: reason.into(),
        }
    }

    /// Whether this result refuses the transition (a failed gate).
    #[must_use]
    pub fn blocks(&self) -> bool {
        self.kind == CheckKind::Gate && !self.passed
    }
}

/// The persisted position of one topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    /// Current state.
    pub state: State,
    /// Incremented by every transition; 0 for a topic never moved.
    pub epoch: u64,
    /// The transition that produced this record, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition: Option<Transition>,
}

impl TopicRecord {
    /// A topic that has never moved, in the migration's initial state.
    #[must_use]
    pub fn initial(state: State) -> Self {
        TopicRecord {
            state,
            epoch: 0,
            last_transition: None,
        }
    }
}

/// One accepted move of one topic: what the history records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// Migration name.
    pub migration: String,
    /// Topic or keyspace name.
    pub topic: String,
    /// Wall-clock time of the decision, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who asked (`ctl@host`, `api`, ...).
    pub actor: String,
    /// State before.
    pub from: State,
    /// State after.
    pub to: State,
    /// Whether failed checks were overridden.
    pub forced: bool,
    /// Every check that ran, passed or not.
    pub checks: Vec<CheckResult>,
    /// The epoch the topic has once this transition is durable.
    pub epoch: u64,
}

impl Transition {
    /// The record a topic has after this transition.
    #[must_use]
    pub fn record(&self) -> TopicRecord {
        TopicRecord {
            state: self.to,
            epoch: self.epoch,
            last_transition: Some(self.clone()),
        }
    }
}

/// Why a transition was not planned.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Advance from `target` or rollback from `source`.
    #[error("cannot {action} from {state}: it is the end of the walk")]
    EndOfWalk {
        /// Where the topic is.
        state: State,
        /// What was asked.
        action: Action,
    },
    /// At least one readiness check failed and `force` was not given.
    #[error("{} readiness check(s) failed; fix them or pass --force", failed.len())]
    ChecksFailed {
        /// The failed checks, with their reasons.
        failed: Vec<CheckResult>,
    },
}

/// What the operator asked for, with the check results gathered for it.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// Migration name.
    pub migration: &'a str,
    /// Topic name.
    pub topic: &'a str,
    /// Advance or rollback.
    pub action: Action,
    /// Override failed checks.
    pub force: bool,
    /// Who asked.
    pub actor: &'a str,
    /// Decision time, milliseconds since the Unix epoch.
    pub now_ms: u64,
}

/// Decides whether `request` may move a topic at `record`, given `checks`.
///
/// # Errors
/// [`Refusal::EndOfWalk`] at either end; [`Refusal::ChecksFailed`] when a
/// check failed and the request is not forced.
pub fn plan(
    record: &TopicRecord,
    request: &Request<'_>,
    checks: Vec<CheckResult>,
) -> Result<Transition, Refusal> {
    let to = record
        .state
        .after(request.action)
        .ok_or(Refusal::EndOfWalk {
            state: record.state,
            action: request.action,
        })?;
    let failed: Vec<CheckResult> = checks.iter().filter(|c| c.blocks()).cloned().collect();
    if !failed.is_empty() && !request.force {
        return Err(Refusal::ChecksFailed { failed });
    }
    Ok(Transition {
        migration: request.migration.to_owned(),
        topic: request.topic.to_owned(),
        at_ms: request.now_ms,
        actor: request.actor.to_owned(),
        from: record.state,
        to,
        forced: request.force && !failed.is_empty(),
        checks,
        epoch: record.epoch + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: Action, force: bool) -> Request<'static> {
        Request {
            migration: "cache",
            topic: "sessions",
            action,
            force,
            actor: "test",
            now_ms: 1_000,
        }
    }

    fn passing() -> Vec<CheckResult> {
        vec![CheckResult::pass("target_reachable", "PING answered")]
    }

    fn failing() -> Vec<CheckResult> {
        vec![
            CheckResult::pass("target_reachable", "PING answered"),
            CheckResult::info("target_records_before_switch", "3 record(s) there"),
            CheckResult::fail("backfill_complete", "backfill at 40%"),
        ]
    }

    #[test]
    fn an_info_result_never_blocks_and_old_records_read_as_gates() {
        let record = TopicRecord::initial(State::Source);
        let mut info = CheckResult::info("target_records_before_switch", "cannot count");
        info.passed = false;
        let t = plan(&record, &request(Action::Advance, false), vec![info]).unwrap();
        assert!(!t.forced);
        let old: CheckResult =
            serde_json::from_str(r#"{"name":"x","passed":false,"reason":"r"}"#).unwrap();
        assert_eq!(old.kind, CheckKind::Gate);
        assert!(old.blocks());
        let json = serde_json::to_value(CheckResult::info("n", "r")).unwrap();
        assert_eq!(json["kind"], "info");
    }

    /// Every state × action × {checks pass, checks fail, checks fail + force, no checks}.
    #[test]
    fn every_state_action_and_check_outcome() {
        for state in State::ALL {
            for action in [Action::Advance, Action::Rollback] {
                let record = TopicRecord {
                    state,
                    epoch: 7,
                    last_transition: None,
                };
                let expected_to = state.after(action);
                for (checks, force) in [
                    (passing(), false),
                    (passing(), true),
                    (failing(), false),
                    (failing(), true),
                    (Vec::new(), false),
                ] {
                    let any_failed = checks.iter().any(|c| !c.passed);
                    let outcome = plan(&record, &request(action, force), checks.clone());
                    match (expected_to, outcome) {
                        (
                            None,
                            Err(Refusal::EndOfWalk {
                                state: s,
                                action: a,
                            }),
                        ) => {
                            assert_eq!((s, a), (state, action));
                        }
                        (Some(_), Err(Refusal::ChecksFailed { failed })) => {
                            assert!(any_failed && !force, "{state} {action} refused wrongly");
                            assert_eq!(failed.len(), 1);
                            assert_eq!(failed[0].name, "backfill_complete");
                        }
                        (Some(to), Ok(t)) => {
                            assert!(
                                !any_failed || force,
                                "{state} {action} moved despite checks"
                            );
                            assert_eq!((t.from, t.to, t.epoch), (state, to, 8));
                            assert_eq!(t.forced, force && any_failed);
                            assert_eq!(t.checks, checks, "history keeps every check");
                            assert_eq!(t.record().state, to);
                        }
                        (expected, outcome) => {
                            panic!("{state} {action}: expected {expected:?}, got {outcome:?}")
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn epochs_grow_along_a_walk_and_back() {
        let mut record = TopicRecord::initial(State::Source);
        let walk = [Action::Advance; 4]
            .into_iter()
            .chain([Action::Rollback; 4]);
        for (step, action) in walk.enumerate() {
            record = plan(&record, &request(action, false), passing())
                .unwrap()
                .record();
            assert_eq!(record.epoch, step as u64 + 1);
        }
        assert_eq!(record.state, State::Source);
    }

    #[test]
    fn refusal_messages_are_sentences() {
        let at_end = plan(
            &TopicRecord::initial(State::Target),
            &request(Action::Advance, true),
            vec![],
        )
        .unwrap_err();
        assert_eq!(
            at_end.to_string(),
            "cannot advance from target: it is the end of the walk"
        );
        let failed = plan(
            &TopicRecord::initial(State::Source),
            &request(Action::Advance, false),
            failing(),
        )
        .unwrap_err();
        assert_eq!(
            failed.to_string(),
            "1 readiness check(s) failed; fix them or pass --force"
        );
    }
}
