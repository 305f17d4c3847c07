//! A secret given inline or as the first line of a file. A file is read
//! again at every use, so an operator rotates a cluster's password by
//! rewriting its file: the next login uses the new one, with no restart
//! and no watcher. Uses are logins (a new upstream connection, a
//! re-authentication), never requests, so one small read each is nothing.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a secret cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Neither an inline value nor a file was configured.
    #[error("no password or password_file")]
    Missing,
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error, kept so a caller can tell not-found from denied.
        #[source]
        source: std::io::Error,
    },
}

/// A password or key, inline or from a file (never printed).
pub struct Secret {
    file: Option<PathBuf>,
    /// The inline value, or the file's last good read.
    last: Mutex<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// `inline` if given, else the first line of `file`, read now (so a
    /// missing file fails at start, not at the first login).
    ///
    /// # Errors
    /// [`SecretError::Missing`] when neither is given,
    /// [`SecretError::Read`] when the file cannot be read.
    pub fn open(inline: Option<&String>, file: Option<&Path>) -> Result<Secret, SecretError> {
        match (inline, file) {
            (Some(value), _) => Ok(Secret::inline(value.clone())),
            (None, Some(file)) => Ok(Secret {
                last: Mutex::new(read(file)?),
                file: Some(file.to_owned()),
            }),
            (None, None) => Err(SecretError::Missing),
        }
    }

    /// A fixed value (e.g. a password a client gave).
    #[must_use]
    pub fn inline(value: String) -> Secret {
        Secret {
            file: None,
            last: Mutex::new(value),
        }
    }

    /// The value now: the file's first line as it reads at this moment;
    /// when it cannot be read, the last value read (logged), so a file
    /// being replaced by a non-atomic editor does not fail a login.
    #[must_use]
    pub fn current(&self) -> String {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(file) = &self.file {
            match read(file) {
                Ok(value) => *last = value,
                Err(e) => tracing::warn!(error = %e, "using the secret read before"),
            }
        }
        last.clone()
    }
}

fn read(file: &Path) -> Result<String, SecretError> {
    Ok(std::fs::read_to_string(file)
        .map_err(|source| SecretError::Read {
            path: file.to_owned(),
            source,
        })?
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_used_at_the_next_read_and_a_vanished_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "first\nignored\n").unwrap();
        let secret = Secret::open(None, Some(&file)).unwrap();
        assert_eq!(secret.current(), "first");
        std::fs::write(&file, "second\n").unwrap();
        assert_eq!(secret.current(), "second");
        std::fs::remove_file(&file).unwrap();
        assert_eq!(secret.current(), "second");
        assert_eq!(
            Secret::open(Some(&"inline".to_owned()), Some(&file))
                .unwrap()
                .current(),
            "inline"
        );
        let missing = Secret::open(None, Some(&file)).unwrap_err();
        assert!(
            matches!(&missing, SecretError::Read { path, source }
                if *path == file && source.kind() == std::io::ErrorKind::NotFound),
            "{missing:?}"
        );
        assert!(missing.to_string().starts_with("cannot read "), "{missing}");
        assert_eq!(
            Secret::open(None, None).unwrap_err().to_string(),
            "no password or password_file"
        );
    }
}
