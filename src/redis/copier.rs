//! Convergence: after a write is acknowledged by the authoritative side,
//! the key's *current* state there is copied to the other side
//! (DUMP + PTTL in one MULTI, then RESTORE ... REPLACE ABSTTL, or DEL when
//! the key is gone).
//!
//! Why this converges: every copy starts after the write that queued it
//! was acknowledged and reads the latest value, and copies of one key never
//! overlap (a key dirtied while its copy runs is copied again afterwards).
//! So the last copy of a key reads a state no older than its last write.
//! Failed copies go to a repair set persisted in the state store and are
//! retried with backoff; coalescing means a hot key costs one copy per
//! round trip, not one per write.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cutover_redis::{Limits, ReplyKind, encode, reply_kind};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::side::{self, Credentials, Mirror, Side, SideConn};
use super::slots::{array_elements, parse_integer};
use crate::migration::store::StateStore;
use crate::proxy::Upstream;

/// One key to converge.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Item {
    /// Keyspace index in the migration.
    pub keyspace: usize,
    /// Database.
    pub db: u32,
    /// The key.
    pub key: Bytes,
    /// Copy from this side to the other.
    pub from: Side,
}

enum Mark {
    Queued,
    Copying { again: bool },
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<Item>,
    marks: HashMap<Item, Mark>,
    repair: BTreeSet<Item>,
    repair_dirty: bool,
}

/// Copies written keys to the other side; shared by every session of a migration.
pub struct Copier {
    migration: Arc<str>,
    upstreams: [Upstream; 2],
    credentials: [Credentials; 2],
    store: Arc<dyn StateStore>,
    pending: std::sync::Mutex<Pending>,
    /// Per keyspace: keys queued or being copied.
    backlog: Vec<AtomicUsize>,
    /// Per keyspace: keys in the repair set.
    repairs: Vec<AtomicUsize>,
    /// Per keyspace: copies that failed since the proxy started (repaired
    /// or not), so a backfill can tell whether convergence held since.
    failures: Vec<std::sync::atomic::AtomicU64>,
    work: Notify,
    progress: Notify,
    /// Payload bytes restored so far (backfill paces itself on this).
    copied_bytes: std::sync::atomic::AtomicU64,
    limits: Limits,
}

/// Concurrent copies; each holds its own connection pair.
const WORKERS: usize = 4;
/// First retry delay of the repair set; doubles up to [`REPAIR_MAX_BACKOFF`].
const REPAIR_BACKOFF: Duration = Duration::from_millis(200);
/// Upper bound of the repair retry delay.
const REPAIR_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often a changed repair set is written to the store.
const REPAIR_PERSIST_EVERY: Duration = Duration::from_millis(200);

fn blob_name(migration: &str) -> String {
    format!("redis-repair.{migration}")
}

impl Copier {
    /// A copier for a migration with `keyspaces` keyspaces; loads the persisted repair set.
    pub async fn new(
        migration: Arc<str>,
        upstreams: [Upstream; 2],
        credentials: [Credentials; 2],
        store: Arc<dyn StateStore>,
        keyspaces: usize,
    ) -> Arc<Self> {
        let copier = Arc::new(Copier {
            migration,
            upstreams,
            credentials,
            store,
            pending: std::sync::Mutex::new(Pending::default()),
            backlog: (0..keyspaces).map(|_| AtomicUsize::new(0)).collect(),
            repairs: (0..keyspaces).map(|_| AtomicUsize::new(0)).collect(),
            failures: (0..keyspaces)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            work: Notify::new(),
            progress: Notify::new(),
            copied_bytes: std::sync::atomic::AtomicU64::new(0),
            limits: Limits::DEFAULT,
        });
        copier.load_repair_set().await;
        copier
    }

    /// Starts the workers, the repair loop and the repair-set persister.
    pub fn spawn(self: &Arc<Self>, shutdown: &CancellationToken) {
        for _ in 0..WORKERS {
            let copier = self.clone();
            let token = shutdown.clone();
            tokio::spawn(async move { copier.worker(token).await });
        }
        let copier = self.clone();
        let token = shutdown.clone();
        tokio::spawn(async move { copier.repair_loop(token).await });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues a key written on `item.from` (coalesced with a queued copy).
    pub fn mark(&self, item: Item) {
        let mut pending = self.lock();
        match pending.marks.get_mut(&item) {
            Some(Mark::Queued) => return,
            Some(Mark::Copying { again }) => {
                *again = true;
                return;
            }
            None => {}
        }
        self.backlog[item.keyspace].fetch_add(1, Ordering::SeqCst);
        pending.marks.insert(item.clone(), Mark::Queued);
        pending.queue.push_back(item);
        drop(pending);
        self.work.notify_one();
    }

    /// Whether a copy of this key is queued or running.
    #[must_use]
    pub fn is_pending(&self, item: &Item) -> bool {
        self.lock().marks.contains_key(item)
    }

    /// Payload bytes copied since start.
    #[must_use]
    pub fn copied_bytes(&self) -> u64 {
        self.copied_bytes.load(Ordering::Relaxed)
    }

    /// Keys of a keyspace queued or being copied.
    #[must_use]
    pub fn backlog(&self, keyspace: usize) -> usize {
        self.backlog[keyspace].load(Ordering::SeqCst)
    }

    /// Copies of a keyspace that failed since the proxy started.
    #[must_use]
    pub fn failed_copies(&self, keyspace: usize) -> u64 {
        self.failures[keyspace].load(Ordering::SeqCst)
    }

    /// Keys of a keyspace waiting in the repair set.
    #[must_use]
    pub fn repair_len(&self, keyspace: usize) -> usize {
        self.repairs[keyspace].load(Ordering::SeqCst)
    }

    /// Waits until a keyspace has nothing queued, copying or awaiting repair.
    /// Returns false if `deadline` passes first.
    pub async fn drain(&self, keyspace: usize, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let progressed = self.progress.notified();
            if self.backlog(keyspace) == 0 && self.repair_len(keyspace) == 0 {
                return true;
            }
            if self.repair_len(keyspace) > 0 {
                self.requeue_repairs();
            }
            // Re-check periodically as well: repairs wait for the repair loop.
            let wake = tokio::time::Instant::now() + REPAIR_BACKOFF;
            if tokio::time::timeout_at(wake.min(until), progressed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= until
            {
                return self.backlog(keyspace) == 0 && self.repair_len(keyspace) == 0;
            }
        }
    }

    /// Waits until a keyspace has at most `limit` copies queued or running.
    /// Returns false if `deadline` passes first.
    pub async fn drain_below(&self, keyspace: usize, limit: usize, deadline: Duration) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let progressed = self.progress.notified();
            if self.backlog(keyspace) <= limit {
                return true;
            }
            if tokio::time::timeout_at(until, progressed).await.is_err() {
                return self.backlog(keyspace) <= limit;
            }
        }
    }

    async fn next_item(&self, shutdown: &CancellationToken) -> Option<Item> {
        loop {
            let notified = self.work.notified();
            {
                let mut pending = self.lock();
                if let Some(item) = pending.queue.pop_front() {
                    pending
                        .marks
                        .insert(item.clone(), Mark::Copying { again: false });
                    return Some(item);
                }
            }
            tokio::select! {
                () = notified => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    async fn worker(self: Arc<Self>, shutdown: CancellationToken) {
        let mut conns: HashMap<(Side, u32), SideConn> = HashMap::new();
        while let Some(item) = self.next_item(&shutdown).await {
            let result = self.copy(&mut conns, &item).await;
            self.finish(item, result);
        }
    }

    fn finish(&self, item: Item, result: Result<(), String>) {
        let mut pending = self.lock();
        let again = matches!(
            pending.marks.remove(&item),
            Some(Mark::Copying { again: true })
        );
        match result {
            Ok(()) => {
                if pending.repair.remove(&item) {
                    pending.repair_dirty = true;
                    self.repairs[item.keyspace].fetch_sub(1, Ordering::SeqCst);
                }
            }
            Err(reason) => {
                tracing::warn!(
                    migration = %self.migration, key = %String::from_utf8_lossy(&item.key),
                    to = ?item.from.other(), %reason, "copy failed; key added to the repair set"
                );
                self.failures[item.keyspace].fetch_add(1, Ordering::SeqCst);
                if pending.repair.insert(item.clone()) {
                    pending.repair_dirty = true;
                    self.repairs[item.keyspace].fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if again {
            pending.marks.insert(item.clone(), Mark::Queued);
            pending.queue.push_back(item);
            drop(pending);
            self.work.notify_one();
        } else {
            self.backlog[item.keyspace].fetch_sub(1, Ordering::SeqCst);
            drop(pending);
        }
        self.progress.notify_waiters();
    }

    async fn connection<'a>(
        &self,
        conns: &'a mut HashMap<(Side, u32), SideConn>,
        side: Side,
        db: u32,
    ) -> Result<&'a mut SideConn, String> {
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry((side, db)) {
            let mirror = Mirror {
                protocol: 2,
                db,
                name: Some(Bytes::from_static(b"cutover-copier")),
            };
            let conn = side::open(
                &self.upstreams[side.index()],
                &self.credentials[side.index()],
                &mirror,
                &self.limits,
            )
            .await
            .map_err(|e| e.to_string())?;
            e.insert(conn);
        }
        Ok(conns.get_mut(&(side, db)).expect("inserted above"))
    }

    async fn copy(
        &self,
        conns: &mut HashMap<(Side, u32), SideConn>,
        item: &Item,
    ) -> Result<(), String> {
        let result = self.copy_once(conns, item).await;
        if result.is_err() {
            // A failed exchange may leave replies unread: never reuse these connections.
            conns.remove(&(item.from, item.db));
            conns.remove(&(item.from.other(), item.db));
        }
        result
    }

    async fn copy_once(
        &self,
        conns: &mut HashMap<(Side, u32), SideConn>,
        item: &Item,
    ) -> Result<(), String> {
        let read = {
            let source = self.connection(conns, item.from, item.db).await?;
            let mut request = Vec::new();
            request.extend_from_slice(&encode::command(&[b"MULTI"]));
            request.extend_from_slice(&encode::command(&[b"DUMP", &item.key]));
            request.extend_from_slice(&encode::command(&[b"PTTL", &item.key]));
            request.extend_from_slice(&encode::command(&[b"EXEC"]));
            side::call(source, &self.limits, &request).await?;
            for _ in 0..2 {
                side::read_reply(source, &self.limits).await?;
            }
            side::read_reply(source, &self.limits).await?
        };
        let elements = array_elements(&read);
        let (Some(dump), Some(pttl)) = (
            elements.first(),
            elements.get(1).and_then(|p| parse_integer(p)),
        ) else {
            return Err(format!(
                "unexpected EXEC reply {:?}",
                String::from_utf8_lossy(&read)
            ));
        };
        let command = restore_or_delete(&item.key, dump, pttl);
        self.copied_bytes
            .fetch_add(dump.len() as u64, Ordering::Relaxed);
        let target = self.connection(conns, item.from.other(), item.db).await?;
        let reply = side::call(target, &self.limits, &command).await?;
        if reply_kind(&reply) == ReplyKind::Error {
            return Err(String::from_utf8_lossy(&reply).trim_end().to_owned());
        }
        Ok(())
    }

    /// Moves every repair-set key back into the queue.
    fn requeue_repairs(&self) {
        let items: Vec<Item> = self.lock().repair.iter().cloned().collect();
        for item in items {
            self.mark(item);
        }
    }

    async fn repair_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut backoff = REPAIR_BACKOFF;
        let mut since_retry = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(REPAIR_PERSIST_EVERY) => {}
                () = shutdown.cancelled() => {
                    self.persist_repair_set().await;
                    return;
                }
            }
            self.persist_repair_set().await;
            since_retry += REPAIR_PERSIST_EVERY;
            let has_repairs = !self.lock().repair.is_empty();
            if !has_repairs {
                backoff = REPAIR_BACKOFF;
            } else if since_retry >= backoff {
                self.requeue_repairs();
                since_retry = Duration::ZERO;
                backoff = (backoff * 2).min(REPAIR_MAX_BACKOFF);
            }
        }
    }

    async fn persist_repair_set(&self) {
        let encoded = {
            let mut pending = self.lock();
            if !pending.repair_dirty {
                return;
            }
            pending.repair_dirty = false;
            encode_repair_set(&pending.repair)
        };
        if let Err(e) = self
            .store
            .put_blob(&blob_name(&self.migration), encoded)
            .await
        {
            tracing::error!(migration = %self.migration, error = %e, "repair set could not be persisted");
            self.lock().repair_dirty = true;
        }
    }

    async fn load_repair_set(&self) {
        let blob = match self.store.get_blob(&blob_name(&self.migration)).await {
            Ok(blob) => blob.unwrap_or_default(),
            Err(e) => {
                tracing::error!(migration = %self.migration, error = %e, "repair set could not be read");
                return;
            }
        };
        let items = decode_repair_set(&blob);
        let mut pending = self.lock();
        for item in items
            .into_iter()
            .filter(|i| i.keyspace < self.repairs.len())
        {
            self.repairs[item.keyspace].fetch_add(1, Ordering::SeqCst);
            pending.repair.insert(item);
        }
    }
}

/// RESTORE with an absolute expiry (so time spent copying does not extend
/// the TTL), or DEL when the key no longer exists.
fn restore_or_delete(key: &[u8], dump: &Bytes, pttl: i64) -> Bytes {
    let payload = bulk_payload(dump);
    match (payload, pttl) {
        (None, _) | (_, -2) => encode::command(&[b"DEL", key]),
        (Some(payload), ttl) if ttl < 0 => {
            encode::command(&[b"RESTORE", key, b"0", &payload, b"REPLACE"])
        }
        (Some(payload), ttl) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            let expire_at = (now + u128::try_from(ttl).unwrap_or(0)).to_string();
            encode::command(&[
                b"RESTORE",
                key,
                expire_at.as_bytes(),
                &payload,
                b"REPLACE",
                b"ABSTTL",
            ])
        }
    }
}

/// The data of a bulk string reply, or None for a null.
pub(super) fn bulk_payload(reply: &Bytes) -> Option<Bytes> {
    let header_end = reply.windows(2).position(|w| w == b"\r\n")?;
    let len: usize = std::str::from_utf8(reply.get(1..header_end)?)
        .ok()?
        .parse()
        .ok()?;
    (reply.first() == Some(&b'$')).then(|| reply.slice(header_end + 2..header_end + 2 + len))
}

fn encode_repair_set(items: &BTreeSet<Item>) -> Vec<u8> {
    let lines: Vec<String> = items
        .iter()
        .map(|i| {
            format!(
                "{}\t{}\t{}\t{}",
                i.keyspace,
                i.db,
                i.from.index(),
                hex(&i.key)
            )
        })
        .collect();
    lines.join("\n").into_bytes()
}

fn decode_repair_set(blob: &[u8]) -> Vec<Item> {
    String::from_utf8_lossy(blob)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let keyspace = fields.next()?.parse().ok()?;
            let db = fields.next()?.parse().ok()?;
            let from = if fields.next()? == "1" {
                Side::Target
            } else {
                Side::Source
            };
            let key = unhex(fields.next()?)?;
            Some(Item {
                keyspace,
                db,
                key: Bytes::from(key),
                from,
            })
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repair_set_round_trips_binary_keys() {
        let items: BTreeSet<Item> = [
            Item {
                keyspace: 1,
                db: 3,
                key: Bytes::from_static(b"bin\x00\xff\tkey"),
                from: Side::Target,
            },
            Item {
                keyspace: 0,
                db: 0,
                key: Bytes::from_static(b"plain"),
                from: Side::Source,
            },
        ]
        .into();
        let decoded: BTreeSet<Item> = decode_repair_set(&encode_repair_set(&items))
            .into_iter()
            .collect();
        assert_eq!(decoded, items);
    }

    #[test]
    fn restore_uses_absolute_expiry_and_delete_when_gone() {
        let dump = Bytes::from_static(b"$3\r\nabc\r\n");
        assert_eq!(
            restore_or_delete(b"k", &Bytes::from_static(b"$-1\r\n"), -2),
            encode::command(&[b"DEL", b"k"])
        );
        assert_eq!(
            restore_or_delete(b"k", &dump, -2),
            encode::command(&[b"DEL", b"k"])
        );
        assert_eq!(
            restore_or_delete(b"k", &dump, -1),
            encode::command(&[b"RESTORE", b"k", b"0", b"abc", b"REPLACE"])
        );
        let with_ttl = restore_or_delete(b"k", &dump, 5_000);
        assert!(
            with_ttl.ends_with(b"$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n"),
            "{with_ttl:?}"
        );
    }
}
