//! The embedded state store: one directory holding `state.json` (replaced
//! atomically), `history.jsonl` and `actions.jsonl` (append-only) and `blobs/`.
//!
//! Crash safety: `state.json` is written to a temporary file, fsynced,
//! renamed over the old one and the directory fsynced, so a reader sees the
//! old or the new file, never a torn one. The history line is appended after
//! the state is durable; a crash between the two leaves the history one line
//! short, which `open` repairs from the record's `last_transition`. A torn
//! final history line (crash mid-append) is cut off on open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{AdminAction, Snapshot, StateStore, StoreError};
use crate::migration::machine::{TopicRecord, Transition};

const STATE_FILE: &str = "state.json";
const HISTORY_FILE: &str = "history.jsonl";
const ACTIONS_FILE: &str = "actions.jsonl";
const LOCK_FILE: &str = "lock";
const BLOB_DIR: &str = "blobs";
/// Bumped when the layout of `state.json` changes incompatibly.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    topics: Vec<StoredTopic>,
}

#[derive(Serialize, Deserialize)]
struct StoredTopic {
    migration: String,
    topic: String,
    #[serde(flatten)]
    record: TopicRecord,
}

/// File-backed [`StateStore`]; holds an exclusive lock on its directory.
pub struct FileStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

struct Inner {
    snapshot: Snapshot,
    history: File,
    _lock: File,
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.display().to_string(),
        source,
    }
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, repairing a history
    /// left short or torn by a crash.
    ///
    /// # Errors
    /// IO failures, a corrupt `state.json`, or another process holding the lock.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(dir.join(BLOB_DIR)).map_err(io_err("create", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(io_err("create", &lock_path))?;
        lock.try_lock().map_err(|_| StoreError::Locked {
            path: lock_path.display().to_string(),
        })?;
        let snapshot = read_state(&dir.join(STATE_FILE))?;
        let history_path = dir.join(HISTORY_FILE);
        let mut entries = read_history(&history_path)?;
        let mut history = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&history_path)
            .map_err(io_err("open", &history_path))?;
        for missing in transitions_missing_from(&snapshot, &entries) {
            append_line(&mut history, &history_path, &missing)?;
            entries.push(missing);
        }
        Ok(FileStore {
            dir,
            inner: Mutex::new(Inner {
                snapshot,
                history,
                _lock: lock,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> Result<(), StoreError> {
        let file = StateFile {
            version: FORMAT_VERSION,
            topics: snapshot
                .iter()
                .map(|((migration, topic), record)| StoredTopic {
                    migration: migration.clone(),
                    topic: topic.clone(),
                    record: record.clone(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&file).expect("state serializes");
        write_atomically(&self.dir, STATE_FILE, &bytes)
    }
}

/// Every last transition recorded in the snapshot whose history line is absent.
fn transitions_missing_from(snapshot: &Snapshot, history: &[Transition]) -> Vec<Transition> {
    snapshot
        .values()
        .filter_map(|record| record.last_transition.as_ref())
        .filter(|t| {
            !history
                .iter()
                .any(|h| h.migration == t.migration && h.topic == t.topic && h.epoch == t.epoch)
        })
        .cloned()
        .collect()
}

fn read_state(path: &Path) -> Result<Snapshot, StoreError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Snapshot::new()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    };
    let file: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if file.version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not {FORMAT_VERSION}",
            file.version
        )));
    }
    Ok(file
        .topics
        .into_iter()
        .map(|t| ((t.migration, t.topic), t.record))
        .collect())
}

/// Reads an append-only log (history, actions), truncating a torn last line
/// left by a crash mid-append.
fn read_history<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    let mut entries = Vec::new();
    let mut valid_len = 0;
    for line in text.split_inclusive('\n') {
        let parsed = line
            .strip_suffix('\n')
            .and_then(|l| serde_json::from_str::<T>(l).ok());
        match parsed {
            Some(entry) => {
                entries.push(entry);
                valid_len += line.len();
            }
            None => break,
        }
    }
    if valid_len < text.len() {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io_err("open", path))?;
        file.set_len(valid_len as u64)
            .map_err(io_err("truncate", path))?;
        file.sync_all().map_err(io_err("fsync", path))?;
    }
    Ok(entries)
}

fn append_line<T: Serialize>(file: &mut File, path: &Path, entry: &T) -> Result<(), StoreError> {
    let mut line = serde_json::to_vec(entry).expect("log entries serialize");
    line.push(b'\n');
    file.write_all(&line).map_err(io_err("append", path))?;
    file.sync_data().map_err(io_err("fsync", path))
}

/// Write temp, fsync, rename, fsync the directory.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let target = dir.join(name);
    let file_name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("state");
    let temp = target.with_file_name(format!(".{file_name}.tmp"));
    let mut file = File::create(&temp).map_err(io_err("create", &temp))?;
    file.write_all(bytes).map_err(io_err("write", &temp))?;
    file.sync_all().map_err(io_err("fsync", &temp))?;
    fs::rename(&temp, &target).map_err(io_err("rename", &target))?;
    let parent = target.parent().unwrap_or(dir);
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", parent))
}

fn blob_file(name: &str) -> Result<String, StoreError> {
    let safe = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if safe {
        Ok(format!("{BLOB_DIR}/{name}"))
    } else {
        Err(StoreError::BadBlobName(name.to_owned()))
    }
}

#[async_trait::async_trait]
impl StateStore for FileStore {
    async fn load(&self) -> Result<Snapshot, StoreError> {
        Ok(self.lock().snapshot.clone())
    }

    async fn register(
        &self,
        migration: &str,
        topic: &str,
        initial: TopicRecord,
    ) -> Result<TopicRecord, StoreError> {
        let mut inner = self.lock();
        let key = (migration.to_owned(), topic.to_owned());
        if let Some(existing) = inner.snapshot.get(&key) {
            return Ok(existing.clone());
        }
        let mut next = inner.snapshot.clone();
        next.insert(key, initial.clone());
        self.write_snapshot(&next)?;
        inner.snapshot = next;
        Ok(initial)
    }

    async fn commit(&self, transition: &Transition) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let mut next = inner.snapshot.clone();
        next.insert(
            (transition.migration.clone(), transition.topic.clone()),
            transition.record(),
        );
        self.write_snapshot(&next)?;
        inner.snapshot = next;
        let path = self.dir.join(HISTORY_FILE);
        append_line(&mut inner.history, &path, transition)
    }

    async fn history(&self) -> Result<Vec<Transition>, StoreError> {
        let _guard = self.lock();
        read_history(&self.dir.join(HISTORY_FILE))
    }

    async fn record_action(&self, action: &AdminAction) -> Result<(), StoreError> {
        let _guard = self.lock();
        let path = self.dir.join(ACTIONS_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        append_line(&mut file, &path, action)
    }

    async fn actions(&self) -> Result<Vec<AdminAction>, StoreError> {
        let _guard = self.lock();
        read_history(&self.dir.join(ACTIONS_FILE))
    }

    async fn put_blob(&self, name: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let file = blob_file(name)?;
        let _guard = self.lock();
        write_atomically(&self.dir, &file, &bytes)
    }

    async fn get_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(blob_file(name)?);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::machine::{Request, plan};
    use crate::migration::state::{Action, State};

    fn advance(record: &TopicRecord, topic: &str) -> Transition {
        let request = Request {
            migration: "m",
            topic,
            action: Action::Advance,
            force: false,
            actor: "test",
            now_ms: 5,
        };
        plan(record, &request, vec![]).unwrap()
    }

    #[tokio::test]
    async fn commits_survive_reopen_with_history() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FileStore::open(dir.path()).unwrap();
            let record = store
                .register("m", "t", TopicRecord::initial(State::Source))
                .await
                .unwrap();
            let first = advance(&record, "t");
            store.commit(&first).await.unwrap();
            store.commit(&advance(&first.record(), "t")).await.unwrap();
        }
        let store = FileStore::open(dir.path()).unwrap();
        let snapshot = store.load().await.unwrap();
        let record = &snapshot[&("m".into(), "t".into())];
        assert_eq!((record.state, record.epoch), (State::DualWrite, 2));
        assert_eq!(store.history().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn actions_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let action = |n: u64| AdminAction {
            at_ms: n,
            migration: "m".into(),
            topic: Some("t".into()),
            action: "shift".into(),
            params: serde_json::json!({ "percent": n }),
            actor: "ctl:alice (socket uid 1000 alice)".into(),
            outcome: "done".into(),
        };
        {
            let store = FileStore::open(dir.path()).unwrap();
            store.record_action(&action(1)).await.unwrap();
            store.record_action(&action(2)).await.unwrap();
        }
        let log = dir.path().join(ACTIONS_FILE);
        let mut file = OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(b"{\"at_ms\":3,\"migr").unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.actions().await.unwrap(), [action(1), action(2)]);
        store.record_action(&action(4)).await.unwrap();
        assert_eq!(
            store.actions().await.unwrap(),
            [action(1), action(2), action(4)]
        );
    }

    #[tokio::test]
    async fn register_keeps_an_existing_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let record = store
            .register("m", "t", TopicRecord::initial(State::Source))
            .await
            .unwrap();
        store.commit(&advance(&record, "t")).await.unwrap();
        let again = store
            .register("m", "t", TopicRecord::initial(State::Source))
            .await
            .unwrap();
        assert_eq!(again.state, State::DualRead);
    }

    #[tokio::test]
    async fn torn_history_tail_is_cut_and_missing_line_restored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = FileStore::open(dir.path()).unwrap();
            let record = store
                .register("m", "t", TopicRecord::initial(State::Source))
                .await
                .unwrap();
            store.commit(&advance(&record, "t")).await.unwrap();
        }
        // Simulate a crash after the state replace but mid-way through the history append.
        let history = dir.path().join(HISTORY_FILE);
        fs::write(&history, b"{\"migration\":\"m\",\"top").unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        let entries = store.history().await.unwrap();
        assert_eq!(
            entries.len(),
            1,
            "restored from state.json's last transition"
        );
        assert_eq!(entries[0].to, State::DualRead);
        assert!(fs::read_to_string(&history).unwrap().ends_with('\n'));
    }

    #[test]
    fn second_open_of_the_same_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = FileStore::open(dir.path()).unwrap();
        let err = FileStore::open(dir.path()).err().unwrap();
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    }

    #[tokio::test]
    async fn blobs_round_trip_and_names_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        store
            .put_blob("repair.cache.sessions", b"k1\nk2".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_blob("repair.cache.sessions")
                .await
                .unwrap()
                .unwrap(),
            b"k1\nk2"
        );
        assert_eq!(store.get_blob("absent").await.unwrap(), None);
        assert!(store.put_blob("../escape", vec![]).await.is_err());
    }
}
