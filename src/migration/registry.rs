//! Live, lock-free view of every topic's state for the request path.
//!
//! A session resolves a key or topic to a [`TopicHandle`] once and then reads
//! its state with one atomic load per request; the controller is the only
//! writer, after the store has made the transition durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use super::driver::Driver;
use super::pattern::Pattern;
use super::state::State;
use crate::config::MigrationConfig;

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

/// One migration's topics and its protocol driver.
pub struct MigrationHandle {
    /// The migration's configuration.
    pub config: Arc<MigrationConfig>,
    /// Name, shared with topic handles.
    pub name: Arc<str>,
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
    /// `initial` is called per named topic pattern and returns its persisted position.
    pub fn new(
        config: Arc<MigrationConfig>,
        mut initial: impl FnMut(&str) -> (State, u64),
    ) -> Self {
        let name: Arc<str> = Arc::from(config.name.as_str());
        let keyspaces = config
            .topics
            .iter()
            .filter_map(|topic| {
                let topic_name = topic.name.as_deref()?;
                let pattern = Pattern::compile(&topic.pattern).ok()?;
                let (state, epoch) = initial(topic_name);
                let handle = TopicHandle::new(name.clone(), Arc::from(topic_name), state, epoch);
                Some((pattern, Arc::new(handle)))
            })
            .collect();
        MigrationHandle {
            config,
            name,
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
        let initial = super::TopicRecord::initial(self.config.initial_state);
        match store.register(&self.name, name, initial).await {
            Ok(record) => {
                let handle = self.insert_discovered(TopicHandle::new(
                    self.name.clone(),
                    Arc::from(name),
                    record.state,
                    record.epoch,
                ));
                crate::metrics::publish_topic_state(&handle);
                crate::metrics::register_topic(&handle);
                tracing::info!(
                    migration = %self.name, topic = %name, state = %record.state,
                    protocol = self.config.protocol.as_str(), "topic discovered"
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
    use crate::config::parse;

    #[test]
    fn first_matching_keyspace_wins_and_persisted_positions_are_used() {
        let config = parse(
            r#"
clusters:
  - { name: a, protocol: redis, endpoints: ["127.0.0.1:1"] }
  - { name: b, protocol: redis, endpoints: ["127.0.0.1:2"] }
migrations:
  - name: m
    protocol: redis
    listen: 127.0.0.1:3
    source: a
    target: b
    topics: [ { name: s, match: "session:*" }, { name: rest, match: "*" } ]
"#,
        )
        .unwrap();
        let migration = MigrationHandle::new(Arc::new(config.migrations[0].clone()), |name| {
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
