//! The RocketMQ accounts file (`rocketmq.accounts_file`): the AccessKey /
//! SecretKey pairs clients of a migration sign their requests with, one
//! `ACCESS_KEY SECRET_KEY` per line, blank lines and `#` comments ignored.
//! Config validation reads it to refuse a bad file; the RocketMQ adapter
//! builds its signature checks from the same pairs.

use std::path::Path;

/// Accounts a file may hold; bounds memory for a wrong file.
pub const MAX_ACCOUNTS: usize = 10_000;

/// Why an accounts file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// A line is not `ACCESS_KEY SECRET_KEY`.
    #[error("{path} line {line}: expected ACCESS_KEY SECRET_KEY")]
    Syntax {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
    },
    /// More accounts than the proxy keeps.
    #[error("{path}: more than {MAX_ACCOUNTS} accounts")]
    TooMany {
        /// The file.
        path: String,
    },
}

/// Parses an accounts file's text (`path` names it in errors) into
/// (access key, secret key) pairs, in file order.
///
/// # Errors
/// [`AccountsError::Syntax`] or [`AccountsError::TooMany`].
pub fn parse(path: &str, text: &str) -> Result<Vec<(String, String)>, AccountsError> {
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(ak), Some(sk), None) = (words.next(), words.next(), words.next()) else {
            return Err(AccountsError::Syntax {
                path: path.to_owned(),
                line: n + 1,
            });
        };
        if pairs.len() >= MAX_ACCOUNTS {
            return Err(AccountsError::TooMany {
                path: path.to_owned(),
            });
        }
        pairs.push((ak.to_owned(), sk.to_owned()));
    }
    Ok(pairs)
}

/// Reads and parses an accounts file.
///
/// # Errors
/// Any [`AccountsError`].
pub fn load(path: &Path) -> Result<Vec<(String, String)>, AccountsError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| AccountsError::Read {
        path: shown.clone(),
        reason: e.to_string(),
    })?;
    parse(&shown, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_in_order_comments_skipped_and_bad_lines_named() {
        let pairs = parse("f", "# c\nalice s3cret\n\n  bob other  \n").unwrap();
        assert_eq!(
            pairs,
            vec![
                ("alice".to_owned(), "s3cret".to_owned()),
                ("bob".to_owned(), "other".to_owned())
            ]
        );
        assert_eq!(
            parse("acc", "alice\n").unwrap_err().to_string(),
            "acc line 1: expected ACCESS_KEY SECRET_KEY"
        );
        assert_eq!(
            parse("acc", "a b c\n").unwrap_err().to_string(),
            "acc line 1: expected ACCESS_KEY SECRET_KEY"
        );
        let many: String = (0..=MAX_ACCOUNTS).map(|i| format!("k{i} s\n")).collect();
        assert_eq!(
            parse("acc", &many).unwrap_err().to_string(),
            format!("acc: more than {MAX_ACCOUNTS} accounts")
        );
        let missing = load(Path::new("/nonexistent/accounts")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read /nonexistent/accounts: "),
            "{missing}"
        );
    }
}
