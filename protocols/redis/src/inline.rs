//! Inline commands: the telnet-style `SET k "a b"\r\n` form Redis accepts
//! besides RESP arrays.
//!
//! Upstream connections always receive RESP, so an inline line is split
//! exactly as Redis's `sdssplitargs` splits it and then re-encoded as a
//! RESP array of bulk strings.

/// Splits one inline line (without its line end) into arguments.
///
/// Follows `sdssplitargs`: blanks separate arguments; `"..."` understands
/// `\n \r \t \b \a \xHH` and `\<any>` escapes; `'...'` understands only
/// `\'`; a closing quote must be followed by a blank or the end; a NUL byte
/// ends the line as it does for the C code.
///
/// Returns `None` on unbalanced quotes or a quote followed by a non-blank.
pub(crate) fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // Everything from a NUL byte on is invisible to Redis's C-string parser.
    let line = match line.iter().position(|&b| b == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            let c = at(p);
            if inq {
                if c == b'\\'
                    && at(p + 1) == b'x'
                    && hex(at(p + 2)).is_some()
                    && hex(at(p + 3)).is_some()
                {
                    cur.push(hex(at(p + 2))? * 16 + hex(at(p + 3))?);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    cur.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return None;
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            p += 1;
        }
        args.push(cur);
    }
}

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::split_args;

    fn split(s: &[u8]) -> Option<Vec<String>> {
        split_args(s).map(|v| {
            v.into_iter()
                .map(|a| String::from_utf8_lossy(&a).into_owned())
                .collect()
        })
    }

    #[test]
    fn splits_like_sdssplitargs() {
        assert_eq!(split(b"SET k v").unwrap(), ["SET", "k", "v"]);
        assert_eq!(split(b"  GET \t k  ").unwrap(), ["GET", "k"]);
        assert_eq!(split(b"SET k \"a b\"").unwrap(), ["SET", "k", "a b"]);
        assert_eq!(
            split(b"SET k \"\\x41\\n\\\"\"").unwrap(),
            ["SET", "k", "A\n\""]
        );
        assert_eq!(split(b"SET k 'it\\'s'").unwrap(), ["SET", "k", "it's"]);
        assert_eq!(split(b"SET k 'a\\nb'").unwrap(), ["SET", "k", "a\\nb"]);
        assert_eq!(split(b"SET k \"\"").unwrap(), ["SET", "k", ""]);
        assert!(split(b"a\"b c\"d").is_none());
        assert_eq!(split(b"a\"b c\" d").unwrap(), ["ab c", "d"]);
        assert_eq!(split(b"").unwrap(), Vec::<String>::new());
        assert_eq!(split(b"GET k\0ignored").unwrap(), ["GET", "k"]);
        assert_eq!(split(b"a\x0bb").unwrap(), ["a\x0bb"]);
    }

    #[test]
    fn refuses_unbalanced_quotes() {
        assert!(split(b"SET k \"abc").is_none());
        assert!(split(b"SET k 'abc").is_none());
        assert!(split(b"SET k \"abc\"x").is_none());
        assert!(split(b"SET k \"abc\\").is_none());
    }
}
