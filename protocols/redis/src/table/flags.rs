//! Bit sets for command flags and key-spec flags.
//!
//! Redis reports both as lists of names; the table stores them as `u32` bit
//! sets so a `contains` test on the hot path is one AND. The names of the
//! constants are the Redis names upper-cased, so `tools/gen_commands.py` can
//! emit them without a translation table.

use std::fmt;

/// Flags of one command, as `COMMAND INFO` lists them, plus two bits taken
/// from the command's tips (`NONDETERMINISTIC_OUTPUT*`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CommandFlags(pub(crate) u32);

macro_rules! flag_consts {
    ($ty:ident { $($(#[$doc:meta])* $name:ident = $bit:expr, $text:literal;)* }) => {
        impl $ty {
            $($(#[$doc])* pub const $name: Self = Self(1 << $bit);)*

            /// Every flag with its Redis name, in bit order.
            pub const ALL: &'static [(Self, &'static str)] = &[$((Self::$name, $text)),*];
        }
    };
}

flag_consts!(CommandFlags {
    /// May modify the dataset.
    WRITE = 0, "write";
    /// Only reads the dataset.
    READONLY = 1, "readonly";
    /// May grow memory use; refused when the server is over `maxmemory`.
    DENYOOM = 2, "denyoom";
    /// Implemented by a module.
    MODULE = 3, "module";
    /// Administrative: changes or inspects server state; dangerous to relay blindly.
    ADMIN = 4, "admin";
    /// Part of the publish/subscribe protocol.
    PUBSUB = 5, "pubsub";
    /// Not allowed inside a Lua script or function.
    NOSCRIPT = 6, "noscript";
    /// May block the connection until data arrives or a timeout expires.
    BLOCKING = 7, "blocking";
    /// Allowed while the server is loading its dataset.
    LOADING = 8, "loading";
    /// Allowed on a replica with stale data.
    STALE = 9, "stale";
    /// Not shown in MONITOR.
    SKIP_MONITOR = 10, "skip_monitor";
    /// Not logged in SLOWLOG.
    SKIP_SLOWLOG = 11, "skip_slowlog";
    /// Accepted on an importing cluster slot after ASKING.
    ASKING = 12, "asking";
    /// Constant or O(log N) time; never delays the server.
    FAST = 13, "fast";
    /// Allowed before authentication.
    NO_AUTH = 14, "no_auth";
    /// May be replicated even though it is not a write (e.g. PUBLISH, PFCOUNT).
    MAY_REPLICATE = 15, "may_replicate";
    /// Available in Sentinel mode.
    SENTINEL = 16, "sentinel";
    /// Available only in Sentinel mode.
    ONLY_SENTINEL = 17, "only_sentinel";
    /// May take no keys although it has key specs (EVAL with zero keys).
    NO_MANDATORY_KEYS = 18, "no_mandatory_keys";
    /// Refused unless enabled in the server configuration (DEBUG, MODULE).
    PROTECTED = 19, "protected";
    /// Module command with its own key extraction callback.
    MODULE_GETKEYS = 20, "module_getkeys";
    /// Module command that refuses to run in a cluster.
    MODULE_NO_CLUSTER = 21, "module_no_cluster";
    /// Refused while the replica loads a dataset asynchronously.
    NO_ASYNC_LOADING = 22, "no_async_loading";
    /// Not allowed inside MULTI.
    NO_MULTI = 23, "no_multi";
    /// Key positions depend on the arguments, not only on fixed indexes.
    MOVABLEKEYS = 24, "movablekeys";
    /// Allowed while a script is busy.
    ALLOW_BUSY = 25, "allow_busy";
    /// Module command with its own channel extraction callback.
    MODULE_GETCHANNELS = 26, "module_getchannels";
    /// Tip: the reply may differ between two servers with the same data
    /// (RANDOMKEY, SCAN, TIME), so a shadow-read comparison is meaningless.
    NONDETERMINISTIC_OUTPUT = 27, "nondeterministic_output";
    /// Tip: the reply's elements may come in a different order on another
    /// server (SMEMBERS, HGETALL), so compare it as a set.
    NONDETERMINISTIC_OUTPUT_ORDER = 28, "nondeterministic_output_order";
});

/// Flags of one key spec: how the command uses the keys it finds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeySpecFlags(pub(crate) u32);

flag_consts!(KeySpecFlags {
    /// Read-only access to the key's value.
    RO = 0, "RO";
    /// Reads and writes the key's value.
    RW = 1, "RW";
    /// Overwrites the key without reading it.
    OW = 2, "OW";
    /// Removes the key.
    RM = 3, "RM";
    /// Returns, copies or uses user data from the key.
    ACCESS = 4, "access";
    /// Updates data in place (SETRANGE, INCR).
    UPDATE = 5, "update";
    /// Adds data without modifying existing data (LPUSH).
    INSERT = 6, "insert";
    /// Deletes data from the key (LREM, DEL).
    DELETE = 7, "delete";
    /// Not a key: a shard channel name (SPUBLISH); skipped by key extraction.
    NOT_KEY = 8, "not_key";
    /// The spec may miss keys; Redis falls back to a hand-written extractor.
    INCOMPLETE = 9, "incomplete";
    /// The real flags depend on the arguments (SET ... GET, BITFIELD).
    VARIABLE_FLAGS = 10, "variable_flags";
});

macro_rules! bitset_impl {
    ($ty:ident) => {
        impl $ty {
            /// The empty set.
            pub const EMPTY: Self = Self(0);

            /// True when every bit of `other` is set in `self`.
            #[must_use]
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// True when any bit of `other` is set in `self`.
            #[must_use]
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }

            /// The union of both sets.
            #[must_use]
            pub const fn union(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }

            /// The raw bits (stable only within one build of the table).
            #[must_use]
            pub const fn bits(self) -> u32 {
                self.0
            }

            /// Redis names of the set flags, in bit order.
            pub fn names(self) -> impl Iterator<Item = &'static str> {
                Self::ALL
                    .iter()
                    .filter(move |(f, _)| self.contains(*f))
                    .map(|(_, n)| *n)
            }
        }

        impl std::ops::BitOr for $ty {
            type Output = Self;
            fn bitor(self, rhs: Self) -> Self {
                self.union(rhs)
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_set().entries(self.names()).finish()
            }
        }
    };
}

bitset_impl!(CommandFlags);
bitset_impl!(KeySpecFlags);

impl KeySpecFlags {
    /// True when a key found by this spec may be modified: RW, OW or RM, or
    /// an insert, update or delete of its data.
    #[must_use]
    pub const fn is_write(self) -> bool {
        self.intersects(Self(
            Self::RW.0 | Self::OW.0 | Self::RM.0 | Self::INSERT.0 | Self::UPDATE.0 | Self::DELETE.0,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contains_and_names() {
        let f = CommandFlags::WRITE | CommandFlags::FAST;
        assert!(f.contains(CommandFlags::WRITE));
        assert!(!f.contains(CommandFlags::WRITE | CommandFlags::ADMIN));
        assert!(f.intersects(CommandFlags::WRITE | CommandFlags::ADMIN));
        assert_eq!(f.names().collect::<Vec<_>>(), ["write", "fast"]);
        assert_eq!(format!("{f:?}"), r#"{"write", "fast"}"#);
    }

    #[test]
    fn key_write_bits() {
        assert!(!(KeySpecFlags::RO | KeySpecFlags::ACCESS).is_write());
        assert!((KeySpecFlags::OW | KeySpecFlags::UPDATE).is_write());
        assert!(KeySpecFlags::RM.is_write());
        assert!((KeySpecFlags::RW | KeySpecFlags::ACCESS).is_write());
    }
}
