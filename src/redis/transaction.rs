//! MULTI/EXEC through the proxy, with Redis's own semantics: the
//! transaction is relayed as sent to the one cluster that is authoritative
//! for every key it touches, so Redis itself answers QUEUED or a queue-time
//! error, aborts EXEC with EXECABORT, honours WATCH, and runs the block
//! atomically. The proxy only remembers which keys were written, to converge
//! them after EXEC, and which cluster each keyspace was on, to abort EXEC
//! (`EXECABORT cutover: ...`) when a keyspace's authority moved meanwhile.

use std::sync::Arc;

use cutover_redis::{CommandSpec, KeyRef, Request, encode};

use super::classify::{distinct_keyspaces, flushes_everything, is_write, release};
use super::route::route;
use super::session::{After, Parked, Session, Waiter};
use super::side::Side;
use super::txn::Txn;

/// Commands one transaction may queue: Redis keeps the queue, the proxy
/// only the written keys, but those must be bounded too.
const MAX_QUEUED: usize = 100_000;

/// Redis's own EXEC reply after a queue-time error.
const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// Connection-scoped commands the proxy itself implements: they cannot be
/// queued upstream, where they would change only one connection's state.
fn proxy_scoped(name: &str) -> bool {
    matches!(
        name,
        "subscribe"
            | "psubscribe"
            | "ssubscribe"
            | "hello"
            | "auth"
            | "select"
            | "client|setname"
            | "client|reply"
            | "client|id"
            | "client|unblock"
            | "client|no-evict"
            | "client|tracking"
            | "client|caching"
    )
}

impl Session {
    pub(super) fn begin_transaction(&mut self) {
        if self.multi.is_some() {
            return self.local(encode::error("ERR MULTI calls can not be nested"));
        }
        self.multi = Some(Txn::default());
        self.local(encode::ok());
    }

    /// Queues one command: relays it inside the upstream MULTI so Redis
    /// answers it, or refuses it here when it cannot run on that cluster.
    /// `refs` is `None` for unknown or malformed commands (Redis refuses them).
    pub(super) async fn queue_in_transaction(
        &mut self,
        spec: Option<&'static CommandSpec>,
        request: Request,
        refs: Option<Vec<KeyRef>>,
    ) {
        match self.txn_side(spec, &request, refs.as_deref()) {
            Ok(side) => self.relay_queued(side, spec, &request, refs).await,
            Err(message) => {
                self.shared.refused.increment(1);
                if let Some(txn) = self.multi.as_mut() {
                    txn.failed.get_or_insert_with(String::new);
                }
                self.local(encode::error(&format!("ERR cutover: {message}")));
            }
        }
    }

    /// The cluster a queued command must run on, or why it cannot.
    fn txn_side(
        &self,
        spec: Option<&'static CommandSpec>,
        request: &Request,
        refs: Option<&[KeyRef]>,
    ) -> Result<Side, String> {
        let txn = self.multi.as_ref().ok_or("no transaction")?;
        if txn.queued >= MAX_QUEUED {
            return Err(format!(
                "a transaction may queue at most {MAX_QUEUED} commands"
            ));
        }
        if let Some(spec) = spec {
            if proxy_scoped(spec.name) {
                return Err(format!(
                    "{} inside MULTI is not supported through the proxy; send it before MULTI",
                    spec.name.to_uppercase().replace('|', " ")
                ));
            }
            if self.shared.any_converging() && flushes_everything(spec.name) {
                return Err(super::classify::flush_refusal(
                    spec.name,
                    &self.shared.describe_states(),
                ));
            }
            // As outside MULTI: a write naming no key could not be converged.
            if self.shared.any_converging() && is_write(spec) && refs.is_some_and(<[_]>::is_empty) {
                return Err(format!(
                    "{} without keys is refused while a keyspace converges ({})",
                    spec.name.to_uppercase().replace('|', " "),
                    self.shared.describe_states()
                ));
            }
        }
        let chosen = txn.side.or(self.watch_side);
        let mut keyed: Option<Side> = None;
        for key_ref in refs.unwrap_or_default() {
            let key = &request.args[key_ref.index];
            let Some(keyspace) = self.shared.keyspace_for(key) else {
                return Err(format!(
                    "key '{}' matches no keyspace of migration {}",
                    String::from_utf8_lossy(key),
                    self.shared.migration.name
                ));
            };
            let primary = route(keyspace.topic.state()).primary;
            if chosen.is_some_and(|c| c != primary) || keyed.is_some_and(|k| k != primary) {
                return Err(format!(
                    "the transaction touches keyspaces on different clusters ({}); it could not be atomic",
                    self.shared.describe_states()
                ));
            }
            keyed = Some(primary);
        }
        Ok(chosen
            .or(keyed)
            .unwrap_or_else(|| self.shared.default_side()))
    }

    async fn relay_queued(
        &mut self,
        side: Side,
        spec: Option<&'static CommandSpec>,
        request: &Request,
        refs: Option<Vec<KeyRef>>,
    ) {
        let started = self.multi.as_ref().is_some_and(|t| t.side.is_some());
        if !started {
            if let Err(reason) = self.connect(side).await {
                if let Some(txn) = self.multi.as_mut() {
                    txn.failed.get_or_insert_with(String::new);
                }
                return self.local(encode::error(&format!("ERR cutover: {reason}")));
            }
            self.send(side, &encode::command(&[b"MULTI"]), Waiter::Discard);
        }
        let mut named = Vec::new();
        let mut written = Vec::new();
        for key_ref in refs.unwrap_or_default() {
            let key = request.args[key_ref.index].clone();
            if let Some(keyspace) = self.shared.keyspace_for(&key).cloned() {
                named.push((keyspace.clone(), side));
                if spec.is_some_and(is_write) {
                    written.push((keyspace, key));
                }
            }
        }
        if let Some(txn) = self.multi.as_mut() {
            txn.side = Some(side);
            txn.queued += 1;
            for (keyspace, side) in named {
                if !txn.keyspaces.iter().any(|(k, _)| Arc::ptr_eq(k, &keyspace)) {
                    txn.keyspaces.push((keyspace, side));
                }
            }
            txn.touched.extend(written);
        }
        self.forward(side, request.raw.clone(), None, false).await;
    }

    pub(super) async fn discard(&mut self, request: Request) {
        let Some(txn) = self.multi.take() else {
            return self.local(encode::error("ERR DISCARD without MULTI"));
        };
        let watched = self.watch_side.take();
        self.watch_lost = false;
        // Redis's DISCARD also unwatches; UNWATCH's +OK then serves as DISCARD's reply.
        match (txn.side, watched) {
            (Some(side), _) => self.forward(side, request.raw, None, false).await,
            (None, Some(side)) => {
                self.forward(side, encode::command(&[b"UNWATCH"]), None, false)
                    .await;
            }
            (None, None) => self.local(encode::ok()),
        }
    }

    pub(super) async fn watch(&mut self, refs: Vec<KeyRef>, request: Request) {
        if self.multi.is_some() {
            return self.local(encode::error("ERR WATCH inside MULTI is not allowed"));
        }
        let mut side: Option<Side> = None;
        for key_ref in refs {
            let Some(keyspace) = self.shared.keyspace_for(&request.args[key_ref.index]) else {
                return self.refuse("WATCH names a key that matches no keyspace");
            };
            let primary = route(keyspace.topic.state()).primary;
            if side.is_some_and(|s| s != primary) || self.watch_side.is_some_and(|s| s != primary) {
                return self.refuse(
                    "WATCH keys live on different clusters; the transaction could not be atomic",
                );
            }
            side = Some(primary);
        }
        let side = side.unwrap_or_else(|| self.shared.default_side());
        self.watch_side = Some(side);
        self.forward(side, request.raw, None, false).await;
    }

    pub(super) async fn exec(&mut self, request: Request) {
        let Some(txn) = self.multi.take() else {
            return self.local(encode::error("ERR EXEC without MULTI"));
        };
        let watched = self.watch_side.take();
        let watch_lost = std::mem::take(&mut self.watch_lost);
        if let Some(reason) = self.abort_reason(&txn, watch_lost) {
            return self.abort_exec(txn.side, watched, &reason);
        }
        let side = txn
            .side
            .or(watched)
            .unwrap_or_else(|| self.shared.default_side());
        let writes = distinct_keyspaces(txn.touched.iter().map(|(k, _)| k));
        for (i, keyspace) in writes.iter().enumerate() {
            if !keyspace.begin_write() {
                release(&writes[..i]);
                self.watch_side = watched;
                self.watch_lost = watch_lost;
                self.parked = Some(Parked {
                    request,
                    keyspace: keyspace.clone(),
                    txn: Some(txn),
                });
                return;
            }
        }
        if let Err(reason) = self.connect(side).await {
            release(&writes);
            return self.local(encode::error(&format!("EXECABORT cutover: {reason}")));
        }
        if txn.side.is_none() {
            // Nothing was queued: Redis still answers EXEC (an empty array,
            // or nil when a watched key changed).
            self.send(side, &encode::command(&[b"MULTI"]), Waiter::Discard);
        }
        let converges = txn
            .keyspaces
            .iter()
            .any(|(k, _)| route(k.topic.state()).converge_to.is_some());
        let after = (!writes.is_empty()).then(|| {
            Box::new(After {
                keys: txn.touched,
                converge_from: converges.then_some(side),
                keyspaces: writes,
                db: self.mirror.db,
            })
        });
        self.forward(side, request.raw, after, false).await;
    }

    /// Why EXEC must not run: a queued command was refused here, the
    /// connection holding the transaction or the WATCH was lost, or a
    /// keyspace's authoritative cluster changed since its command was queued.
    fn abort_reason(&self, txn: &Txn, watch_lost: bool) -> Option<String> {
        if let Some(failed) = &txn.failed {
            return Some(failed.clone());
        }
        if watch_lost {
            return Some("the connection holding the WATCH was lost; retry the transaction".into());
        }
        txn.keyspaces.iter().find_map(|(keyspace, side)| {
            let now = route(keyspace.topic.state()).primary;
            (now != *side).then(|| {
                format!(
                    "keyspace {} moved to cluster \"{}\" ({}) while the transaction was queued; retry it",
                    keyspace.topic.name,
                    self.shared.cluster(now),
                    keyspace.topic.state()
                )
            })
        })
    }

    /// Ends the upstream transaction (DISCARD also unwatches) and answers
    /// EXEC with EXECABORT: Redis's words after a queue-time error, else
    /// the proxy's reason.
    fn abort_exec(&mut self, side: Option<Side>, watched: Option<Side>, reason: &str) {
        let end = match (side, watched) {
            (Some(side), _) => Some((side, &b"DISCARD"[..])),
            (None, Some(side)) => Some((side, &b"UNWATCH"[..])),
            (None, None) => None,
        };
        if let Some((side, command)) = end
            && self.sides[side.index()].is_some()
        {
            self.send(side, &encode::command(&[command]), Waiter::Discard);
        }
        let reply = if reason.is_empty() {
            EXECABORT.to_owned()
        } else {
            format!("EXECABORT cutover: {reason}")
        };
        self.local(encode::error(&reply));
    }

    /// The connection to `side` was lost: a transaction or WATCH held there
    /// is gone with it, so EXEC must abort rather than run without them.
    pub(super) fn transaction_lost(&mut self, side: Side) {
        if let Some(txn) = self.multi.as_mut()
            && txn.side == Some(side)
        {
            txn.failed
                .get_or_insert_with(|| "the connection holding the transaction was lost".into());
        }
        if self.watch_side == Some(side) {
            self.watch_lost = true;
        }
    }
}
