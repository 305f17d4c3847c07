//! Redis ACL users as the proxy needs them to authenticate clients.
//!
//! The text is Redis's own ACL file syntax, so an operator can start from
//! the source's `ACL LIST` output or `aclfile`: one `user NAME rule...` per
//! line. Only what authentication needs is read (`on`/`off`, `nopass`,
//! `>password`, `<password`, `#sha256`, `!sha256`, `resetpass`, `reset`);
//! command, key and channel rules are left to the servers. Passwords are
//! kept only as SHA-256 digests and compared in constant time.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// One user's authentication facts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct User {
    enabled: bool,
    nopass: bool,
    digests: Vec<[u8; 32]>,
}

/// Users by name, as parsed from one version of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserTable {
    users: HashMap<String, User>,
}

/// A line of the users file that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {reason}")]
pub struct UsersFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// What AUTH found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The user exists, is on and the password matches (or it is `nopass`).
    Accepted,
    /// Unknown user, disabled user or wrong password: Redis gives all three
    /// the same answer, so a client learns nothing about which it was.
    Refused,
}

impl UserTable {
    /// Parses the whole file; every bad line is reported.
    ///
    /// # Errors
    /// One [`UsersFileError`] per line that is not a valid `user` line.
    pub fn parse(text: &str) -> Result<UserTable, Vec<UsersFileError>> {
        let mut table = UserTable::default();
        let mut errors = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Err(reason) = table.apply_line(line) {
                errors.push(UsersFileError {
                    line: index + 1,
                    reason,
                });
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    fn apply_line(&mut self, line: &str) -> Result<(), String> {
        let mut words = line.split_whitespace();
        if words.next() != Some("user") {
            return Err("expected `user NAME rule...` (Redis ACL file syntax)".into());
        }
        let name = words.next().ok_or("`user` without a name")?;
        let user = self.users.entry(name.to_owned()).or_default();
        for rule in words {
            apply_rule(user, rule)?;
        }
        Ok(())
    }

    /// Whether `user` may authenticate with `password`.
    #[must_use]
    pub fn verify(&self, user: &[u8], password: &[u8]) -> Verdict {
        let Some(entry) = std::str::from_utf8(user)
            .ok()
            .and_then(|name| self.users.get(name))
        else {
            return Verdict::Refused;
        };
        if !entry.enabled {
            return Verdict::Refused;
        }
        if entry.nopass {
            return Verdict::Accepted;
        }
        let given: [u8; 32] = Sha256::digest(password).into();
        let matched = entry
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&given));
        if bool::from(matched) {
            Verdict::Accepted
        } else {
            Verdict::Refused
        }
    }

    /// Whether a new connection is authenticated as `default` without AUTH
    /// (Redis: the default user is on and `nopass`).
    #[must_use]
    pub fn default_needs_no_auth(&self) -> bool {
        self.users
            .get("default")
            .is_some_and(|u| u.enabled && u.nopass)
    }

    /// How many users the file defines.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file defines no user.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn apply_rule(user: &mut User, rule: &str) -> Result<(), String> {
    match rule {
        "on" => user.enabled = true,
        "off" => user.enabled = false,
        "nopass" => {
            user.nopass = true;
            user.digests.clear();
        }
        "resetpass" => {
            user.nopass = false;
            user.digests.clear();
        }
        "reset" => *user = User::default(),
        _ => apply_password_rule(user, rule)?,
    }
    Ok(())
}

fn apply_password_rule(user: &mut User, rule: &str) -> Result<(), String> {
    let (kind, value) = rule.split_at(rule.chars().next().map_or(0, char::len_utf8));
    let digest = match kind {
        ">" | "<" => Sha256::digest(value.as_bytes()).into(),
        "#" | "!" => parse_digest(value)
            .ok_or_else(|| format!("`{kind}` needs 64 hex digits of SHA-256, got {value:?}"))?,
        // Command, key, channel and selector rules are the clusters' business.
        _ => return Ok(()),
    };
    if matches!(kind, ">" | "#") {
        user.nopass = false;
        if !user.digests.contains(&digest) {
            user.digests.push(digest);
        }
    } else {
        user.digests.retain(|d| *d != digest);
    }
    Ok(())
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(password: &str) -> String {
        Sha256::digest(password.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn acl_list_output_parses_and_verifies() {
        let text = format!(
            "user default on nopass ~* &* +@all\n\
             user alice on #{} ~cache:* +@all -flushdb\n\
             user bob on >pw1 >pw2 ~* +@read\n\
             user carol off >pw ~* +@all\n",
            hex("s3cret")
        );
        let table = UserTable::parse(&text).unwrap();
        assert_eq!(table.len(), 4);
        assert!(table.default_needs_no_auth());
        assert_eq!(table.verify(b"alice", b"s3cret"), Verdict::Accepted);
        assert_eq!(table.verify(b"alice", b"wrong"), Verdict::Refused);
        assert_eq!(table.verify(b"bob", b"pw2"), Verdict::Accepted);
        assert_eq!(table.verify(b"carol", b"pw"), Verdict::Refused);
        assert_eq!(table.verify(b"nobody", b"pw"), Verdict::Refused);
        assert_eq!(table.verify(b"default", b"anything"), Verdict::Accepted);
    }

    #[test]
    fn removal_rules_and_resets_follow_redis() {
        let table = UserTable::parse(
            "user u on >a >b <a\nuser v on >x resetpass >y\nuser w on >z reset on nopass\n",
        )
        .unwrap();
        assert_eq!(table.verify(b"u", b"a"), Verdict::Refused);
        assert_eq!(table.verify(b"u", b"b"), Verdict::Accepted);
        assert_eq!(table.verify(b"v", b"x"), Verdict::Refused);
        assert_eq!(table.verify(b"v", b"y"), Verdict::Accepted);
        assert_eq!(table.verify(b"w", b"anything"), Verdict::Accepted);
        assert!(!table.default_needs_no_auth());
    }

    #[test]
    fn a_user_with_no_password_rule_cannot_log_in() {
        let table = UserTable::parse("user quiet on ~* +@all\n").unwrap();
        assert_eq!(table.verify(b"quiet", b""), Verdict::Refused);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let errors = UserTable::parse("user ok on >p\nrole x\nuser\nuser y on #abc\n").unwrap_err();
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(errors[2].reason.contains("64 hex digits"), "{errors:?}");
    }
}
