//! Key extraction: which arguments of a request are keys.
//!
//! Routing by keyspace is only as good as this function, so it follows
//! Redis 7's `getKeysFromCommandWithSpecs` (src/db.c) step by step: the key
//! specs first, and for the few commands whose specs Redis itself marks as
//! incomplete, unknown or with variable flags (SORT, SORT_RO, MIGRATE, SET,
//! BITFIELD) the same hand-written extractors Redis falls back to.
//! The integration test `tests/getkeys.rs` replays the server's own
//! `COMMAND GETKEYSANDFLAGS` answers against it.

use bytes::Bytes;

use super::{BeginSearch, CommandSpec, FindKeys, KeySpec, KeySpecFlags};
use crate::wire::parse_i64;

/// One key argument of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRef {
    /// Index of the key in `args` (0 is the command name).
    pub index: usize,
    /// True when the command may modify this key (see
    /// [`KeySpecFlags::is_write`]). Taken from the key spec, which is
    /// per key: ZUNIONSTORE writes its destination and only reads its
    /// sources. Caveat from the server's own table: XREADGROUP's spec says
    /// RO although it updates the group's pending list, so for convergence
    /// treat every key of a [`CommandSpec::is_write`] command as touched.
    pub write: bool,
    /// The key spec flags Redis reports for this key.
    pub flags: KeySpecFlags,
}

/// Why the keys of a request could not be determined. In every case Redis
/// would refuse the request too, so the session can answer it with an
/// error reply (`-ERR <Display>`) without sending it upstream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The argument count violates the command's arity.
    #[error("wrong number of arguments for '{command}' command: it takes {} {} arguments including its name, got {got}", if *.arity < 0 { "at least" } else { "exactly" }, .arity.unsigned_abs())]
    WrongArity {
        /// Command name (`container|sub` for a subcommand).
        command: &'static str,
        /// The command's arity (negative: minimum).
        arity: i32,
        /// Arguments given, including the command name.
        got: usize,
    },
    /// The key-count argument is not a non-negative integer.
    #[error("'{command}' expects a non-negative integer key count at argument {index}")]
    InvalidNumKeys {
        /// Command name.
        command: &'static str,
        /// Index of the key-count argument.
        index: usize,
    },
    /// The key count or a keyword points past the last argument.
    #[error("'{command}' names a key at argument {index} but only {argc} arguments were given")]
    KeyOutOfRange {
        /// Command name.
        command: &'static str,
        /// Index of the missing key (possibly far beyond `argc`).
        index: i64,
        /// Arguments given, including the command name.
        argc: usize,
    },
    /// A key spec this crate cannot evaluate (only possible with a table
    /// generated from a newer Redis that adds incomplete specs).
    #[error("the key positions of '{command}' cannot be determined from its key specs")]
    Unsupported {
        /// Command name.
        command: &'static str,
    },
}

/// True when the command's key specs cannot find every key by themselves
/// (a spec flagged `incomplete` or with an unknown begin-search). In Redis
/// 7.0 these are SORT and SORT_RO (`STORE dest`, `BY`/`GET` patterns) and
/// MIGRATE (`KEYS k1 k2`); [`keys`] handles each of them with the extractor
/// Redis uses, but code that reads `key_specs` directly must not.
#[must_use]
pub fn has_incomplete_keys(spec: &CommandSpec) -> bool {
    spec.key_specs.iter().any(|s| {
        s.flags.contains(KeySpecFlags::INCOMPLETE)
            || s.begin_search == BeginSearch::Unknown
            || s.find_keys == FindKeys::Unknown
    })
}

/// The keys of `args` (a whole request, `args[0]` the command name) for
/// the command `spec` found by [`super::lookup`], in Redis's order.
///
/// Keys of specs flagged `not_key` (shard channels) are skipped. A command
/// without keys returns an empty vector. Never panics and never indexes
/// outside `args`.
///
/// # Errors
/// [`KeyError::WrongArity`] when `args.len()` violates the arity;
/// [`KeyError::InvalidNumKeys`] / [`KeyError::KeyOutOfRange`] when a key
/// count is not a number or exceeds the arguments (`EVAL s 3 k1`).
pub fn keys(spec: &CommandSpec, args: &[Bytes]) -> Result<Vec<KeyRef>, KeyError> {
    let argc = args.len();
    let arity_ok = if spec.arity >= 0 {
        argc == spec.arity.unsigned_abs() as usize
    } else {
        argc >= spec.arity.unsigned_abs() as usize
    };
    if !arity_ok {
        return Err(KeyError::WrongArity {
            command: spec.name,
            arity: spec.arity,
            got: argc,
        });
    }
    match spec.name {
        "sort" => Ok(sort_keys(args)),
        "sort_ro" => Ok(vec![key(1, KeySpecFlags::RO | KeySpecFlags::ACCESS)]),
        "migrate" => Ok(migrate_keys(args)),
        "set" => Ok(vec![set_key(args)]),
        "bitfield" => Ok(vec![bitfield_key(args)]),
        _ => keys_from_specs(spec, args),
    }
}

fn key(index: usize, flags: KeySpecFlags) -> KeyRef {
    KeyRef {
        index,
        write: flags.is_write(),
        flags,
    }
}

fn eq(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// `getKeysUsingKeySpecs`, with its "invalid spec" exits turned into
/// typed errors instead of a silent fallback to zero keys.
fn keys_from_specs(spec: &CommandSpec, args: &[Bytes]) -> Result<Vec<KeyRef>, KeyError> {
    let mut out = Vec::new();
    for ks in spec.key_specs {
        if ks.flags.contains(KeySpecFlags::NOT_KEY) {
            continue;
        }
        if ks.flags.contains(KeySpecFlags::INCOMPLETE) {
            return Err(KeyError::Unsupported { command: spec.name });
        }
        let Some(first) = begin_search(ks, args, spec.name)? else {
            continue;
        };
        push_range(spec, ks, args, first, &mut out)?;
    }
    Ok(out)
}

/// Index of the first key of `ks`, or `None` when its keyword is absent.
fn begin_search(
    ks: &KeySpec,
    args: &[Bytes],
    command: &'static str,
) -> Result<Option<i64>, KeyError> {
    let argc = args.len() as i64;
    match ks.begin_search {
        BeginSearch::Index(i) => Ok(Some(i64::from(i))),
        BeginSearch::Keyword { keyword, startfrom } => {
            let startfrom = i64::from(startfrom);
            let start = if startfrom > 0 {
                startfrom
            } else {
                argc + startfrom
            };
            // Redis stops at argc-1 going forward (a keyword in the last
            // argument has no key after it) and at index 1 going backwards.
            let found = if startfrom > 0 {
                (start..argc - 1).find(|&i| eq(&args[i as usize], keyword))
            } else if start < argc {
                (2..=start).rev().find(|&i| eq(&args[i as usize], keyword))
            } else {
                None
            };
            Ok(found.map(|i| i + 1))
        }
        BeginSearch::Unknown => Err(KeyError::Unsupported { command }),
    }
}

fn push_range(
    spec: &CommandSpec,
    ks: &KeySpec,
    args: &[Bytes],
    first: i64,
    out: &mut Vec<KeyRef>,
) -> Result<(), KeyError> {
    let argc = args.len() as i64;
    let command = spec.name;
    let (first, last, step) = match ks.find_keys {
        FindKeys::Range {
            lastkey,
            keystep,
            limit,
        } => {
            let (lastkey, limit) = (i64::from(lastkey), i64::from(limit));
            let last = if lastkey >= 0 {
                first + lastkey
            } else if limit == 0 {
                argc + lastkey
            } else if limit < 0 {
                return Err(KeyError::Unsupported { command });
            } else {
                first + ((argc - first) / limit + lastkey)
            };
            (first, last, i64::from(keystep))
        }
        FindKeys::Keynum {
            keynumidx,
            firstkey,
            keystep,
        } => {
            let idx = first + i64::from(keynumidx);
            let Some(arg) = usize::try_from(idx).ok().and_then(|i| args.get(i)) else {
                return Err(KeyError::KeyOutOfRange {
                    command,
                    index: idx,
                    argc: args.len(),
                });
            };
            let numkeys = parse_i64(arg)
                .filter(|n| *n >= 0)
                .ok_or(KeyError::InvalidNumKeys {
                    command,
                    index: idx as usize,
                })?;
            let first = first + i64::from(firstkey);
            let step = i64::from(keystep);
            // Redis treats zero keys as "no keys" (EVAL s 0).
            if numkeys == 0 {
                return Ok(());
            }
            let last = first.saturating_add(numkeys.saturating_sub(1).saturating_mul(step));
            (first, last, step)
        }
        FindKeys::Unknown => return Err(KeyError::Unsupported { command }),
    };
    if step <= 0 {
        return Err(KeyError::Unsupported { command });
    }
    if first < 1 || first >= argc || last >= argc || last < first {
        // A negative-arity command with a missing key: the server replies
        // with a syntax error, so there is nothing to route.
        let index = if first >= argc || first < 1 {
            first
        } else {
            last
        };
        return Err(KeyError::KeyOutOfRange {
            command,
            index,
            argc: args.len(),
        });
    }
    let mut i = first;
    while i <= last {
        out.push(key(i as usize, ks.flags));
        i += step;
    }
    Ok(())
}

/// `sortGetKeys`: the sorted key, plus the last `STORE dest`, skipping the
/// arguments of LIMIT (2), GET (1) and BY (1) so a pattern named "store"
/// is not mistaken for the option.
fn sort_keys(args: &[Bytes]) -> Vec<KeyRef> {
    let mut out = vec![key(1, KeySpecFlags::RO | KeySpecFlags::ACCESS)];
    let mut store = None;
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        if eq(a, "limit") {
            i += 2;
        } else if eq(a, "get") || eq(a, "by") {
            i += 1;
        } else if eq(a, "store") && i + 1 < args.len() {
            store = Some(i + 1);
        }
        i += 1;
    }
    if let Some(dest) = store {
        out.push(key(dest, KeySpecFlags::OW | KeySpecFlags::UPDATE));
    }
    out
}

/// `migrateGetKeys`: `MIGRATE host port key db timeout`, or with an empty
/// key argument the keys after `KEYS`, skipping AUTH's and AUTH2's
/// arguments so a password spelled "keys" is not taken for the option.
fn migrate_keys(args: &[Bytes]) -> Vec<KeyRef> {
    let flags = KeySpecFlags::RW | KeySpecFlags::ACCESS | KeySpecFlags::DELETE;
    let (mut first, mut num) = (3, 1);
    let mut i = 6;
    while i < args.len() {
        let a = &args[i];
        if eq(a, "keys") {
            if args[3].is_empty() {
                first = i + 1;
                num = args.len() - first;
            } else {
                // Syntax error in Redis: leave it to the server.
                num = 0;
            }
            break;
        } else if eq(a, "auth") {
            i += 1;
        } else if eq(a, "auth2") {
            i += 2;
        }
        i += 1;
    }
    (first..first + num).map(|i| key(i, flags)).collect()
}

/// `setGetKeys`: SET reads the old value only with the GET option.
fn set_key(args: &[Bytes]) -> KeyRef {
    if args.iter().skip(3).any(|a| eq(a, "get")) {
        key(
            1,
            KeySpecFlags::RW | KeySpecFlags::ACCESS | KeySpecFlags::UPDATE,
        )
    } else {
        key(1, KeySpecFlags::OW | KeySpecFlags::UPDATE)
    }
}

/// `bitfieldGetKeys`: read-only when every operation is a GET (or
/// OVERFLOW); anything else, including a syntax error, counts as a write.
fn bitfield_key(args: &[Bytes]) -> KeyRef {
    let mut readonly = true;
    let mut i = 2;
    while i < args.len() {
        let rem = args.len() - i - 1;
        let a = &args[i];
        if eq(a, "get") && rem >= 2 {
            i += 2;
        } else if eq(a, "overflow") && rem >= 1 {
            i += 1;
        } else {
            readonly = false;
            break;
        }
        i += 1;
    }
    if readonly {
        key(1, KeySpecFlags::RO | KeySpecFlags::ACCESS)
    } else {
        key(
            1,
            KeySpecFlags::RW | KeySpecFlags::ACCESS | KeySpecFlags::UPDATE,
        )
    }
}
