//! Key extraction checked against the server itself: the cases in
//! `support/getkeys_cases.rs` are `COMMAND GETKEYSANDFLAGS` answers of the
//! Redis that generated the command table.

#[path = "support/getkeys_cases.rs"]
#[rustfmt::skip]
mod getkeys_cases;

use bytes::Bytes;
use cutover_redis::{keys, lookup};

#[test]
fn keys_match_command_getkeysandflags() {
    assert!(getkeys_cases::CASES.len() > 50);
    for (line, expected) in getkeys_cases::CASES {
        let args: Vec<Bytes> = line
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let spec = lookup(&args).unwrap_or_else(|| panic!("{line:?}: unknown command"));
        let got = keys(spec, &args);
        match expected {
            Some(want) => {
                let got: Vec<(usize, bool)> = got
                    .unwrap_or_else(|e| panic!("{line:?}: {e}"))
                    .iter()
                    .map(|k| (k.index, k.write))
                    .collect();
                assert_eq!(&got, want, "{line:?}");
            }
            // Redis refused: the command has no keys (or the line is invalid).
            None => assert!(got.is_ok_and(|k| k.is_empty()), "{line:?}"),
        }
    }
}
