//! Wires a validated config into running listeners, the admin API and the
//! state store, and runs until a signal asks it to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::admin::{self, AdminError, AdminState};
use crate::config::{Config, MigrationConfig, Protocol};
use crate::metrics;
use crate::migration::store::{FileStore, StateStore, StoreError};
use crate::migration::{Action, Controller, Observer, Outcome, TopicHandle};
use crate::proxy::Shutdown;
use crate::{kafka, redis, rocketmq};

/// The proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The admin API could not start.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A migration's listener could not start.
    #[error("migration \"{migration}\": {reason}")]
    Listener {
        /// Migration name.
        migration: String,
        /// What failed.
        reason: String,
    },
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
}

/// How long metric histograms may go without upkeep before they grow.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

/// Exports what the migration core reports as the topic series of
/// [`metrics`] (state, epoch, transitions).
struct TopicSeries;

impl Observer for TopicSeries {
    fn registered(&self, topic: &TopicHandle) {
        self.published(topic);
        metrics::register_topic(&topic.migration, &topic.name);
    }

    fn published(&self, topic: &TopicHandle) {
        let (state, epoch) = topic.snapshot();
        metrics::publish_topic_state(&topic.migration, &topic.name, state.index(), epoch);
    }

    fn transitioned(&self, topic: &TopicHandle, action: Action, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Moved { .. } => "moved",
            Outcome::Refused { .. } => "refused",
            Outcome::Failed { .. } => "failed",
        };
        metrics::record_transition(&topic.migration, &topic.name, action.as_str(), outcome);
    }
}

/// Runs the proxy until SIGTERM (drain for the configured grace) or SIGINT (stop now).
///
/// # Errors
/// When any part cannot start; once running, failures are logged instead.
pub async fn run(config: Config) -> Result<(), StartError> {
    for warning in crate::config::secret_warnings(&config) {
        tracing::warn!("{warning}");
    }
    let prometheus = metrics::install().map_err(|e| StartError::Metrics(e.to_string()))?;
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(METRICS_UPKEEP).await;
            upkeep.run_upkeep();
        }
    });
    let store: Arc<dyn StateStore> = Arc::new(FileStore::open(&config.state.file)?);
    let specs: Vec<_> = config
        .migrations
        .iter()
        .map(MigrationConfig::spec)
        .collect();
    let controller = Arc::new(Controller::bootstrap(&specs, store, Arc::new(TopicSeries)).await?);
    let shutdown = Shutdown::new();
    // The controller keeps the config's order.
    for (mc, migration) in config.migrations.iter().zip(controller.migrations()) {
        let started = match mc.protocol {
            Protocol::Redis => {
                redis::start(
                    &config,
                    migration.clone(),
                    controller.clone(),
                    shutdown.clone(),
                )
                .await
            }
            Protocol::Kafka => {
                kafka::start(
                    &config,
                    migration.clone(),
                    controller.clone(),
                    shutdown.clone(),
                )
                .await
            }
            Protocol::Rocketmq => {
                rocketmq::start(
                    &config,
                    migration.clone(),
                    controller.clone(),
                    shutdown.clone(),
                )
                .await
            }
        };
        started.map_err(|e| StartError::Listener {
            migration: migration.name.to_string(),
            reason: e.to_string(),
        })?;
    }
    let admin_state = AdminState {
        controller: controller.clone(),
        config: Arc::new(config.clone()),
        metrics: prometheus,
    };
    let admin_tasks = admin::start(&config.admin, admin_state, shutdown.token.clone()).await?;
    tracing::info!(
        migrations = controller.migrations().len(),
        "cutover is running"
    );
    let grace = wait_for_signal(config.proxy.shutdown_grace).await;
    tracing::info!(?grace, "shutting down: no new connections, draining");
    if !shutdown.drain(grace).await {
        tracing::warn!("grace period over; closing the remaining connections");
    }
    for task in admin_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    Ok(())
}

/// Waits for SIGTERM (returns the drain grace) or SIGINT (returns zero: stop now).
async fn wait_for_signal(grace: Duration) -> Duration {
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    tokio::select! {
        _ = term.recv() => grace,
        _ = int.recv() => Duration::ZERO,
    }
}
