//! Where one partition's part of a request goes, and the grouping of a
//! request's partitions by destination (in first-seen order, so a request
//! that stays whole keeps its layout).

use std::sync::Arc;

use crate::kafka::cluster::Side;

/// A real broker of one cluster; `addr: None` is the cluster's bootstrap
/// endpoints (a leader the proxy does not know yet: the broker answers
/// NOT_LEADER, the client refreshes its metadata through the proxy, and
/// the proxy learns the leader from that answer).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Dest {
    /// The cluster.
    pub(crate) side: Side,
    /// `host:port` of the broker.
    pub(crate) addr: Option<Arc<str>>,
}

impl Dest {
    /// The cluster's bootstrap endpoints.
    #[must_use]
    pub(crate) fn bootstrap(side: Side) -> Dest {
        Dest { side, addr: None }
    }
}

/// Groups `items` by destination, keeping the order destinations and
/// items were first seen.
pub(crate) fn group_by<T>(items: impl IntoIterator<Item = (Dest, T)>) -> Vec<(Dest, Vec<T>)> {
    let mut groups: Vec<(Dest, Vec<T>)> = Vec::new();
    for (dest, item) in items {
        match groups.iter_mut().find(|(d, _)| *d == dest) {
            Some((_, list)) => list.push(item),
            None => groups.push((dest, vec![item])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order() {
        let a = Dest {
            side: Side::Source,
            addr: Some("a:1".into()),
        };
        let b = Dest::bootstrap(Side::Target);
        let groups = group_by([(a.clone(), 1), (b.clone(), 2), (a.clone(), 3)]);
        assert_eq!(groups, [(a, vec![1, 3]), (b, vec![2])]);
    }
}
