//! Glob patterns with Redis `MATCH` semantics (`*`, `?`, `[a-z]`, `[^x]`, `\`).
//!
//! Hand-written rather than taken from a glob crate: path-oriented crates
//! treat `/` specially and compile to regexes, while keyspace routing needs
//! exactly what Redis's `SCAN MATCH` does (backfill relies on both agreeing)
//! and sits on every request's path, where the common `prefix:*` form must
//! cost one `starts_with`.

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// `*`: matches everything.
    Any,
    /// `literal*` with no other metacharacters.
    Prefix(Vec<u8>),
    /// No metacharacters at all.
    Exact(Vec<u8>),
    /// Anything else, matched by [`glob_match`].
    Glob(Vec<u8>),
}

/// Why a pattern was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Empty string.
    #[error("pattern is empty")]
    Empty,
    /// `[` without `]`.
    #[error("pattern \"{0}\" has a '[' without a closing ']'")]
    UnclosedClass(String),
    /// Trailing `\`.
    #[error("pattern \"{0}\" ends with a lone '\\'")]
    TrailingEscape(String),
}

fn is_meta(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b'\\')
}

impl Pattern {
    /// Compiles `text`, refusing patterns Redis would read differently than the operator meant.
    ///
    /// # Errors
    /// See [`PatternError`].
    pub fn compile(text: &str) -> Result<Pattern, PatternError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(PatternError::Empty);
        }
        check_syntax(text)?;
        if bytes == b"*" {
            return Ok(Pattern::Any);
        }
        let (last, body) = bytes.split_last().expect("non-empty");
        if !bytes.iter().any(|&b| is_meta(b)) {
            return Ok(Pattern::Exact(bytes.to_vec()));
        }
        if *last == b'*' && !body.iter().any(|&b| is_meta(b)) {
            return Ok(Pattern::Prefix(body.to_vec()));
        }
        Ok(Pattern::Glob(bytes.to_vec()))
    }

    /// Whether `subject` matches.
    #[must_use]
    #[inline]
    pub fn matches(&self, subject: &[u8]) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Prefix(prefix) => subject.starts_with(prefix),
            Pattern::Exact(exact) => subject == exact.as_slice(),
            Pattern::Glob(glob) => glob_match(glob, subject),
        }
    }
}

fn check_syntax(text: &str) -> Result<(), PatternError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if i + 1 == bytes.len() => return Err(PatternError::TrailingEscape(text.into())),
            b'\\' => i += 2,
            b'[' => {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j] != b']' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                if j >= bytes.len() {
                    return Err(PatternError::UnclosedClass(text.into()));
                }
                i = j + 1;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Redis `stringmatchlen` (case-sensitive), iterative with single-star backtracking.
#[must_use]
pub fn glob_match(pattern: &[u8], subject: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while s < subject.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    backtrack = Some((p, s));
                    continue;
                }
                b'?' => {
                    p += 1;
                    s += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(pattern, p, subject[s])
                        && matched
                    {
                        p = next;
                        s += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == subject[s] {
                        p += 2;
                        s += 1;
                        continue;
                    }
                }
                literal => {
                    if literal == subject[s] {
                        p += 1;
                        s += 1;
                        continue;
                    }
                }
            }
        }
        match backtrack {
            Some((star_p, star_s)) => {
                backtrack = Some((star_p, star_s + 1));
                p = star_p;
                s = star_s + 1;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// Matches `c` against the class starting at `pattern[open] == b'['`;
/// returns (matched, index after the closing `]`).
fn class_match(pattern: &[u8], open: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = open + 1;
    let negate = pattern.get(i) == Some(&b'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    while i < pattern.len() && pattern[i] != b']' {
        if pattern[i] == b'\\' && i + 1 < pattern.len() {
            matched |= pattern[i + 1] == c;
            i += 2;
        } else if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            let (lo, hi) = (
                pattern[i].min(pattern[i + 2]),
                pattern[i].max(pattern[i + 2]),
            );
            matched |= (lo..=hi).contains(&c);
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, subject: &str) -> bool {
        Pattern::compile(pattern)
            .unwrap()
            .matches(subject.as_bytes())
    }

    #[test]
    fn compiles_common_forms_to_fast_paths() {
        assert_eq!(Pattern::compile("*").unwrap(), Pattern::Any);
        assert_eq!(
            Pattern::compile("session:*").unwrap(),
            Pattern::Prefix(b"session:".to_vec())
        );
        assert_eq!(
            Pattern::compile("config").unwrap(),
            Pattern::Exact(b"config".to_vec())
        );
        assert!(matches!(Pattern::compile("a*b").unwrap(), Pattern::Glob(_)));
    }

    #[test]
    fn matches_like_redis() {
        assert!(m("session:*", "session:42"));
        assert!(!m("session:*", "sessions"));
        assert!(m("h?llo", "hello") && !m("h?llo", "hllo"));
        assert!(m("h[ae]llo", "hallo") && !m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo") && !m("h[^e]llo", "hello"));
        assert!(m("h[a-c]llo", "hbllo") && !m("h[a-c]llo", "hdllo"));
        assert!(m("a*b*c", "axxbyyc") && !m("a*b*c", "axxbyy"));
        assert!(m("a\\*b", "a*b") && !m("a\\*b", "axb"));
        assert!(m("*:*", "x:y") && !m("*:*", "xy"));
        assert!(m("**", ""));
    }

    #[test]
    fn refuses_patterns_that_cannot_mean_what_was_written() {
        assert_eq!(Pattern::compile(""), Err(PatternError::Empty));
        assert!(matches!(
            Pattern::compile("user:[abc"),
            Err(PatternError::UnclosedClass(_))
        ));
        assert!(matches!(
            Pattern::compile("user\\"),
            Err(PatternError::TrailingEscape(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn fast_paths_agree_with_the_general_matcher(
            pattern in "[a-c:*?]{1,6}",
            subject in "[a-c:]{0,8}",
        ) {
            let compiled = Pattern::compile(&pattern).unwrap();
            proptest::prop_assert_eq!(
                compiled.matches(subject.as_bytes()),
                glob_match(pattern.as_bytes(), subject.as_bytes())
            );
        }
    }
}
