//! The proxy's own requests (preparing a step, moving a group, a producer
//! id for the target, translating offsets) meet the errors a Kafka cluster
//! answers while it settles: a fresh cluster creating its offsets topic
//! (COORDINATOR_NOT_AVAILABLE), a coordinator loading it
//! (COORDINATOR_LOAD_IN_PROGRESS), a leader or coordinator that moved.
//! Clients retry those; so does the proxy, with backoff, within a deadline,
//! asking again from the start (which re-resolves the coordinator or
//! leader). What is still failing at the deadline, or fails for good, is
//! reported with Kafka's name for the error, not its number.

use std::future::Future;
use std::time::Duration;

use cutover_kafka::kafka_protocol::error::ResponseError;
use tokio::time::Instant;

/// How long the proxy keeps asking again on a retriable error: the step
/// that needs the answer waits this long at most.
pub(super) const STEP_DEADLINE: Duration = Duration::from_secs(30);
/// The first pause between attempts, doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Codes that a settling cluster answers and that go away by themselves:
/// LEADER_NOT_AVAILABLE, NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION
/// (right after a topic is created), REQUEST_TIMED_OUT,
/// COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR.
const WAITED_OUT: [i16; 7] = [5, 6, 3, 7, 14, 15, 16];

/// Whether the proxy asks again after `code`.
pub(super) fn is_waited_out(code: i16) -> bool {
    WAITED_OUT.contains(&code)
}

/// Kafka's name of an error code, as its tools print it
/// ("COORDINATOR_NOT_AVAILABLE"); "UNKNOWN(code)" for a code this build does
/// not know.
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN({c})"),
        Some(e) => screaming_snake(&format!("{e:?}")),
    }
}

/// "COORDINATOR_NOT_AVAILABLE (error code 15)".
pub(super) fn describe(code: i16) -> String {
    format!("{} (error code {code})", error_name(code))
}

/// "CoordinatorNotAvailable" → "COORDINATOR_NOT_AVAILABLE".
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// Whether asking again may succeed.
    pub(super) retriable: bool,
    pub(super) message: String,
}

impl Failure {
    /// A failure that asking again cannot cure.
    pub(super) fn fatal(message: impl Into<String>) -> Failure {
        Failure {
            retriable: false,
            message: message.into(),
        }
    }

    /// A cluster's answer `code`; retriable when the code is one a settling
    /// cluster answers. `what` is the sentence the code completes.
    pub(super) fn code(code: i16, what: impl std::fmt::Display) -> Failure {
        Failure {
            retriable: is_waited_out(code),
            message: format!("{what}: {}", describe(code)),
        }
    }
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure::fatal(message)
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `deadline` passes
/// with the failure still retriable (then the last failure is returned with
/// how long it was retried).
///
/// # Errors
/// The last failure's message.
pub(super) async fn retrying<T, F, Fut>(deadline: Duration, mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let start = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let failure = match attempt().await {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        let waited = start.elapsed();
        if !failure.retriable {
            return Err(failure.message);
        }
        if waited + backoff > deadline {
            return Err(format!(
                "{} (still after {attempts} attempts over {:.1}s)",
                failure.message,
                waited.as_secs_f64()
            ));
        }
        tracing::debug!(error = %failure.message, attempts, "retrying a request of the proxy's own");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(15), "COORDINATOR_NOT_AVAILABLE");
        assert_eq!(error_name(14), "COORDINATOR_LOAD_IN_PROGRESS");
        assert_eq!(error_name(25), "UNKNOWN_MEMBER_ID");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN(9999)");
        assert_eq!(describe(16), "NOT_COORDINATOR (error code 16)");
    }

    #[test]
    fn only_settling_errors_are_waited_out() {
        for code in [3, 5, 6, 7, 14, 15, 16] {
            assert!(is_waited_out(code), "{code}");
        }
        for code in [0, -1, 1, 25, 29, 30, 36] {
            assert!(!is_waited_out(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_retriable_failure_is_asked_again_until_it_clears() {
        let calls = AtomicU32::new(0);
        let got = retrying(STEP_DEADLINE, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(Failure::code(15, "finding the coordinator"))
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(got, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_final_failure_is_not_asked_again_and_is_named() {
        let calls = AtomicU32::new(0);
        let got: Result<(), String> = retrying(STEP_DEADLINE, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Failure::code(25, "committing"))
        })
        .await;
        assert_eq!(
            got,
            Err("committing: UNKNOWN_MEMBER_ID (error code 25)".into())
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failure_past_the_deadline_says_how_long_it_was_retried() {
        let got: Result<(), String> = retrying(Duration::from_millis(300), || async {
            Err(Failure::code(14, "loading"))
        })
        .await;
        let err = got.unwrap_err();
        assert!(
            err.starts_with("loading: COORDINATOR_LOAD_IN_PROGRESS (error code 14) (still after"),
            "{err}"
        );
    }
}
