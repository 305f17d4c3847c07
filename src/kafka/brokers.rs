//! The brokers clients see: a fixed number of *virtual* brokers, each a
//! listener of the proxy, independent of either cluster's size
//! (DESIGN.md §2 Kafka).
//!
//! Every partition gets a virtual leader: the door standing for its real
//! leader on the cluster that takes its writes ([`VirtualBrokers::door_of`]),
//! so in `source` state a client's request to one door is one upstream
//! broker's and passes whole; a stable hash while that leader is unknown.
//! Every group or transactional id gets a virtual coordinator by a stable
//! hash. Whichever door a request arrives at, the session routes each
//! partition inside it to the real leader of the cluster that owns it, so
//! a door a client still uses after a leader moved or a partition switched
//! serves it all the same: a client need not reconnect (a switch may still
//! close an idempotent producer's connection it cannot carry).

/// The virtual brokers of one migration: node ids `0..count` at ports
/// `base..base + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct VirtualBrokers {
    base: u16,
    count: u16,
}

impl VirtualBrokers {
    /// `count` brokers from port `base` on (the config validation keeps
    /// `base + count` within the port range and `count` ≥ 1).
    #[must_use]
    pub(super) const fn new(base: u16, count: u16) -> Self {
        VirtualBrokers {
            base,
            count: if count == 0 { 1 } else { count },
        }
    }

    /// Every `(node_id, port)`.
    pub(super) fn nodes(&self) -> impl Iterator<Item = (i32, u16)> + '_ {
        (0..self.count).map_while(|i| Some((i32::from(i), self.base.checked_add(i)?)))
    }

    /// The port of `node_id`, if it is one of ours.
    #[must_use]
    pub(super) fn port(&self, node_id: i32) -> Option<u16> {
        let i = u16::try_from(node_id).ok().filter(|i| *i < self.count)?;
        self.base.checked_add(i)
    }

    /// The virtual leader of `topic`/`partition`: consecutive partitions
    /// land on consecutive brokers, from a per-topic offset, so one topic's
    /// partitions spread over every door.
    #[must_use]
    pub(super) fn leader_of(&self, topic: &str, partition: i32) -> i32 {
        let start = stable_hash(topic.as_bytes()) % u64::from(self.count);
        let step = u64::from(partition.unsigned_abs()) % u64::from(self.count);
        i32::try_from((start + step) % u64::from(self.count)).unwrap_or(0)
    }

    /// The door of real broker `node_id`: node ids are usually small and
    /// consecutive, so with at least as many doors as brokers each door
    /// stands for one broker, and a client's request to one door names
    /// partitions of one upstream broker (passed through whole, not split).
    #[must_use]
    pub(super) fn door_of(&self, node_id: i32) -> i32 {
        node_id.rem_euclid(i32::from(self.count))
    }

    /// The virtual coordinator of a group or transactional id.
    #[must_use]
    pub(super) fn coordinator_of(&self, key: &str) -> i32 {
        i32::try_from(stable_hash(key.as_bytes()) % u64::from(self.count)).unwrap_or(0)
    }
}

/// FNV-1a: stable across releases and platforms (unlike `DefaultHasher`),
/// because a changed assignment would make every client reconnect after a
/// proxy upgrade.
fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_ports_follow_the_base() {
        let v = VirtualBrokers::new(9193, 3);
        assert_eq!(
            v.nodes().collect::<Vec<_>>(),
            [(0, 9193), (1, 9194), (2, 9195)]
        );
        assert_eq!(v.port(2), Some(9195));
        assert_eq!(v.port(3), None);
        assert_eq!(v.port(-1), None);
        assert_eq!(VirtualBrokers::new(65535, 2).nodes().count(), 1);
    }

    #[test]
    fn partitions_spread_over_every_door_and_stay_put() {
        let v = VirtualBrokers::new(9193, 3);
        let leaders: Vec<i32> = (0..6).map(|p| v.leader_of("orders", p)).collect();
        for node in 0..3 {
            assert_eq!(leaders.iter().filter(|l| **l == node).count(), 2);
        }
        assert_eq!(
            leaders,
            (0..6).map(|p| v.leader_of("orders", p)).collect::<Vec<_>>()
        );
        assert!(v.coordinator_of("group-a") < 3);
        assert_eq!([1, 2, 3, 4].map(|n| v.door_of(n)), [1, 2, 0, 1]);
        assert_eq!(VirtualBrokers::new(1, 1).leader_of("x", 7), 0);
    }

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
