//! The Kafka users clients log in to the proxy as (`kafka.users_file`):
//! SCRAM salted keys only, never passwords, one line per user and
//! mechanism, the way Kafka itself stores SCRAM credentials:
//!
//! ```text
//! # NAME MECHANISM salt=B64,stored_key=B64,server_key=B64,iterations=N
//! alice SCRAM-SHA-256 salt=...,stored_key=...,server_key=...,iterations=4096
//! ```
//!
//! SASL/PLAIN logins are checked against the same entries (the password is
//! derived with the stored salt and iterations). `cutover user add` writes
//! entries; config validation loads the file; the Kafka adapter reloads it
//! when it changes (`kafka::sasl::users`).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::scram::{self, MAX_ITERATIONS, MIN_ITERATIONS, Mechanism, ScramCredential};

/// Kafka's `kafka-configs` default.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Longest user name accepted (Kafka principals are short strings).
const MAX_NAME: usize = 256;

/// Why a users file cannot be read, or an entry cannot be added to it.
#[derive(Debug, thiserror::Error)]
pub enum UsersFileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Some lines are invalid; each sentence names its line.
    #[error("{}: {}", path.display(), errors.join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One sentence per bad line.
        errors: Vec<String>,
    },
    /// The new file could not be written or moved into place.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The entry to add is refused (name, mechanism, iterations, password)
    /// or its salt could not be drawn; the sentence says which.
    #[error("{0}")]
    Entry(String),
}

/// Every user's SCRAM credentials, by (name, mechanism).
#[derive(Debug, Default)]
pub(crate) struct UserTable {
    entries: HashMap<(String, Mechanism), ScramCredential>,
}

impl UserTable {
    /// Parses a users file's text; every bad line is reported.
    ///
    /// # Errors
    /// One sentence per bad line, with its number.
    pub(crate) fn parse(text: &str) -> Result<UserTable, Vec<String>> {
        let mut table = UserTable::default();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_line(line) {
                Ok((name, mechanism, credential)) => {
                    if table
                        .entries
                        .insert((name.clone(), mechanism), credential)
                        .is_some()
                    {
                        errors.push(format!("line {}: {name} {mechanism} given twice", i + 1));
                    }
                }
                Err(e) => errors.push(format!("line {}: {e}", i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// How many (user, mechanism) entries.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no entry.
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `user`'s credential for a SCRAM `mechanism`.
    #[must_use]
    pub(crate) fn scram(&self, user: &str, mechanism: Mechanism) -> Option<&ScramCredential> {
        self.entries.get(&(user.to_owned(), mechanism))
    }

    /// Whether `password` is `user`'s (SASL/PLAIN), checked against the
    /// user's SCRAM-SHA-256 entry, else its SCRAM-SHA-512 one.
    #[must_use]
    pub(crate) fn check_plain(&self, user: &str, password: &str) -> bool {
        [Mechanism::ScramSha256, Mechanism::ScramSha512]
            .into_iter()
            .find_map(|m| self.scram(user, m).map(|c| (m, c)))
            .is_some_and(|(m, c)| c.matches_password(m, password.as_bytes()))
    }
}

fn parse_line(line: &str) -> Result<(String, Mechanism, ScramCredential), String> {
    let mut words = line.split_whitespace();
    let (Some(name), Some(mechanism), Some(values), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(
            "expected `NAME MECHANISM salt=...,stored_key=...,server_key=...,iterations=N`".into(),
        );
    };
    check_name(name)?;
    let mechanism = match Mechanism::parse(mechanism) {
        Some(Mechanism::Plain) | None => {
            return Err(format!("{mechanism} is not SCRAM-SHA-256 or SCRAM-SHA-512"));
        }
        Some(m) => m,
    };
    let mut fields: HashMap<&str, &str> = HashMap::new();
    for pair in values.split(',') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        fields.insert(k, v);
    }
    let field = |k: &str| {
        fields
            .get(k)
            .copied()
            .ok_or_else(|| format!("{k}= is missing"))
    };
    let bytes = |k: &str| field(k).and_then(|v| scram::unb64(v).map_err(|e| format!("{k}: {e}")));
    let iterations: u32 = field("iterations")?
        .parse()
        .map_err(|_| "iterations is not a number".to_owned())?;
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        ));
    }
    let credential = ScramCredential {
        salt: bytes("salt")?,
        iterations,
        stored_key: bytes("stored_key")?,
        server_key: bytes("server_key")?,
    };
    let len = if mechanism == Mechanism::ScramSha256 {
        32
    } else {
        64
    };
    if credential.stored_key.len() != len || credential.server_key.len() != len {
        return Err(format!("{mechanism} keys are {len} bytes"));
    }
    Ok((name.to_owned(), mechanism, credential))
}

/// Whether `name` can be a user of the file.
///
/// # Errors
/// Empty, too long, or with spaces or control characters.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("a user name is 1 to {MAX_NAME} bytes"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) || name.starts_with('#') {
        return Err(format!(
            "user name {name:?} has spaces, control characters or a leading #"
        ));
    }
    Ok(())
}

/// One entry as the file writes it.
#[must_use]
fn entry_line(name: &str, mechanism: Mechanism, c: &ScramCredential) -> String {
    format!(
        "{name} {mechanism} salt={},stored_key={},server_key={},iterations={}",
        scram::b64(&c.salt),
        scram::b64(&c.stored_key),
        scram::b64(&c.server_key),
        c.iterations
    )
}

/// Reads and parses a users file.
///
/// # Errors
/// [`UsersFileError::Read`] when the file cannot be read,
/// [`UsersFileError::Invalid`] when some lines are invalid (all listed).
pub(crate) fn load(path: &Path) -> Result<UserTable, UsersFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| UsersFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_file(path, &text)
}

/// [`UserTable::parse`] with the file named in the error.
fn parse_file(path: &Path, text: &str) -> Result<UserTable, UsersFileError> {
    UserTable::parse(text).map_err(|errors| UsersFileError::Invalid {
        path: path.to_owned(),
        errors,
    })
}

/// Adds (or replaces) `name`'s `mechanism` entry in the file at `path`,
/// made from `password` with a fresh salt; the file is created (mode 0600)
/// when missing and replaced atomically, so a proxy reloading it never
/// reads half a file.
///
/// # Errors
/// [`UsersFileError::Entry`] for a bad name, mechanism, iteration count or
/// password; [`UsersFileError::Invalid`] for a file that does not parse;
/// [`UsersFileError::Read`] / [`UsersFileError::Write`] for I/O.
pub fn add(
    path: &Path,
    name: &str,
    mechanism: Mechanism,
    password: &str,
    iterations: u32,
) -> Result<(), UsersFileError> {
    check_entry(name, mechanism, password, iterations).map_err(UsersFileError::Entry)?;
    let old = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(UsersFileError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    parse_file(path, &old)?;
    let credential = ScramCredential::generate(mechanism, password.as_bytes(), iterations)
        .map_err(UsersFileError::Entry)?;
    let mut text = String::new();
    if old.is_empty() {
        text.push_str("# cutover Kafka users: NAME MECHANISM salt=B64,stored_key=B64,server_key=B64,iterations=N\n");
    }
    for line in old.lines() {
        let mut words = line.split_whitespace();
        if (words.next(), words.next()) == (Some(name), Some(mechanism.as_str())) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&entry_line(name, mechanism, &credential));
    text.push('\n');
    write_atomically(path, &text)
}

/// Why `add` refuses an entry before touching the file, as a sentence.
fn check_entry(
    name: &str,
    mechanism: Mechanism,
    password: &str,
    iterations: u32,
) -> Result<(), String> {
    check_name(name)?;
    if mechanism == Mechanism::Plain {
        return Err("PLAIN logins are checked against the SCRAM entries; add a SCRAM-SHA-256 or SCRAM-SHA-512 entry".into());
    }
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        return Err(format!(
            "iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}"
        ));
    }
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(())
}

fn write_atomically(path: &Path, text: &str) -> Result<(), UsersFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let failed = |source: std::io::Error| UsersFileError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp = tempfile_in(dir).map_err(failed)?;
    tmp.1.write_all(text.as_bytes()).map_err(failed)?;
    tmp.1.sync_all().map_err(failed)?;
    std::fs::rename(&tmp.0, path).map_err(failed)
}

/// A new file beside the users file, mode 0600 from its creation.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let name = dir.join(format!(".cutover-users.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&name);
    Ok((name.clone(), options.open(&name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_users_check_by_scram_and_plain_and_replace_their_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users");
        add(&path, "alice", Mechanism::ScramSha256, "one", 4096).unwrap();
        add(&path, "bob", Mechanism::ScramSha512, "two", 4096).unwrap();
        add(&path, "alice", Mechanism::ScramSha256, "three", 4096).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("three") && !text.contains("two"),
            "no password is stored"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let table = load(&path).unwrap();
        assert_eq!(table.len(), 2);
        assert!(table.check_plain("alice", "three"));
        assert!(!table.check_plain("alice", "one"));
        assert!(table.check_plain("bob", "two"));
        assert!(!table.check_plain("carol", "two"));
        assert!(table.scram("bob", Mechanism::ScramSha256).is_none());
    }

    #[test]
    fn bad_lines_are_reported_each_with_its_number() {
        let errors = UserTable::parse(
            "# c\nalice PLAIN salt=AA==\nbob SCRAM-SHA-256 salt=AA==,stored_key=AA==,server_key=AA==,iterations=12\ncarol SCRAM-SHA-256\n",
        )
        .unwrap_err();
        assert_eq!(
            errors,
            vec![
                "line 2: PLAIN is not SCRAM-SHA-256 or SCRAM-SHA-512",
                "line 3: iterations must be between 4096 and 1000000",
                "line 4: expected `NAME MECHANISM salt=...,stored_key=...,server_key=...,iterations=N`",
            ]
        );
        assert!(matches!(
            add(
                Path::new("/nonexistent/x"),
                "a b",
                Mechanism::ScramSha256,
                "p",
                4096
            ),
            Err(UsersFileError::Entry(_))
        ));
        assert!(matches!(
            load(Path::new("/nonexistent/x")),
            Err(UsersFileError::Read { path, source })
                if path == Path::new("/nonexistent/x")
                    && source.kind() == std::io::ErrorKind::NotFound
        ));
    }
}
