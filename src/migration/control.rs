//! Runs an operator's advance/rollback: checks, prepare, durable commit,
//! publish, applied — one topic at a time, so two operators never race on
//! the same topic and history reads in the order things happened.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::driver::{Driver, NotServed};
use super::machine::{self, CheckResult, Refusal, TopicRecord, Transition};
use super::observer::Observer;
use super::registry::{MigrationHandle, MigrationSpec, TopicHandle};
use super::state::{Action, State};
use super::store::{AdminAction, StateStore, StoreError};

/// A control request could not be carried out at all.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No migration by that name.
    #[error("no migration named \"{0}\"")]
    UnknownMigration(String),
    /// No topic by that name in the migration.
    #[error("migration \"{migration}\" has no topic \"{topic}\"")]
    UnknownTopic {
        /// Migration asked.
        migration: String,
        /// Topic asked.
        topic: String,
    },
    /// Neither topics nor `--all` were given.
    #[error("name at least one topic, or ask for all of them")]
    NoTopics,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which topics of a migration a request covers.
#[derive(Clone, Debug)]
pub enum Selection {
    /// Every known topic.
    All,
    /// These, by name.
    Topics(Vec<String>),
}

/// What happened to one topic of a transition request.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The topic moved; the transition is durable.
    Moved {
        /// The durable transition.
        transition: Transition,
    },
    /// Refused by the state machine or by failed checks.
    Refused {
        /// Topic.
        topic: String,
        /// Why, as a sentence.
        reason: String,
        /// Every check that ran.
        checks: Vec<CheckResult>,
    },
    /// Checks passed but the move failed (prepare or store); the topic did not move.
    Failed {
        /// Topic.
        topic: String,
        /// What failed.
        reason: String,
    },
}

/// The readiness report `ctl check` prints.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    /// Migration.
    pub migration: String,
    /// Topic.
    pub topic: String,
    /// Current state.
    pub from: State,
    /// The state the action leads to, if any.
    pub to: Option<State>,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// All checks pass and the action is possible.
    pub ready: bool,
}

/// The migration core's front door for the admin API.
pub struct Controller {
    store: Arc<dyn StateStore>,
    migrations: Vec<Arc<MigrationHandle>>,
    serial: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("migrations", &self.migrations)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Controller {
    /// Builds the registry from the migrations' specs and the store: every
    /// named keyspace resumes in its persisted state, or is registered in
    /// the initial state; `observer` hears of every topic from then on.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub async fn bootstrap(
        specs: &[MigrationSpec],
        store: Arc<dyn StateStore>,
        observer: Arc<dyn Observer>,
    ) -> Result<Self, StoreError> {
        let snapshot = store.load().await?;
        let mut migrations = Vec::new();
        for migration in specs {
            let mut to_register = Vec::new();
            let handle = MigrationHandle::new(migration, observer.clone(), |topic| {
                let key = (migration.name.clone(), topic.to_owned());
                match snapshot.get(&key) {
                    Some(record) => (record.state, record.epoch),
                    None => {
                        to_register.push(topic.to_owned());
                        (migration.initial_state, 0)
                    }
                }
            });
            for topic in to_register {
                store
                    .register(
                        &migration.name,
                        &topic,
                        TopicRecord::initial(migration.initial_state),
                    )
                    .await?;
            }
            for ((m, topic), record) in &snapshot {
                if *m == migration.name
                    && handle.topic(topic).is_none()
                    && migration.discovers_topics
                {
                    handle.insert_discovered(TopicHandle::new(
                        handle.name.clone(),
                        Arc::from(topic.as_str()),
                        record.state,
                        record.epoch,
                    ));
                }
            }
            for topic in handle.topics() {
                observer.registered(&topic);
            }
            migrations.push(Arc::new(handle));
        }
        Ok(Controller {
            store,
            migrations,
            serial: tokio::sync::Mutex::new(()),
        })
    }

    /// Every migration, in config order.
    #[must_use]
    pub fn migrations(&self) -> &[Arc<MigrationHandle>] {
        &self.migrations
    }

    /// The store, for protocol state (repair sets, cursors).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// The migration called `name`.
    ///
    /// # Errors
    /// [`ControlError::UnknownMigration`].
    pub fn migration(&self, name: &str) -> Result<&Arc<MigrationHandle>, ControlError> {
        self.migrations
            .iter()
            .find(|m| &*m.name == name)
            .ok_or_else(|| ControlError::UnknownMigration(name.to_owned()))
    }

    fn topic(
        &self,
        migration: &str,
        topic: &str,
    ) -> Result<(Arc<MigrationHandle>, Arc<TopicHandle>), ControlError> {
        let handle = self.migration(migration)?;
        let topic_handle = handle
            .topic(topic)
            .ok_or_else(|| ControlError::UnknownTopic {
                migration: migration.to_owned(),
                topic: topic.to_owned(),
            })?;
        Ok((handle.clone(), topic_handle))
    }

    /// Runs the readiness checks `action` would run, without moving anything.
    ///
    /// # Errors
    /// Unknown migration or topic.
    pub async fn check(
        &self,
        migration: &str,
        topic: &str,
        action: Action,
    ) -> Result<CheckReport, ControlError> {
        let (handle, topic_handle) = self.topic(migration, topic)?;
        let from = topic_handle.state();
        let to = from.after(action);
        let checks = match to {
            Some(to) => driver_of(&handle).checks(topic, from, to).await,
            None => Vec::new(),
        };
        let ready = to.is_some() && !checks.iter().any(CheckResult::blocks);
        Ok(CheckReport {
            migration: migration.to_owned(),
            topic: topic.to_owned(),
            from,
            to,
            checks,
            ready,
        })
    }

    /// Moves each selected topic one step, reporting per topic.
    ///
    /// # Errors
    /// Unknown migration or topic, or an empty selection; per-topic refusals
    /// and failures are reported in the outcomes instead.
    pub async fn transition(
        &self,
        migration: &str,
        selection: Selection,
        action: Action,
        force: bool,
        actor: &str,
    ) -> Result<Vec<Outcome>, ControlError> {
        let handle = self.migration(migration)?.clone();
        let topics = match selection {
            Selection::All => handle.topics(),
            Selection::Topics(names) if names.is_empty() => return Err(ControlError::NoTopics),
            Selection::Topics(names) => names
                .iter()
                .map(|name| self.topic(migration, name).map(|(_, t)| t))
                .collect::<Result<_, _>>()?,
        };
        if topics.is_empty() {
            return Err(ControlError::NoTopics);
        }
        let _serial = self.serial.lock().await;
        let mut outcomes = Vec::with_capacity(topics.len());
        for topic in topics {
            let outcome = self.move_topic(&handle, &topic, action, force, actor).await;
            handle.observer().transitioned(&topic, action, &outcome);
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    async fn move_topic(
        &self,
        handle: &MigrationHandle,
        topic: &TopicHandle,
        action: Action,
        force: bool,
        actor: &str,
    ) -> Outcome {
        let (from, epoch) = topic.snapshot();
        let driver = driver_of(handle);
        let checks = match from.after(action) {
            Some(to) => driver.checks(&topic.name, from, to).await,
            None => Vec::new(),
        };
        let record = TopicRecord {
            state: from,
            epoch,
            last_transition: None,
        };
        let request = machine::Request {
            migration: &handle.name,
            topic: &topic.name,
            action,
            force,
            actor,
            now_ms: now_ms(),
        };
        let transition = match machine::plan(&record, &request, checks.clone()) {
            Ok(transition) => transition,
            Err(refusal) => {
                let reason = match &refusal {
                    Refusal::ChecksFailed { failed } => failed
                        .iter()
                        .map(|c| format!("{}: {}", c.name, c.reason))
                        .collect::<Vec<_>>()
                        .join("; "),
                    Refusal::EndOfWalk { .. } => refusal.to_string(),
                };
                return Outcome::Refused {
                    topic: topic.name.to_string(),
                    reason,
                    checks,
                };
            }
        };
        let failed = |reason: String| Outcome::Failed {
            topic: topic.name.to_string(),
            reason,
        };
        if let Err(reason) = driver
            .prepare(&topic.name, transition.from, transition.to)
            .await
        {
            return failed(format!("preparing {}: {reason}", transition.to));
        }
        if let Err(e) = self.store.commit(&transition).await {
            driver
                .aborted(&topic.name, transition.from, transition.to)
                .await;
            return failed(format!(
                "the transition was not persisted, nothing changed: {e}"
            ));
        }
        topic.publish(transition.to, transition.epoch);
        handle.observer().published(topic);
        tracing::info!(
            migration = %handle.name, topic = %topic.name, from = %transition.from,
            to = %transition.to, epoch = transition.epoch, forced = transition.forced, actor,
            "topic moved"
        );
        driver
            .applied(&topic.name, transition.from, transition.to)
            .await;
        Outcome::Moved { transition }
    }

    /// Runs a protocol action (Redis `backfill`, `verify`) on a topic.
    ///
    /// # Errors
    /// Unknown migration or topic; the action's own refusal is the inner `Err`.
    pub async fn action(
        &self,
        migration: &str,
        topic: &str,
        action: &str,
        params: serde_json::Value,
        actor: &str,
    ) -> Result<Result<serde_json::Value, String>, ControlError> {
        let (handle, _) = self.topic(migration, topic)?;
        let logged = logged_params(&params);
        let result = driver_of(&handle).action(topic, action, params).await;
        self.log_action(migration, Some(topic), action, logged, actor, &result)
            .await;
        Ok(result)
    }

    /// Runs a migration-level driver action and logs it like [`Self::action`].
    ///
    /// # Errors
    /// When the migration is unknown; the driver's refusal is the inner error.
    pub async fn migration_action(
        &self,
        migration: &str,
        action: &str,
        params: serde_json::Value,
        actor: &str,
    ) -> Result<Result<serde_json::Value, String>, ControlError> {
        let handle = self.migration(migration)?.clone();
        let logged = logged_params(&params);
        let result = driver_of(&handle).migration_action(action, params).await;
        self.log_action(migration, None, action, logged, actor, &result)
            .await;
        Ok(result)
    }

    /// Appends an action to the store's action log. The action has already
    /// run, so a store that cannot take the line is reported, not returned.
    async fn log_action(
        &self,
        migration: &str,
        topic: Option<&str>,
        action: &str,
        params: serde_json::Value,
        actor: &str,
        result: &Result<serde_json::Value, String>,
    ) {
        let entry = AdminAction {
            at_ms: now_ms(),
            migration: migration.to_owned(),
            topic: topic.map(str::to_owned),
            action: action.to_owned(),
            params,
            actor: actor.to_owned(),
            outcome: match result {
                Ok(_) => "done".to_owned(),
                Err(reason) => format!("refused: {reason}"),
            },
        };
        tracing::info!(migration, topic, action, actor, outcome = %entry.outcome, "admin action");
        if let Err(error) = self.store.record_action(&entry).await {
            tracing::error!(%error, migration, action, actor, "admin action ran but is missing from the action log");
        }
    }

    /// The action log, oldest first, optionally narrowed like [`Self::history`].
    ///
    /// # Errors
    /// When the migration or topic is unknown, or the store cannot be read.
    pub async fn actions(
        &self,
        migration: Option<&str>,
        topic: Option<&str>,
    ) -> Result<Vec<AdminAction>, ControlError> {
        self.known(migration, topic)?;
        let all = self.store.actions().await?;
        Ok(all
            .into_iter()
            .filter(|a| migration.is_none_or(|m| a.migration == m))
            .filter(|a| topic.is_none_or(|name| a.topic.as_deref() == Some(name)))
            .collect())
    }

    fn known(&self, migration: Option<&str>, topic: Option<&str>) -> Result<(), ControlError> {
        match (migration, topic) {
            (Some(m), Some(t)) => self.topic(m, t).map(drop),
            (Some(m), None) => self.migration(m).map(drop),
            _ => Ok(()),
        }
    }

    /// History, oldest first, optionally narrowed to a migration and topic.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn history(
        &self,
        migration: Option<&str>,
        topic: Option<&str>,
    ) -> Result<Vec<Transition>, ControlError> {
        self.known(migration, topic)?;
        let all = self.store.history().await?;
        Ok(all
            .into_iter()
            .filter(|t| migration.is_none_or(|m| t.migration == m))
            .filter(|t| topic.is_none_or(|name| t.topic == name))
            .collect())
    }
}

/// What the action log keeps of a request's parameters: values longer than
/// [`LOGGED_VALUE_MAX`] bytes (an imported metadata export, say) become
/// their size, so the log stays small and readable.
fn logged_params(params: &serde_json::Value) -> serde_json::Value {
    let keep = |value: &serde_json::Value| {
        let len = value.to_string().len();
        if len > LOGGED_VALUE_MAX {
            serde_json::Value::String(format!("<{len} bytes>"))
        } else {
            value.clone()
        }
    };
    match params {
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), keep(v))).collect())
        }
        other => keep(other),
    }
}

const LOGGED_VALUE_MAX: usize = 256;

fn driver_of(handle: &MigrationHandle) -> Arc<dyn Driver> {
    handle
        .driver()
        .cloned()
        .unwrap_or_else(|| Arc::new(NotServed))
}
