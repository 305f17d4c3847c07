//! Key positions of the commands the proxy routes most, and the error
//! cases, through the public `lookup` + `keys` API.

use bytes::Bytes;
use cutover_redis::{
    CommandFlags, KeyError, KeySpecFlags, has_incomplete_keys, keys, lookup, table,
};

fn args(line: &str) -> Vec<Bytes> {
    line.split(' ')
        .map(|a| Bytes::copy_from_slice(if a == "\"\"" { b"" } else { a.as_bytes() }))
        .collect()
}

/// Key indexes and write bits of `line`.
fn key_list(line: &str) -> Result<Vec<(usize, bool)>, KeyError> {
    let a = args(line);
    let spec = lookup(&a).unwrap_or_else(|| panic!("{line}: unknown command"));
    keys(spec, &a).map(|k| k.iter().map(|k| (k.index, k.write)).collect())
}

fn ok(line: &str) -> Vec<(usize, bool)> {
    key_list(line).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn single_and_multi_key_commands() {
    assert_eq!(ok("GET k"), [(1, false)]);
    assert_eq!(ok("set k v"), [(1, true)]);
    assert_eq!(ok("SET k v NX GET"), [(1, true)]);
    assert_eq!(ok("MGET a b c"), [(1, false), (2, false), (3, false)]);
    assert_eq!(ok("MSET a 1 b 2"), [(1, true), (3, true)]);
    assert_eq!(ok("DEL a b"), [(1, true), (2, true)]);
    assert_eq!(ok("CLIENT SETNAME x"), []);
    assert_eq!(ok("OBJECT ENCODING k"), [(2, false)]);
    assert_eq!(ok("PING"), []);
}

#[test]
fn keynum_commands() {
    assert_eq!(ok("EVAL s 0"), []);
    assert_eq!(ok("EVAL s 0 a1 a2"), []);
    assert_eq!(ok("EVAL s 2 k1 k2 a1"), [(3, true), (4, true)]);
    assert_eq!(ok("EVAL_RO s 1 k1"), [(3, false)]);
    assert_eq!(
        ok("ZUNIONSTORE d 2 a b WEIGHTS 1 2"),
        [(1, true), (3, false), (4, false)]
    );
    assert_eq!(ok("LMPOP 2 a b LEFT"), [(2, true), (3, true)]);
    assert!(matches!(
        key_list("EVAL s 3 k1 k2"),
        Err(KeyError::KeyOutOfRange { .. })
    ));
    assert!(matches!(
        key_list("EVAL s x k1"),
        Err(KeyError::InvalidNumKeys { index: 2, .. })
    ));
    assert!(matches!(
        key_list("EVAL s -1 k1"),
        Err(KeyError::InvalidNumKeys { .. })
    ));
    assert!(matches!(
        key_list("EVAL s 99999999999999999999 k"),
        Err(KeyError::InvalidNumKeys { .. })
    ));
    assert!(matches!(
        key_list("EVAL s 9223372036854775807 k"),
        Err(KeyError::KeyOutOfRange { .. })
    ));
    assert!(matches!(
        key_list("ZUNIONSTORE d 3 a b"),
        Err(KeyError::KeyOutOfRange { .. })
    ));
}

#[test]
fn keyword_commands() {
    assert_eq!(ok("XREAD STREAMS s1 s2 0 0"), [(2, false), (3, false)]);
    assert_eq!(ok("XREAD COUNT 1 BLOCK 0 STREAMS s 0"), [(6, false)]);
    assert_eq!(
        ok("XREADGROUP GROUP g c STREAMS s1 s2 > >"),
        [(5, false), (6, false)]
    );
    // A consumer group named "STREAMS" does not confuse the search, which
    // starts at argument 4.
    assert_eq!(ok("XREADGROUP GROUP STREAMS c STREAMS s >"), [(5, false)]);
    // No keyword, no keys (the server will refuse the command).
    assert_eq!(ok("XREAD COUNT 1 BLOCK 0"), []);
    assert_eq!(ok("GEORADIUS k 0 0 1 km STORE d"), [(1, false), (7, true)]);
    assert!(matches!(key_list("GEORADIUS k 0 0 1 km STORE"), Ok(v) if v == [(1, false)]));
}

#[test]
fn blocking_commands() {
    assert_eq!(ok("BLPOP a b 0"), [(1, true), (2, true)]);
    assert_eq!(ok("BLMOVE src dst LEFT RIGHT 0"), [(1, true), (2, true)]);
    assert_eq!(ok("BZMPOP 0 2 a b MIN"), [(3, true), (4, true)]);
    for line in [
        "BLPOP a 0",
        "BLMOVE a b LEFT LEFT 0",
        "XREAD BLOCK 0 STREAMS s 0",
        "WAIT 1 0",
    ] {
        assert!(lookup(&args(line)).unwrap().is_blocking(), "{line}");
    }
}

#[test]
fn incomplete_specs_use_redis_extractors() {
    let incomplete: Vec<&str> = table::commands()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
        .filter(|c| has_incomplete_keys(c))
        .map(|c| c.name)
        .collect();
    // Each of these has a hand-written extractor in `keys`; a table from a
    // newer Redis that adds one must add its extractor too.
    assert_eq!(incomplete, ["migrate", "sort", "sort_ro"]);

    let sort = lookup(&args("SORT k")).unwrap();
    assert!(sort.flags.contains(CommandFlags::MOVABLEKEYS));
    assert_eq!(ok("SORT k"), [(1, false)]);
    assert_eq!(ok("SORT k LIMIT 0 1 STORE d"), [(1, false), (6, true)]);
    assert_eq!(ok("SORT k STORE d1 STORE d2"), [(1, false), (5, true)]);
    // BY's pattern "store" is skipped, so only the real option counts.
    assert_eq!(ok("SORT k BY store STORE d"), [(1, false), (5, true)]);
    assert_eq!(ok("SORT k BY store"), [(1, false)]);
    assert_eq!(ok("SORT_RO k BY p GET q"), [(1, false)]);

    assert_eq!(ok("MIGRATE h 1 k 0 5000"), [(3, true)]);
    assert_eq!(
        ok("MIGRATE h 1 \"\" 0 5000 KEYS a b"),
        [(7, true), (8, true)]
    );
    // A password spelled "KEYS" is AUTH's argument, not the option.
    assert_eq!(ok("MIGRATE h 1 \"\" 0 5000 AUTH KEYS KEYS a"), [(9, true)]);
    // KEYS with a non-empty key argument is a syntax error: no keys.
    assert_eq!(ok("MIGRATE h 1 k 0 5000 KEYS a"), []);
}

#[test]
fn variable_flags_follow_the_arguments() {
    let flags = |line: &str| {
        let a = args(line);
        keys(lookup(&a).unwrap(), &a).unwrap()[0].flags
    };
    assert!(flags("SET k v").contains(KeySpecFlags::OW));
    assert!(flags("SET k v get").contains(KeySpecFlags::RW | KeySpecFlags::ACCESS));
    assert_eq!(ok("BITFIELD k GET u8 0"), [(1, false)]);
    assert_eq!(ok("BITFIELD k GET u8 0 INCRBY u8 0 1"), [(1, true)]);
    assert_eq!(ok("BITFIELD k OVERFLOW FAIL"), [(1, false)]);
    assert_eq!(ok("BITFIELD k BOGUS"), [(1, true)]);
}

#[test]
fn arity_is_enforced_before_keys() {
    let e = key_list("GET").unwrap_err();
    assert!(matches!(
        e,
        KeyError::WrongArity {
            command: "get",
            arity: 2,
            got: 1
        }
    ));
    assert_eq!(
        e.to_string(),
        "wrong number of arguments for 'get' command: it takes exactly 2 arguments including its name, got 1"
    );
    assert!(matches!(
        key_list("GET a b"),
        Err(KeyError::WrongArity { .. })
    ));
    assert!(matches!(
        key_list("MGET"),
        Err(KeyError::WrongArity { arity: -2, .. })
    ));
    assert!(matches!(
        key_list("CLIENT"),
        Err(KeyError::WrongArity {
            command: "client",
            ..
        })
    ));
    assert!(matches!(
        key_list("OBJECT ENCODING"),
        Err(KeyError::WrongArity { .. })
    ));
    assert!(matches!(
        key_list("EVAL s"),
        Err(KeyError::WrongArity { .. })
    ));
}

#[test]
fn keys_never_panic_on_any_arity_of_any_command() {
    // Every command and subcommand with 0..12 arguments of assorted shapes.
    let words = [
        "k", "0", "2", "-1", "STREAMS", "KEYS", "STORE", "", "GET", "BY", "LIMIT", "x",
    ];
    for c in table::commands()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        let name: Vec<Bytes> = c
            .name
            .split('|')
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        for n in 0..12 {
            for shift in 0..words.len() {
                let mut a = name.clone();
                a.extend(
                    (0..n).map(|i| Bytes::from_static(words[(i + shift) % words.len()].as_bytes())),
                );
                if let Ok(found) = keys(c, &a) {
                    assert!(
                        found.iter().all(|k| k.index > 0 && k.index < a.len()),
                        "{}",
                        c.name
                    );
                }
            }
        }
    }
}
