//! Byte-level helpers shared by request and reply framing: finding line
//! ends and reading RESP length headers without allocating.

use crate::FrameError;

/// Longest length header accepted after its type byte: 20 digits and a
/// sign fit any `i64`; anything longer is not a length.
pub(crate) const MAX_HEADER_LINE: usize = 24;

/// Outcome of looking for a line end.
pub(crate) enum Line {
    /// The line's content ends at this index (where its `\r` is).
    End(usize),
    /// No line end yet and the line may still be valid.
    Incomplete,
}

/// Finds the `\r\n` ending the line that starts at `from`, allowing at
/// most `max` content bytes.
///
/// # Errors
/// `Ok(None)`-like [`Line::Incomplete`] while fewer than `max` content bytes
/// have arrived; `too_long(from)` once `max` is exceeded without a line
/// end; `Malformed` when a `\r` is not followed by `\n`.
pub(crate) fn find_crlf(
    buf: &[u8],
    from: usize,
    max: usize,
    too_long: impl FnOnce(usize) -> FrameError,
) -> Result<Line, FrameError> {
    let rest = buf.get(from..).unwrap_or_default();
    let window = &rest[..rest.len().min(max.saturating_add(1))];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) => match rest.get(i + 1) {
            Some(b'\n') => Ok(Line::End(from + i)),
            Some(_) => Err(FrameError::malformed(
                "carriage return not followed by line feed",
                from + i,
            )),
            None => Ok(Line::Incomplete),
        },
        None if rest.len() > max => Err(too_long(from)),
        None => Ok(Line::Incomplete),
    }
}

/// Reads the length header whose type byte is at `at`: returns the
/// declared value and the offset just past its `\r\n`, or `None` when the
/// header line is incomplete.
///
/// # Errors
/// `Malformed` when the line is not a strict decimal `i64` (the exact
/// grammar of Redis's `string2ll`: optional `-`, no leading zeros).
pub(crate) fn read_len(
    buf: &[u8],
    at: usize,
    what: &'static str,
) -> Result<Option<(i64, usize)>, FrameError> {
    match find_crlf(buf, at + 1, MAX_HEADER_LINE, |_| {
        FrameError::malformed(what, at)
    })? {
        Line::Incomplete => Ok(None),
        Line::End(end) => match parse_i64(&buf[at + 1..end]) {
            Some(n) => Ok(Some((n, end + 2))),
            None => Err(FrameError::malformed(what, at)),
        },
    }
}

/// Strict decimal `i64` as Redis's `string2ll` accepts it: optional minus,
/// no plus, no spaces, no leading zeros except "0" itself.
pub(crate) fn parse_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || (digits[0] == b'0' && (digits.len() > 1 || neg)) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if neg {
            n.checked_sub(d)?
        } else {
            n.checked_add(d)?
        };
    }
    Some(n)
}

/// Checks a non-negative declared length against `max`.
pub(crate) fn check_len(
    n: i64,
    max: usize,
    too_large: impl FnOnce(u64, usize) -> FrameError,
) -> Result<usize, FrameError> {
    let n = n.unsigned_abs();
    match usize::try_from(n) {
        Ok(len) if len <= max => Ok(len),
        _ => Err(too_large(n, max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_is_strict() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn crlf_search_respects_max() {
        let e = |o| FrameError::LineTooLong { offset: o, max: 3 };
        assert!(matches!(find_crlf(b"+abc\r\n", 1, 3, e), Ok(Line::End(4))));
        assert!(matches!(
            find_crlf(b"+abc\r", 1, 3, e),
            Ok(Line::Incomplete)
        ));
        assert!(matches!(find_crlf(b"+abc", 1, 3, e), Ok(Line::Incomplete)));
        assert!(matches!(
            find_crlf(b"+abcd", 1, 3, e),
            Err(FrameError::LineTooLong { .. })
        ));
        assert!(matches!(
            find_crlf(b"+a\rb", 1, 3, e),
            Err(FrameError::Malformed { .. })
        ));
    }
}
