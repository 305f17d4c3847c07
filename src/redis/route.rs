//! Where a keyspace's commands go in each state: the one authoritative
//! side, the side writes are converged to, and the side reads are
//! shadow-compared against. Pure, so the table below is tested whole.

use super::side::Side;
use crate::migration::State;

/// How one keyspace's traffic is routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// Answers every command.
    pub primary: Side,
    /// After a write is acknowledged, its keys are copied here.
    pub converge_to: Option<Side>,
    /// A sample of reads is also sent here and compared.
    pub shadow: Option<Side>,
}

/// The route of a keyspace in `state` (DESIGN.md §2 Redis).
#[must_use]
pub const fn route(state: State) -> Route {
    match state {
        State::Source => Route {
            primary: Side::Source,
            converge_to: None,
            shadow: None,
        },
        State::DualRead => Route {
            primary: Side::Source,
            converge_to: None,
            shadow: Some(Side::Target),
        },
        State::DualWrite => Route {
            primary: Side::Source,
            converge_to: Some(Side::Target),
            shadow: Some(Side::Target),
        },
        State::Cutover => Route {
            primary: Side::Target,
            converge_to: Some(Side::Source),
            shadow: Some(Side::Source),
        },
        State::Target => Route {
            primary: Side::Target,
            converge_to: None,
            shadow: None,
        },
    }
}

/// How a multi-key command's replies combine when it is split by route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// MGET: an array with one element per key, in request order.
    ArrayByPosition,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of integer replies.
    SumIntegers,
    /// MSET: `+OK` when every part said OK, else the first error.
    AllOk,
    /// SCRIPT KILL / FUNCTION KILL sent to both clusters: the reply of the
    /// one that was running a script, else the first part's (`NOTBUSY`).
    AnyOk,
}

/// Commands that may be split across routes, with their key step and merge.
#[must_use]
pub fn splittable(command: &str) -> Option<(usize, Merge)> {
    match command {
        "mget" => Some((1, Merge::ArrayByPosition)),
        "del" | "unlink" | "exists" | "touch" => Some((1, Merge::SumIntegers)),
        "mset" => Some((2, Merge::AllOk)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_exactly_the_designed_route() {
        use Side::{Source, Target};
        let table = [
            (State::Source, Source, None, None),
            (State::DualRead, Source, None, Some(Target)),
            (State::DualWrite, Source, Some(Target), Some(Target)),
            (State::Cutover, Target, Some(Source), Some(Source)),
            (State::Target, Target, None, None),
        ];
        for (state, primary, converge_to, shadow) in table {
            assert_eq!(
                route(state),
                Route {
                    primary,
                    converge_to,
                    shadow
                },
                "{state}"
            );
        }
    }

    #[test]
    fn only_commands_with_mergeable_replies_split() {
        assert_eq!(splittable("mset"), Some((2, Merge::AllOk)));
        assert_eq!(splittable("msetnx"), None, "MSETNX is all-or-nothing");
        assert_eq!(splittable("exists"), Some((1, Merge::SumIntegers)));
        assert_eq!(splittable("sunionstore"), None);
    }
}
