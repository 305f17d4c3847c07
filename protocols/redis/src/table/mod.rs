//! The Redis command table: what each command is (read, write, admin, ...)
//! and where its keys are.
//!
//! The session routes every request by keyspace, so it needs two facts per
//! command that only the server truly knows: its class and its key
//! positions. Both come from `generated.rs`, which `tools/gen_commands.py`
//! writes from a live server's `COMMAND INFO` and `COMMAND DOCS`, never by
//! hand. This module adds the lookup and the classification rule on top.
//! To refresh the table for another Redis version, start that
//! `redis-server` and run `python3 tools/gen_commands.py --port PORT`.

mod flags;
#[rustfmt::skip]
mod generated;
mod keys;

use bytes::Bytes;

pub use flags::{CommandFlags, KeySpecFlags};
pub use generated::REDIS_VERSION;
pub use keys::{KeyError, KeyRef, has_incomplete_keys, keys};

/// One Redis command or subcommand, as the server describes it.
#[derive(Debug, PartialEq, Eq)]
pub struct CommandSpec {
    /// Lowercase name; a subcommand is `container|sub` (`client|setname`),
    /// as Redis spells it in `COMMAND INFO` and ACL rules.
    pub name: &'static str,
    /// Argument count including the command name (and, for a subcommand,
    /// the container name): `n` means exactly `n`, `-n` at least `n`.
    pub arity: i32,
    /// Command flags and the nondeterminism tips.
    pub flags: CommandFlags,
    /// Documentation group (`COMMAND DOCS`), used by [`CommandSpec::class`].
    pub group: Group,
    /// Where the keys are, in the order Redis reports them.
    pub key_specs: &'static [KeySpec],
    /// Subcommands of a container command (CLIENT, CONFIG, OBJECT, ...),
    /// sorted by name; empty otherwise.
    pub subcommands: &'static [CommandSpec],
}

/// The documentation group of a command, from `COMMAND DOCS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// Keyspace commands (DEL, EXPIRE, SCAN, ...).
    Generic,
    /// Strings.
    String,
    /// Lists.
    List,
    /// Sets.
    Set,
    /// Sorted sets.
    SortedSet,
    /// Hashes.
    Hash,
    /// Publish/subscribe.
    PubSub,
    /// MULTI/EXEC/WATCH.
    Transactions,
    /// Connection state (AUTH, HELLO, CLIENT, SELECT, ...).
    Connection,
    /// Server administration and introspection.
    Server,
    /// Lua scripts and functions.
    Scripting,
    /// HyperLogLog.
    HyperLogLog,
    /// Redis Cluster.
    Cluster,
    /// Sentinel.
    Sentinel,
    /// Geospatial indexes.
    Geo,
    /// Streams.
    Stream,
    /// Bit operations.
    Bitmap,
    /// Module management.
    Module,
}

/// How the proxy must treat a command, derived from its flags and group by
/// [`CommandSpec::class`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// Reads keys only: may be answered by either side and shadow-read.
    Read,
    /// Modifies keys (or the whole dataset, like FLUSHALL).
    Write,
    /// Administers the server (CONFIG SET, CLIENT KILL, SHUTDOWN).
    Admin,
    /// Publish/subscribe: changes the connection into a push stream.
    PubSub,
    /// Per-connection state (AUTH, HELLO, SELECT, CLIENT SETNAME, PING).
    Connection,
    /// MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    Transaction,
    /// Lua scripts and functions (EVAL, FCALL, SCRIPT, FUNCTION).
    Scripting,
    /// Everything else (INFO, TIME, WAIT, cluster and sentinel commands).
    Other,
}

/// A key spec: where to start looking ([`BeginSearch`]) and how many keys
/// to take from there ([`FindKeys`]), as in Redis's `keySpec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// How the command uses the keys this spec finds.
    pub flags: KeySpecFlags,
    /// Where the first key is.
    pub begin_search: BeginSearch,
    /// Which arguments after the first are keys.
    pub find_keys: FindKeys,
}

/// The first step of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    /// The first key is at this argument index.
    Index(i32),
    /// The first key follows the first argument equal (ASCII case-insensitive)
    /// to `keyword`, searching forward from index `startfrom`, or backwards
    /// from `argc + startfrom` when it is negative. No keyword, no keys.
    Keyword {
        /// The keyword as Redis spells it (`STREAMS`, `KEYS`, `STORE`).
        keyword: &'static str,
        /// Where the search starts; negative counts from the end.
        startfrom: i32,
    },
    /// Redis cannot describe the position (SORT's BY/GET/STORE); a
    /// hand-written extractor in [`keys`] handles these commands.
    Unknown,
}

/// The second step of a key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// Keys from the first one up to `lastkey` (relative to the first when
    /// non-negative, to the end when negative), every `keystep` arguments.
    /// With `lastkey == -1` and `limit > 1`, only the first `1/limit` of the
    /// remaining arguments are keys (XREAD's `STREAMS k1 k2 id1 id2`).
    Range {
        /// Index of the last key: relative to the first key if >= 0, else to the end.
        lastkey: i32,
        /// Distance between keys (2 for MSET's key/value pairs).
        keystep: i32,
        /// Divisor of the remaining arguments when `lastkey` is -1; 0 = none.
        limit: i32,
    },
    /// An argument holds the number of keys (EVAL's numkeys).
    Keynum {
        /// Index of the count, relative to the begin-search result.
        keynumidx: i32,
        /// Index of the first key, relative to the begin-search result.
        firstkey: i32,
        /// Distance between keys.
        keystep: i32,
    },
    /// Redis cannot describe the keys; see [`BeginSearch::Unknown`].
    Unknown,
}

impl CommandSpec {
    /// The class of this command. The first matching rule wins:
    ///
    /// 1. `admin` flag → [`Class::Admin`] (dangerous whatever its group:
    ///    CLIENT KILL is a connection command, but kills other clients);
    /// 2. `pubsub` flag or the pubsub group → [`Class::PubSub`];
    /// 3. transactions group → [`Class::Transaction`];
    /// 4. scripting group → [`Class::Scripting`] (FUNCTION LOAD too);
    /// 5. connection group → [`Class::Connection`];
    /// 6. `write` flag → [`Class::Write`];
    /// 7. `readonly` flag → [`Class::Read`];
    /// 8. otherwise [`Class::Other`].
    #[must_use]
    pub fn class(&self) -> Class {
        let f = self.flags;
        if f.contains(CommandFlags::ADMIN) {
            Class::Admin
        } else if f.contains(CommandFlags::PUBSUB) || self.group == Group::PubSub {
            Class::PubSub
        } else if self.group == Group::Transactions {
            Class::Transaction
        } else if self.group == Group::Scripting {
            Class::Scripting
        } else if self.group == Group::Connection {
            Class::Connection
        } else if f.contains(CommandFlags::WRITE) {
            Class::Write
        } else if f.contains(CommandFlags::READONLY) {
            Class::Read
        } else {
            Class::Other
        }
    }

    /// True when the command may block the connection until data arrives
    /// or a timeout expires; a blocked upstream connection cannot be shared.
    ///
    /// That is the `blocking` flag (BLPOP, BLMOVE, BZMPOP, XREAD and
    /// XREADGROUP, even without their BLOCK option), plus WAIT, which
    /// blocks until replicas acknowledge but which Redis 7.0 does not flag.
    #[must_use]
    pub fn is_blocking(&self) -> bool {
        self.flags.contains(CommandFlags::BLOCKING) || self.name == "wait"
    }

    /// True when the command may modify the dataset (the `write` flag).
    #[must_use]
    pub fn is_write(&self) -> bool {
        self.flags.contains(CommandFlags::WRITE)
    }

    /// True when the command only reads (the `readonly` flag).
    #[must_use]
    pub fn is_readonly(&self) -> bool {
        self.flags.contains(CommandFlags::READONLY)
    }

    /// True when the key positions depend on the arguments (EVAL, XREAD,
    /// SORT ... STORE); [`keys`] handles all of these for built-in commands.
    #[must_use]
    pub fn has_movable_keys(&self) -> bool {
        self.flags.contains(CommandFlags::MOVABLEKEYS)
    }

    /// True when the command has at least one key spec that names real keys.
    #[must_use]
    pub fn has_keys(&self) -> bool {
        self.key_specs
            .iter()
            .any(|s| !s.flags.contains(KeySpecFlags::NOT_KEY))
    }

    /// True when two servers with the same data may answer differently,
    /// so shadow-read comparison must be skipped.
    #[must_use]
    pub fn is_nondeterministic(&self) -> bool {
        self.flags.contains(CommandFlags::NONDETERMINISTIC_OUTPUT)
    }

    /// The part of the name after `|` for a subcommand, else the name.
    #[must_use]
    pub fn short_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }

    /// Case-insensitive lookup of one of this container's subcommands.
    #[must_use]
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static CommandSpec> {
        find(self.subcommands, name, CommandSpec::short_name)
    }
}

/// Every top-level command of the table, sorted by name.
#[must_use]
pub fn commands() -> &'static [CommandSpec] {
    generated::COMMANDS
}

/// Case-insensitive lookup of a top-level command by name.
#[must_use]
pub fn lookup_name(name: &[u8]) -> Option<&'static CommandSpec> {
    find(generated::COMMANDS, name, |c| c.name)
}

/// Case-insensitive lookup of `args[0]`, and of `args[1]` when `args[0]`
/// is a container command (CLIENT, CONFIG, OBJECT, XINFO, ...).
///
/// Returns `None` for an unknown command or an unknown subcommand (Redis
/// refuses both). A container without a subcommand argument returns the
/// container itself, whose arity then makes [`keys`] fail as Redis would.
/// Does not allocate.
#[must_use]
pub fn lookup(args: &[Bytes]) -> Option<&'static CommandSpec> {
    let cmd = lookup_name(args.first()?)?;
    if cmd.subcommands.is_empty() {
        return Some(cmd);
    }
    match args.get(1) {
        Some(sub) => cmd.subcommand(sub),
        None => Some(cmd),
    }
}

/// Binary search of a slice sorted by `key`, comparing `name` ASCII
/// case-insensitively without allocating.
fn find(
    table: &'static [CommandSpec],
    name: &[u8],
    key: fn(&CommandSpec) -> &'static str,
) -> Option<&'static CommandSpec> {
    table
        .binary_search_by(|c| key(c).bytes().cmp(name.iter().map(u8::to_ascii_lowercase)))
        .ok()
        .map(|i| &table[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Bytes> {
        line.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn spec(line: &str) -> &'static CommandSpec {
        lookup(&args(line)).unwrap_or_else(|| panic!("{line} not found"))
    }

    #[test]
    fn table_is_sorted_and_complete() {
        let t = commands();
        assert!(t.len() >= 200, "only {} commands", t.len());
        assert!(t.windows(2).all(|w| w[0].name < w[1].name));
        for c in t {
            assert!(
                c.subcommands
                    .windows(2)
                    .all(|w| w[0].short_name() < w[1].short_name()),
                "{} subcommands unsorted",
                c.name
            );
            for s in c.subcommands {
                assert!(s.name.starts_with(&format!("{}|", c.name)));
                assert!(lookup_name(s.name.as_bytes()).is_none() || s.name == c.name);
            }
        }
        assert!(REDIS_VERSION.starts_with('7'));
    }

    #[test]
    fn lookup_is_case_insensitive() {
        assert_eq!(spec("get k").name, "get");
        assert_eq!(spec("GeT k").name, "get");
        assert_eq!(spec("EVAL_RO s 0").name, "eval_ro");
        assert_eq!(spec("client SetName x").name, "client|setname");
        assert_eq!(spec("CONFIG GET maxmemory").name, "config|get");
        assert_eq!(spec("object ENCODING k").name, "object|encoding");
        assert_eq!(spec("XINFO STREAM k").name, "xinfo|stream");
        assert_eq!(spec("CLIENT").name, "client");
    }

    #[test]
    fn unknown_commands_are_none() {
        assert!(lookup(&args("NOSUCHCOMMAND x")).is_none());
        assert!(lookup(&args("CLIENT NOSUCHSUB")).is_none());
        assert!(lookup(&args("ge")).is_none());
        assert!(lookup(&args("gett")).is_none());
        assert!(lookup(&[]).is_none());
        assert!(lookup(&[Bytes::new()]).is_none());
        assert!(lookup(&[Bytes::from_static(b"G\xffT")]).is_none());
    }

    #[test]
    fn classes() {
        let cases = [
            ("GET k", Class::Read),
            ("SET k v", Class::Write),
            ("FLUSHALL", Class::Write),
            ("CONFIG SET a b", Class::Admin),
            ("CLIENT KILL ID 1", Class::Admin),
            ("SUBSCRIBE c", Class::PubSub),
            ("PUBLISH c m", Class::PubSub),
            ("MULTI", Class::Transaction),
            ("WATCH k", Class::Transaction),
            ("EVAL s 0", Class::Scripting),
            ("FUNCTION LOAD x", Class::Scripting),
            ("CLIENT SETNAME x", Class::Connection),
            ("PING", Class::Connection),
            ("SELECT 1", Class::Connection),
            ("INFO", Class::Other),
            ("SCAN 0", Class::Read),
        ];
        for (line, class) in cases {
            assert_eq!(spec(line).class(), class, "{line}");
        }
    }

    #[test]
    fn flags_from_the_server() {
        assert!(spec("BLPOP k 0").is_blocking());
        assert!(spec("XREAD STREAMS k 0").is_blocking());
        assert!(!spec("GET k").is_blocking());
        assert!(spec("SET k v").is_write());
        assert!(spec("GET k").is_readonly());
        assert!(spec("SORT k").has_movable_keys());
        assert!(spec("EVAL s 0").flags.contains(CommandFlags::NOSCRIPT));
        assert!(spec("RANDOMKEY").is_nondeterministic());
        assert!(
            spec("SMEMBERS k")
                .flags
                .contains(CommandFlags::NONDETERMINISTIC_OUTPUT_ORDER)
        );
        assert!(spec("GET k").has_keys());
        assert!(!spec("SPUBLISH c m").has_keys());
        assert_eq!(spec("GET k").group, Group::String);
        assert_eq!(spec("ZADD k 1 m").group, Group::SortedSet);
    }
}
