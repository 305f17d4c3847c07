//! What every session of one Redis migration shares: keyspaces with their
//! patterns, upstream settings, the copier, cached metric handles.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use cutover_redis::Limits;
use metrics::{Counter, Histogram};

use super::copier::Copier;
use super::keyspace::Keyspace;
use super::route::{Route, route};
use super::side::{Credentials, Side};
use crate::config::{RedisOptions, UpstreamIdentity};
use crate::metrics as m;
use crate::migration::MigrationHandle;
use crate::pattern::Pattern;
use crate::proxy::Upstream;
use crate::proxy::throttle::AuthThrottle;

/// Per-keyspace metric handles, resolved once instead of per request.
pub struct KeyspaceMetrics {
    /// Requests per side.
    pub requests: [Counter; 2],
    /// Shadow read outcomes: match, mismatch, error.
    pub shadow: [ShadowCount; 3],
    /// Mismatches logged so far (only the first few are logged).
    pub logged_mismatches: AtomicUsize,
}

/// One shadow-read outcome: the exported counter, and the same count kept
/// here so `ctl status` and the console can show it (a metrics counter
/// cannot be read back).
pub struct ShadowCount {
    counter: Counter,
    count: AtomicU64,
}

impl ShadowCount {
    fn new(counter: Counter) -> Self {
        ShadowCount {
            counter,
            count: AtomicU64::new(0),
        }
    }

    /// Counts `n` more reads with this outcome.
    pub fn increment(&self, n: u64) {
        self.counter.increment(n);
        self.count.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads counted since the proxy started.
    #[must_use]
    pub fn get(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Per-side metric handles.
pub struct SideMetrics {
    /// Request latency.
    pub latency: Histogram,
    /// Bytes sent to the side.
    pub bytes_out: Counter,
    /// Bytes received from the side.
    pub bytes_in: Counter,
    /// Errors answered to clients for this side, by kind.
    pub unreachable: Counter,
    /// Replies that did not come in time.
    pub timeouts: Counter,
}

/// Shared context of one Redis migration.
pub struct Shared {
    /// The migration core's handle.
    pub migration: Arc<MigrationHandle>,
    /// Keyspaces in config order with their patterns.
    pub keyspaces: Vec<(Pattern, Arc<Keyspace>)>,
    /// Source and target connection settings.
    pub upstreams: [Upstream; 2],
    /// Credentials per side.
    pub credentials: [Credentials; 2],
    /// Convergence engine.
    pub copier: Arc<Copier>,
    /// Protocol options.
    pub options: RedisOptions,
    /// Framing limits.
    pub limits: Limits,
    /// Close idle clients after this long.
    pub idle_timeout: Duration,
    /// Fail a non-blocking request not answered in this long.
    pub upstream_timeout: Duration,
    /// Metric handles per keyspace.
    pub keyspace_metrics: Vec<KeyspaceMetrics>,
    /// Metric handles per side.
    pub side_metrics: [SideMetrics; 2],
    /// Client protocol errors.
    pub protocol_errors: Counter,
    /// Requests refused by the proxy (unroutable, fenced too long...).
    pub refused: Counter,
    /// Durable store (backfill cursors).
    pub store: Arc<dyn crate::migration::store::StateStore>,
    /// Backfill progress per keyspace.
    pub backfills: super::backfill_state::Registry,
    /// Client ids as clients see them, with the upstream connections behind each.
    pub clients: super::clients::Clients,
    /// ACL users clients authenticate as (`redis.users_file`).
    pub users: Option<Arc<super::users::Users>>,
    /// Whom sessions' upstream connections log in as.
    pub identity: UpstreamIdentity,
    /// Per side, client users known to that cluster by other credentials.
    pub mapped: [HashMap<String, Credentials>; 2],
    /// Repeated authentication failures per client address.
    pub auth_throttle: AuthThrottle,
    /// Client authentications refused.
    pub auth_failures: Counter,
}

impl Shared {
    /// Whether a new client is authenticated before any AUTH: no password
    /// configured, or a users file whose `default` user is on and `nopass`.
    #[must_use]
    pub fn default_authenticated(&self) -> bool {
        match &self.users {
            Some(users) => users.current().default_needs_no_auth(),
            None => self.options.client_password.is_none(),
        }
    }

    /// The keyspace of `key`: the first pattern that matches.
    #[inline]
    #[must_use]
    pub fn keyspace_for(&self, key: &[u8]) -> Option<&Arc<Keyspace>> {
        self.keyspaces
            .iter()
            .find(|(p, _)| p.matches(key))
            .map(|(_, k)| k)
    }

    /// The cluster name of a side.
    #[must_use]
    pub fn cluster(&self, side: Side) -> &str {
        &self.upstreams[side.index()].cluster
    }

    /// The route all keyspaces share, if they do (for commands without keys).
    #[must_use]
    pub fn common_route(&self) -> Option<Route> {
        let mut routes = self.keyspaces.iter().map(|(_, k)| route(k.topic.state()));
        let first = routes.next()?;
        routes.all(|r| r.primary == first.primary).then_some(first)
    }

    /// Where a command that names no key of a keyspace goes (PING, ECHO,
    /// malformed or unknown commands, so the client gets Redis's own
    /// answer): the catch-all keyspace's authoritative side, else the side
    /// every keyspace agrees on, else the source.
    #[must_use]
    pub fn default_side(&self) -> Side {
        self.keyspaces
            .iter()
            .find(|(p, _)| *p == Pattern::Any)
            .map(|(_, k)| route(k.topic.state()).primary)
            .or_else(|| self.common_route().map(|r| r.primary))
            .unwrap_or(Side::Source)
    }

    /// Whether any keyspace currently converges writes (dual_write, cutover).
    #[must_use]
    pub fn any_converging(&self) -> bool {
        self.keyspaces
            .iter()
            .any(|(_, k)| route(k.topic.state()).converge_to.is_some())
    }

    /// "sessions: dual_write, rest: source", for error messages.
    #[must_use]
    pub fn describe_states(&self) -> String {
        self.keyspaces
            .iter()
            .map(|(_, k)| format!("{}: {}", k.topic.name, k.topic.state()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Resolves metric handles for one keyspace.
#[must_use]
pub fn keyspace_metrics(migration: &str, topic: &str, clusters: [&str; 2]) -> KeyspaceMetrics {
    let request = |cluster: &str| m::counter!(m::REQUESTS, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "cluster" => cluster.to_owned());
    let shadow = |outcome: &'static str| m::counter!(m::SHADOW_READS, "migration" => migration.to_owned(), "topic" => topic.to_owned(), "outcome" => outcome);
    KeyspaceMetrics {
        requests: [request(clusters[0]), request(clusters[1])],
        shadow: [
            ShadowCount::new(shadow("match")),
            ShadowCount::new(shadow("mismatch")),
            ShadowCount::new(shadow("error")),
        ],
        logged_mismatches: AtomicUsize::new(0),
    }
}

/// Resolves metric handles for one side.
#[must_use]
pub fn side_metrics(migration: &str, cluster: &str) -> SideMetrics {
    let labels = |extra: (&'static str, &'static str)| {
        vec![
            ("migration", migration.to_owned()),
            ("cluster", cluster.to_owned()),
            (extra.0, extra.1.to_owned()),
        ]
    };
    SideMetrics {
        latency: m::histogram!(m::REQUEST_DURATION, "migration" => migration.to_owned(), "cluster" => cluster.to_owned()),
        bytes_out: m::counter!(m::BYTES, &labels(("direction", "to_upstream"))),
        bytes_in: m::counter!(m::BYTES, &labels(("direction", "to_client"))),
        unreachable: m::counter!(m::REQUEST_ERRORS, &labels(("kind", "upstream_unreachable"))),
        timeouts: m::counter!(m::REQUEST_ERRORS, &labels(("kind", "upstream_timeout"))),
    }
}
