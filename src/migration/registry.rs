//! Live, lock-free view of every topic's state for the request path.
//!
//! A session resolves a key or topic to a [`TopicHandle`] once and then reads
//! its state with one atomic load per request; the controller is the only
//! writer, after the store has made the transition durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::driver::Driver;
use super::observer::Observer;
use super::state::State;
use crate::pattern::Pattern;

/// One topic (Redis keyspace) of one migration.
#[derive(Debug)]
pub struct TopicHandle {
    /// Migration name.
    pub migration: Arc<str>,
    /// Topic name.
    pub name: Arc<str>,
    /// `epoch << 8 | state index`, so state and epoch are read together.
    packed: AtomicU64,
}

impl TopicHandle {
    /// A handle in `state` at `epoch`.
    #[must_use]
    pub fn new(migration: Arc<str>, name: Arc<str>, state: State, epoch: u64) -> Self {
        TopicHandle {
            migration,
            name,
            packed: AtomicU64::new(pack(state, epoch)),
        }
    }

    /// Current state (one atomic load).
    #[inline]
    #[must_use]
    pub fn state(&self) -> State {
        self.snapshot().0
    }

    /// Current (state, epoch), consistent with each other.
    #[inline]
    #[must_use]
    pub fn snapshot(&self) -> (State, u64) {
        let packed = self.packed.load(Ordering::Acquire);
        let state = State::from_index((packed & 0xff) as u8).expect("only valid states are stored");
        (state, packed >> 8)
    }

    /// Publishes a state made durable by the controller.
    pub(crate) fn publish(&self, state: State, epoch: u64) {
        self.packed.store(pack(state, epoch), Ordering::Release);
    }
}

fn pack(state: State, epoch: u64) -> u64 {
    (epoch << 8) | u64::from(state.index())
}

/// What the core needs to know of one configured migration. The
/// configuration layer builds it, so the core depends on no config format
/// and knows no protocol by name.
#[derive(Clone, Debug)]
pub struct MigrationSpec {
    /// Migration name.
    pub name: String,
    /// Where a topic the store has never seen starts.
    pub initial_state: State,
    /// Named keyspaces (Redis) in config order: name and pattern.
    pub keyspaces: Vec<(String, Pattern)>,
    /// Whether topics are discovered from traffic (Kafka, RocketMQ), so the
    /// ones a previous run persisted are listed again at start.
    pub discovers_topics: bool,
}

/// One migration's topics and its protocol driver.
pub struct MigrationHandle {
    /// Name, shared with topic handles.
    pub name: Arc<str>,
    /// Where a newly discovered topic starts.
    initial_state: State,
    /// Whether topics are discovered from traffic.
    discovers_topics: bool,
    /// Told of every topic's registration and state.
    observer: Arc<dyn Observer>,
    /// Patterns in config order with the keyspace each names (Redis).
    keyspaces: Vec<(Pattern, Arc<TopicHandle>)>,
    /// Topics discovered from traffic (Kafka, RocketMQ).
    discovered: dashmap::DashMap<Arc<str>, Arc<TopicHandle>>,
    driver: OnceLock<Arc<dyn Driver>>,
}

impl std::fmt::Debug for MigrationHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrationHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MigrationHandle {
    /// A migration whose named keyspaces start at the given (state, epoch).
    ///
    /// `initial` is called per named keyspace and returns its persisted position.
    pub fn new(
        spec: &MigrationSpec,
        observer: Arc<dyn Observer>,
        mut initial: impl FnMut(&str) -> (State, u64),
    ) -> Self {
        let name: Arc<str> = Arc::from(spec.name.as_str());
        let keyspaces = spec
            .keyspaces
            .iter()
            .map(|(topic_name, pattern)| {
                let (state, epoch) = initial(topic_name);
                let handle =
                    TopicHandle::new(name.clone(), Arc::from(topic_name.as_str()), state, epoch);
                (pattern.clone(), Arc::new(handle))
            })
            .collect();
        MigrationHandle {
            name,
            initial_state: spec.initial_state,
            discovers_topics: spec.discovers_topics,
            observer,
            keyspaces,
            discovered: dashmap::DashMap::new(),
            driver: OnceLock::new(),
        }
    }

    /// The keyspace `key` belongs to: the first pattern that matches.
    #[inline]
    #[must_use]
    pub fn keyspace_for(&self, key: &[u8]) -> Option<&Arc<TopicHandle>> {
        self.keyspaces
            .iter()
            .find(|(pattern, _)| pattern.matches(key))
            .map(|(_, handle)| handle)
    }

    /// Named keyspaces with their patterns, in config order.
    pub fn keyspaces(&self) -> impl Iterator<Item = (&Pattern, &Arc<TopicHandle>)> {
        self.keyspaces.iter().map(|(p, h)| (p, h))
    }

    /// Every topic: named keyspaces first, then discovered topics by name.
    #[must_use]
    pub fn topics(&self) -> Vec<Arc<TopicHandle>> {
        let mut discovered: Vec<_> = self.discovered.iter().map(|e| e.value().clone()).collect();
        discovered.sort_by(|a, b| a.name.cmp(&b.name));
        self.keyspaces
            .iter()
            .map(|(_, h)| h.clone())
            .chain(discovered)
            .collect()
    }

    /// The topic called `name`.
    #[must_use]
    pub fn topic(&self, name: &str) -> Option<Arc<TopicHandle>> {
        self.keyspaces
            .iter()
            .map(|(_, h)| h)
            .find(|h| &*h.name == name)
            .cloned()
            .or_else(|| self.discovered.get(name).map(|e| e.value().clone()))
    }

    /// Whether topics are discovered from traffic rather than named.
    #[must_use]
    pub fn discovers_topics(&self) -> bool {
        self.discovers_topics
    }

    /// Where this migration's topics are reported.
    #[must_use]
    pub fn observer(&self) -> &Arc<dyn Observer> {
        &self.observer
    }

    /// Adds a topic discovered from traffic; returns the existing one if known.
    pub fn insert_discovered(&self, handle: TopicHandle) -> Arc<TopicHandle> {
        self.discovered
            .entry(handle.name.clone())
            .or_insert_with(|| Arc::new(handle))
            .clone()
    }

    /// Registers a topic seen in traffic: durably first (the store keeps an
    /// existing record), then in the live registry with its state metrics,
    /// so `ctl` can move it. Returns the new handle; `None` (with a logged
    /// warning) when the store refused, in which case the topic stays
    /// unlisted until seen again.
    pub async fn discover(
        &self,
        store: &dyn super::store::StateStore,
        name: &str,
    ) -> Option<Arc<TopicHandle>> {
        let initial = super::TopicRecord::initial(self.initial_state);
        match store.register(&self.name, name, initial).await {
            Ok(record) => {
                let handle = self.insert_discovered(TopicHandle::new(
                    self.name.clone(),
                    Arc::from(name),
                    record.state,
                    record.epoch,
                ));
                self.observer.registered(&handle);
                tracing::info!(
                    migration = %self.name, topic = %name, state = %record.state,
                    "topic discovered"
                );
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(
                    migration = %self.name, topic = %name, error = %e,
                    "could not persist a discovered topic; it stays unlisted until seen again"
                );
                None
            }
        }
    }

    /// Installs the protocol driver (once, at start-up).
    pub fn set_driver(&self, driver: Arc<dyn Driver>) {
        // A second call would mean two sessions claim one migration: keep the first.
        let _ = self.driver.set(driver);
    }

    /// The protocol driver, if the protocol is served by this build.
    #[must_use]
    pub fn driver(&self) -> Option<&Arc<dyn Driver>> {
        self.driver.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::migration::observer::Unobserved;

    #[test]
    fn first_matching_keyspace_wins_and_persisted_positions_are_used() {
        let spec = MigrationSpec {
            name: "m".into(),
            initial_state: State::Source,
            keyspaces: vec![
                ("s".into(), Pattern::compile("session:*").unwrap()),
                ("rest".into(), Pattern::compile("*").unwrap()),
            ],
            discovers_topics: false,
        };
        let migration = MigrationHandle::new(&spec, Arc::new(Unobserved), |name| {
            if name == "s" {
                (State::Cutover, 9)
            } else {
                (State::Source, 0)
            }
        });
        let session = migration.keyspace_for(b"session:1").unwrap();
        assert_eq!(
            (&*session.name, session.snapshot()),
            ("s", (State::Cutover, 9))
        );
        assert_eq!(&*migration.keyspace_for(b"user:1").unwrap().name, "rest");
        session.publish(State::Target, 10);
        assert_eq!(
            migration.topic("s").unwrap().snapshot(),
            (State::Target, 10)
        );
    }
}
