//! The five migration states and the two actions that move between them.
//!
//! This is the vocabulary every protocol shares; what a state *means* for
//! traffic is decided by each protocol's session, never here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a topic (Kafka/RocketMQ topic, Redis keyspace) stands in its migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Everything goes to the source; the proxy is transparent.
    Source,
    /// Reads are prepared or verified on both sides; writes still go to source.
    DualRead,
    /// Writes reach both clusters.
    DualWrite,
    /// Writes go to the target; reads still drain the source.
    Cutover,
    /// Everything goes to the target.
    Target,
}

impl State {
    /// Every state, in the order `advance` walks them.
    pub const ALL: [State; 5] = [
        State::Source,
        State::DualRead,
        State::DualWrite,
        State::Cutover,
        State::Target,
    ];

    /// The wire/config spelling (`dual_read`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Source => "source",
            State::DualRead => "dual_read",
            State::DualWrite => "dual_write",
            State::Cutover => "cutover",
            State::Target => "target",
        }
    }

    /// Position in the walk, used to pack a state into an atomic.
    #[must_use]
    pub const fn index(self) -> u8 {
        self as u8
    }

    /// Inverse of [`State::index`].
    #[must_use]
    pub const fn from_index(index: u8) -> Option<State> {
        match index {
            0 => Some(State::Source),
            1 => Some(State::DualRead),
            2 => Some(State::DualWrite),
            3 => Some(State::Cutover),
            4 => Some(State::Target),
            _ => None,
        }
    }

    /// The state `action` leads to, or `None` at either end of the walk.
    #[must_use]
    pub const fn after(self, action: Action) -> Option<State> {
        let index = self.index();
        match action {
            Action::Advance => State::from_index(index + 1),
            Action::Rollback => match index.checked_sub(1) {
                Some(previous) => State::from_index(previous),
                None => None,
            },
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The spelling was not one of the five states.
#[derive(Debug, thiserror::Error)]
#[error("unknown state \"{0}\": expected one of source, dual_read, dual_write, cutover, target")]
pub struct UnknownState(pub String);

impl FromStr for State {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What an operator asks of a topic: one step forward or one step back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// One step towards `target`.
    Advance,
    /// One step towards `source`.
    Rollback,
}

impl Action {
    /// The spelling used by the CLI and the API.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Action::Advance => "advance",
            Action::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trips_for_every_state() {
        for state in State::ALL {
            assert_eq!(State::from_index(state.index()), Some(state));
            assert_eq!(state.as_str().parse::<State>().unwrap(), state);
        }
        assert_eq!(State::from_index(5), None);
    }

    #[test]
    fn every_state_action_pair_moves_exactly_one_step() {
        let expected = [
            (State::Source, Action::Advance, Some(State::DualRead)),
            (State::Source, Action::Rollback, None),
            (State::DualRead, Action::Advance, Some(State::DualWrite)),
            (State::DualRead, Action::Rollback, Some(State::Source)),
            (State::DualWrite, Action::Advance, Some(State::Cutover)),
            (State::DualWrite, Action::Rollback, Some(State::DualRead)),
            (State::Cutover, Action::Advance, Some(State::Target)),
            (State::Cutover, Action::Rollback, Some(State::DualWrite)),
            (State::Target, Action::Advance, None),
            (State::Target, Action::Rollback, Some(State::Cutover)),
        ];
        for (from, action, to) in expected {
            assert_eq!(from.after(action), to, "{from} {action}");
        }
    }

    #[test]
    fn unknown_spelling_is_refused_with_the_choices() {
        let err = "dualread".parse::<State>().unwrap_err();
        assert!(err.to_string().contains("dual_read"), "{err}");
    }
}
