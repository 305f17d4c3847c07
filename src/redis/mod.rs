//! Redis migrations: the client listener, per-connection sessions that
//! route each command by its keyspace's state, and the convergence engine
//! that keeps the non-authoritative cluster identical.
//!
//! Data plane (one client connection):
//! - `session`: reads pipelined requests, sends each where its keyspace's
//!   state says, answers in order; [`slots`]: the replies' order;
//! - `commands`: what to do with each command (answer, forward, split,
//!   refuse); `classify`: which commands write or flush everything;
//! - `connection`: HELLO, AUTH, SELECT, CLIENT … answered and mirrored;
//! - `transaction` and `txn`: MULTI/EXEC and its state; `pubsub`: pub/sub
//!   and commands that reach both clusters;
//! - [`side`]: one upstream connection of a session; [`clients`]: client
//!   ids as clients see them; [`users`]: the ACL users clients log in as.
//!
//! Shared by both planes: [`shared`] (a migration's keyspaces, upstreams,
//! copier, metric handles); [`keyspace`] (the write fence and counts);
//! [`route`] (where each state sends reads, writes and copies).
//!
//! Control plane (convergence and checks):
//! - [`copier`]: copies each written key's current state to the other side;
//! - [`backfill`] (with `backfill_state`), [`verify`] and [`scan`]: copying
//!   and sampling whole keyspaces;
//! - [`driver`]: readiness checks and the fence of a transition.

pub mod backfill;
mod backfill_state;
mod classify;
pub mod clients;
mod commands;
mod connection;
pub mod copier;
pub mod driver;
pub mod keyspace;
mod pubsub;
pub mod route;
pub mod scan;
mod session;
pub mod shared;
pub mod side;
pub mod slots;
mod transaction;
mod txn;
pub mod users;
pub mod verify;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use cutover_redis::Limits;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::config::{AuthConfig, Config};
use crate::metrics as m;
use crate::migration::{Controller, MigrationHandle};
use crate::proxy::{Handler, ListenerSettings, Shutdown, StartError, Stream};
use copier::Copier;
use keyspace::Keyspace;
use shared::{Shared, keyspace_metrics, side_metrics};
use side::Credentials;

/// Shadow-read mismatches logged per keyspace before only counting them.
pub const MISMATCHES_LOGGED: usize = 5;

struct RedisHandler {
    shared: Arc<Shared>,
}

impl Handler for RedisHandler {
    fn handle(
        self: Arc<Self>,
        client: Stream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        session::Session::new(self.shared.clone(), client, peer)
            .run(shutdown)
            .boxed()
    }
}

fn credentials(auth: Option<&AuthConfig>) -> Result<Credentials, StartError> {
    let Some(auth) = auth else {
        return Ok(Credentials::default());
    };
    Ok(Credentials {
        username: auth.username.clone(),
        password: password(auth.password.as_ref(), auth.password_file.as_deref())?,
    })
}

/// A password given inline or as the first line of a file.
fn password(
    inline: Option<&String>,
    file: Option<&std::path::Path>,
) -> Result<Option<String>, StartError> {
    match (inline, file) {
        (Some(p), _) => Ok(Some(p.clone())),
        (None, Some(file)) => Ok(Some(
            std::fs::read_to_string(file)
                .map_err(|e| StartError::Setup(format!("cannot read {}: {e}", file.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

/// `auth.users` of one cluster: client user → that cluster's credentials.
fn mapped_users(auth: Option<&AuthConfig>) -> Result<HashMap<String, Credentials>, StartError> {
    let Some(auth) = auth else {
        return Ok(HashMap::new());
    };
    auth.users
        .iter()
        .map(|(client, user)| {
            let credentials = Credentials {
                username: Some(user.username.clone().unwrap_or_else(|| client.clone())),
                password: password(user.password.as_ref(), user.password_file.as_deref())?,
            };
            Ok((client.clone(), credentials))
        })
        .collect()
}

/// Builds the migration's shared runtime and starts its listener and copier.
///
/// # Errors
/// When the listener cannot bind or TLS/credential files cannot be used.
pub async fn start(
    config: &Config,
    migration: Arc<MigrationHandle>,
    controller: Arc<Controller>,
    shutdown: Shutdown,
) -> Result<(), StartError> {
    let shared = build_shared(config, &migration, &controller).await?;
    shared.copier.spawn(&shutdown.token);
    if let Some(users) = &shared.users {
        users.watch(migration.name.clone(), &shutdown.token);
    }
    migration.set_driver(Arc::new(driver::RedisDriver::new(
        shared.clone(),
        shutdown.token.clone(),
    )));
    backfill::resume(&shared, &shutdown.token).await;
    crate::metrics::register_listener(&migration.name);
    let mc = crate::proxy::migration_config(config, &migration)?;
    let listen = mc.listen;
    let listener = crate::proxy::listener::bind(listen).map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let settings = ListenerSettings::for_migration(config, &migration.name, mc.tls.as_ref())?;
    tracing::info!(migration = %migration.name, %listen, "redis listener ready");
    tokio::spawn(crate::proxy::serve(
        listener,
        settings,
        Arc::new(RedisHandler { shared }),
        shutdown,
    ));
    Ok(())
}

async fn build_shared(
    config: &Config,
    migration: &Arc<MigrationHandle>,
    controller: &Controller,
) -> Result<Arc<Shared>, StartError> {
    let options = crate::proxy::migration_config(config, migration)?
        .redis
        .clone()
        .unwrap_or_default();
    let crate::proxy::MigrationClusters {
        source,
        target,
        upstreams: [source_upstream, target_upstream],
    } = crate::proxy::MigrationClusters::of(config, migration)?;
    let upstreams = [source_upstream, target_upstream];
    let credentials = [
        credentials(source.auth.as_ref())?,
        credentials(target.auth.as_ref())?,
    ];
    let mapped = [
        mapped_users(source.auth.as_ref())?,
        mapped_users(target.auth.as_ref())?,
    ];
    let identity = options.upstream_identity();
    let users = match &options.users_file {
        Some(file) => Some(users::open(file).map_err(StartError::Setup)?),
        None => None,
    };
    let keyspaces: Vec<_> = migration
        .keyspaces()
        .enumerate()
        .map(|(index, (pattern, topic))| {
            (
                pattern.clone(),
                Arc::new(Keyspace::new(topic.clone(), index)),
            )
        })
        .collect();
    let clusters = [source.name.as_str(), target.name.as_str()];
    let keyspace_count = keyspaces.len();
    let copier = Copier::new(
        migration.name.clone(),
        upstreams.clone(),
        credentials.clone(),
        controller.store().clone(),
        keyspaces.len(),
    )
    .await;
    Ok(Arc::new(Shared {
        keyspace_metrics: keyspaces
            .iter()
            .map(|(_, k)| keyspace_metrics(&migration.name, &k.topic.name, clusters))
            .collect(),
        side_metrics: [
            side_metrics(&migration.name, clusters[0]),
            side_metrics(&migration.name, clusters[1]),
        ],
        protocol_errors: m::counter!(m::REQUEST_ERRORS, "migration" => migration.name.to_string(), "cluster" => "client", "kind" => "protocol"),
        refused: m::counter!(m::REQUEST_ERRORS, "migration" => migration.name.to_string(), "cluster" => "proxy", "kind" => "refused"),
        migration: migration.clone(),
        keyspaces,
        upstreams,
        credentials,
        copier,
        limits: Limits::DEFAULT.with_max_bulk_len(options.max_bulk_len),
        options,
        idle_timeout: config.proxy.idle_timeout,
        upstream_timeout: config.proxy.upstream_timeout,
        store: controller.store().clone(),
        backfills: backfill_state::Registry::new(keyspace_count),
        clients: clients::Clients::default(),
        identity,
        users,
        mapped,
        auth_throttle: crate::proxy::throttle::AuthThrottle::default(),
        auth_failures: m::counter!(m::REQUEST_ERRORS, "migration" => migration.name.to_string(), "cluster" => "client", "kind" => "auth"),
    }))
}
