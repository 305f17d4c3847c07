//! Deciding what to do with each client command: answer it here
//! (connection state), forward it to one side, split it across sides, or
//! refuse it with a `-CUTOVER` error that says why.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cutover_redis::table::{BeginSearch, FindKeys};
use cutover_redis::{
    Class, CommandFlags, CommandSpec, KeyRef, KeySpecFlags, Request, encode, keys, lookup,
};

use super::classify::{distinct_keyspaces, flush_refusal, flushes_everything, is_write, release};
use super::keyspace::Keyspace;
use super::route::{Merge, Route, route, splittable};
use super::session::{After, Parked, Session, Shadow, Waiter};
use super::side::Side;

/// After a failed connect, shadow reads leave that side alone this long,
/// so a down target costs clients nothing in `dual_read`.
const SHADOW_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// A key resolved to its keyspace and that keyspace's current route.
struct Resolved {
    key: Bytes,
    /// Index of the key in the request's args.
    index: usize,
    write: bool,
    keyspace: Arc<Keyspace>,
    route: Route,
}

impl Session {
    /// Handles one request; the reply (or a promise of one) is queued in
    /// order, and dropped instead of written when CLIENT REPLY says so.
    pub(super) async fn dispatch(&mut self, request: Request) {
        // As Redis: SKIP applies to the command after it, unless that
        // command is CLIENT REPLY ON (which clears `skipping`).
        self.skipping = std::mem::take(&mut self.skip_next_reply);
        let from = self.slots.next_id();
        self.dispatch_command(request).await;
        if std::mem::take(&mut self.skipping) {
            self.slots.silence(from..self.slots.next_id());
        }
    }

    async fn dispatch_command(&mut self, request: Request) {
        if let Some(side) = self.pubsub {
            return self.pubsub_command(side, request);
        }
        let spec = lookup(&request.args);
        if !self.authenticated && !spec.is_some_and(|s| matches!(s.name, "auth" | "hello" | "quit"))
        {
            self.slots
                .ready(encode::error("NOAUTH Authentication required."));
            return;
        }
        // Routing needs only the keys; a command whose keys cannot be found
        // is one Redis refuses, so Redis is asked to say why.
        let refs = spec.map(|spec| keys(spec, &request.args));
        let in_multi = self.multi.is_some();
        let (spec, refs) = match (spec, refs) {
            (Some(spec), Some(Ok(refs))) => (spec, refs),
            (spec, _) if in_multi => return self.queue_in_transaction(spec, request, None).await,
            (spec, _) => return self.forward_malformed(spec, request).await,
        };
        if in_multi
            && !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            return self
                .queue_in_transaction(Some(spec), request, Some(refs))
                .await;
        }
        match spec.name {
            "ping" | "echo" => {
                let side = self.shared.default_side();
                self.forward(side, request.raw, None, false).await;
            }
            "quit" => {
                self.local(encode::ok());
                self.closing = true;
            }
            "hello" => self.hello(&request).await,
            "auth" => self.auth(&request).await,
            "select" => self.select(request).await,
            "reset" => self.reset(),
            name if name.starts_with("client|") => self.client_command(spec, request).await,
            "monitor" | "sync" | "psync" | "replicaof" | "slaveof" => {
                self.refuse(&format!(
                    "{} is not supported through the proxy",
                    spec.name.to_uppercase()
                ));
            }
            "multi" => self.begin_transaction(),
            "exec" => self.exec(request).await,
            "discard" => self.discard(request).await,
            "watch" => self.watch(refs, request).await,
            "unwatch" => match self.watch_side.take() {
                Some(side) => self.forward(side, request.raw, None, false).await,
                None => self.local(encode::ok()),
            },
            "subscribe" | "psubscribe" | "ssubscribe" => self.subscribe(request).await,
            "publish" | "spublish" => self.publish(request).await,
            "script|kill" | "function|kill" => self.kill_everywhere(request).await,
            name if flushes_everything(name) && self.shared.any_converging() => {
                let message = flush_refusal(name, &self.shared.describe_states());
                self.refuse(&message);
            }
            "script|load" | "script|flush" | "function|load" | "function|delete"
            | "function|flush" | "function|restore" => {
                self.broadcast(request).await;
            }
            _ => self.route_command(spec, request, refs).await,
        }
    }

    /// CLIENT subcommands: the ones about this connection are answered by
    /// the proxy; the ones that would change how replies are ordered or
    /// cached are refused.
    async fn client_command(&mut self, spec: &'static CommandSpec, request: Request) {
        match spec.name {
            "client|setname" => self.set_name(&request),
            "client|getname" => self.local(self.mirror.name.as_ref().map_or_else(|| encode::null(self.mirror.protocol == 3), |n| encode::bulk(n))),
            "client|id" => self.local(encode::integer(i64::try_from(self.client_id).unwrap_or(i64::MAX))),
            "client|reply" => self.client_reply(request).await,
            "client|unblock" => self.client_unblock(request).await,
            "client|no-evict" => self.no_evict(request).await,
            "client|setinfo" | "client|no-touch" => self.local(encode::ok()),
            "client|kill" if is_kill_by_id(&request.args) => self.kill_client(request).await,
            "client|info" | "client|list" | "client|kill" | "client|pause" | "client|unpause" => {
                self.keyless(spec, request).await;
            }
            "client|tracking" | "client|caching" => self.refuse(&format!(
                "CLIENT {} is not supported through the proxy: invalidations would come from whichever cluster a key lives on, and none would say a key moved to the other cluster, so a client cache could serve stale values",
                spec.short_name().to_uppercase()
            )),
            // Only CLIENT subcommands come here.
            _ => self.refuse(&format!(
                "CLIENT {} is not supported through the proxy: it would change how replies are ordered or cached",
                spec.short_name().to_uppercase()
            )),
        }
    }

    /// An unknown or malformed command (bad arity, bad key count, unknown
    /// subcommand): Redis refuses it, so it goes where its key would go, or
    /// to the default side, and Redis's own error is relayed.
    async fn forward_malformed(&mut self, spec: Option<&'static CommandSpec>, request: Request) {
        let side = spec
            .and_then(|spec| first_key(spec, &request.args))
            .and_then(|key| self.shared.keyspace_for(key))
            .map_or_else(
                || self.shared.default_side(),
                |k| route(k.topic.state()).primary,
            );
        // An unknown command may be a module's blocking command: no timeout.
        let blocking = spec.is_none_or(CommandSpec::is_blocking);
        self.forward(side, request.raw, None, blocking).await;
    }

    /// SCRIPT KILL / FUNCTION KILL: the busy script may run on either
    /// cluster, so both are asked; the one that killed it answers.
    async fn kill_everywhere(&mut self, request: Request) {
        let mut sides = Vec::with_capacity(2);
        let mut failure = None;
        for side in [Side::Source, Side::Target] {
            match self.connect(side).await {
                Ok(()) => sides.push(side),
                Err(reason) => failure = Some(reason),
            }
        }
        if sides.is_empty() {
            let reason = failure.unwrap_or_default();
            return self.unreachable(Side::Source, &reason);
        }
        let id = self
            .slots
            .parts(Merge::AnyOk, vec![Vec::new(); sides.len()]);
        for (part, side) in sides.into_iter().enumerate() {
            self.send(
                side,
                &request.raw,
                Waiter::Part {
                    id,
                    part,
                    after: None,
                },
            );
        }
    }

    pub(super) fn local(&mut self, reply: Bytes) {
        self.slots.ready(reply);
    }

    pub(super) fn refuse(&mut self, message: &str) {
        self.shared.refused.increment(1);
        self.slots
            .ready(encode::error(&format!("CUTOVER {message}")));
    }

    /// Resolves every key of a request; on failure the error reply is already queued.
    fn resolve(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        refs: Vec<KeyRef>,
    ) -> Option<Vec<Resolved>> {
        let any_flagged = refs.iter().any(|r| r.write);
        let mut resolved = Vec::with_capacity(refs.len());
        for key_ref in refs {
            let key = request.args[key_ref.index].clone();
            let Some(keyspace) = self.shared.keyspace_for(&key).cloned() else {
                self.refuse(&format!(
                    "key '{}' matches no keyspace of migration {}; add a catch-all pattern (\"*\") to its topics",
                    String::from_utf8_lossy(&key),
                    self.shared.migration.name
                ));
                return None;
            };
            let route = route(keyspace.topic.state());
            let write = is_write(spec) && (key_ref.write || !any_flagged);
            resolved.push(Resolved {
                key,
                index: key_ref.index,
                write,
                keyspace,
                route,
            });
        }
        Some(resolved)
    }

    async fn route_command(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
        refs: Vec<KeyRef>,
    ) {
        if refs.is_empty()
            && spec.has_keys()
            && !spec.flags.contains(CommandFlags::NO_MANDATORY_KEYS)
        {
            // A key count of 0 where Redis requires keys (SINTERCARD 0 ...).
            return self.forward_malformed(Some(spec), request).await;
        }
        let Some(keys) = self.resolve(spec, &request, refs) else {
            return;
        };
        if keys.is_empty() {
            return self.keyless(spec, request).await;
        }
        if self.shared.any_converging()
            && matches!(spec.name, "move" | "migrate" | "copy")
            && !same_db_copy(spec, &request)
        {
            return self.refuse(&format!("{} across databases or servers is refused while a keyspace converges (dual_write or cutover)", spec.name.to_uppercase()));
        }
        let first = keys[0].route;
        if keys.iter().all(|k| k.route == first) {
            return self.forward_keyed(spec, request, keys, first).await;
        }
        match splittable(spec.name) {
            Some((step, merge)) => self.split(spec, request, keys, step, merge).await,
            None => self.refuse(&format!(
                "{} touches keyspaces in different states ({}); it cannot run atomically on one cluster",
                spec.name.to_uppercase(),
                self.describe_keys(&keys)
            )),
        }
    }

    fn describe_keys(&self, keys: &[Resolved]) -> String {
        let mut seen: Vec<String> = keys
            .iter()
            .map(|k| format!("{}: {}", k.keyspace.topic.name, k.keyspace.topic.state()))
            .collect();
        seen.dedup();
        seen.join(", ")
    }

    /// Registers writes with the fence; parks the request when a keyspace is fenced.
    fn begin_writes(&mut self, request: &Request, keyspaces: &[Arc<Keyspace>]) -> Result<(), ()> {
        for (i, keyspace) in keyspaces.iter().enumerate() {
            if !keyspace.begin_write() {
                for begun in &keyspaces[..i] {
                    begun.end_write();
                }
                self.parked = Some(Parked {
                    request: request.clone(),
                    keyspace: keyspace.clone(),
                    txn: None,
                });
                return Err(());
            }
        }
        Ok(())
    }

    async fn forward_keyed(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
        keys: Vec<Resolved>,
        route: Route,
    ) {
        let writes: Vec<&Resolved> = keys.iter().filter(|k| k.write).collect();
        let keyspaces = distinct_keyspaces(writes.iter().map(|k| &k.keyspace));
        if !keyspaces.is_empty() && self.begin_writes(&request, &keyspaces).is_err() {
            return;
        }
        let primary = route.primary;
        if let Err(reason) = self.connect(primary).await {
            release(&keyspaces);
            return self.unreachable(primary, &reason);
        }
        for k in &keys {
            self.shared.keyspace_metrics[k.keyspace.index].requests[primary.index()].increment(1);
        }
        let after = after_write(&writes, route, self.mirror.db);
        let shadow = if after.is_none() {
            self.maybe_shadow(spec, &request, &keys, route).await
        } else {
            None
        };
        let id = self.slots.waiting();
        let waiter = Waiter::Slot {
            id,
            after,
            shadow,
            sent: Instant::now(),
            blocking: spec.is_blocking(),
        };
        self.send(primary, &request.raw, waiter);
    }

    /// Sends a sampled read to the shadow side too; returns the comparison id.
    async fn maybe_shadow(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
        keys: &[Resolved],
        route: Route,
    ) -> Option<u64> {
        let shadow_side = route.shadow?;
        let eligible =
            spec.class() == Class::Read && !spec.is_nondeterministic() && !spec.is_blocking();
        if !eligible || !self.sample(self.shared.options.shadow_read_ratio) {
            return None;
        }
        let index = shadow_side.index();
        if self.shadow_backoff[index].is_some_and(|until| Instant::now() < until) {
            return None;
        }
        if self.connect(shadow_side).await.is_err() {
            self.shadow_backoff[index] = Some(Instant::now() + SHADOW_BACKOFF);
            self.shared.keyspace_metrics[keys[0].keyspace.index].shadow[2].increment(1);
            return None;
        }
        let id = self.next_shadow;
        self.next_shadow += 1;
        self.shadows.insert(
            id,
            Shadow {
                keyspace: keys[0].keyspace.index,
                key: keys[0].key.clone(),
                primary: None,
                shadow: None,
            },
        );
        self.send(shadow_side, &request.raw, Waiter::Shadow(id));
        Some(id)
    }

    async fn split(
        &mut self,
        spec: &'static CommandSpec,
        request: Request,
        keys: Vec<Resolved>,
        step: usize,
        merge: Merge,
    ) {
        let mut groups: Vec<(Route, Vec<usize>)> = Vec::new();
        for (position, key) in keys.iter().enumerate() {
            match groups.iter_mut().find(|(r, _)| *r == key.route) {
                Some((_, positions)) => positions.push(position),
                None => groups.push((key.route, vec![position])),
            }
        }
        let writes = distinct_keyspaces(keys.iter().filter(|k| k.write).map(|k| &k.keyspace));
        if !writes.is_empty() && self.begin_writes(&request, &writes).is_err() {
            return;
        }
        for (route, _) in &groups {
            if let Err(reason) = self.connect(route.primary).await {
                release(&writes);
                return self.unreachable(route.primary, &reason);
            }
        }
        let id = self
            .slots
            .parts(merge, groups.iter().map(|(_, p)| p.clone()).collect());
        for (part, (route, positions)) in groups.into_iter().enumerate() {
            let mut args: Vec<&[u8]> = vec![&request.args[0]];
            for &position in &positions {
                let index = keys[position].index;
                args.extend(request.args[index..index + step].iter().map(|a| a.as_ref()));
            }
            let part_keys: Vec<&Resolved> = positions
                .iter()
                .map(|&p| &keys[p])
                .filter(|k| k.write)
                .collect();
            let after = after_write(&part_keys, route, self.mirror.db);
            for &position in &positions {
                self.shared.keyspace_metrics[keys[position].keyspace.index].requests
                    [route.primary.index()]
                .increment(1);
            }
            let command = encode::command(&args);
            self.send(route.primary, &command, Waiter::Part { id, part, after });
        }
        // Each write keyspace has one route, so it sits in exactly one part,
        // whose reply releases the count begun above.
        let _ = spec;
    }

    /// Commands without keys go where every keyspace agrees, or are refused when that matters.
    pub(super) async fn keyless(&mut self, spec: &'static CommandSpec, request: Request) {
        let common = self.shared.common_route();
        let data_command = matches!(spec.group, cutover_redis::Group::Generic)
            || is_write(spec)
            || spec.is_readonly();
        if is_write(spec) && self.shared.any_converging() {
            return self.refuse(&format!(
                "{} without keys is refused while a keyspace converges ({}): run it on both clusters directly",
                spec.name.to_uppercase().replace('|', " "),
                self.shared.describe_states()
            ));
        }
        let side = match common {
            Some(route) => route.primary,
            None if data_command => {
                return self.refuse(&format!(
                    "{} would see only one cluster while keyspaces live on different ones ({})",
                    spec.name.to_uppercase().replace('|', " "),
                    self.shared.describe_states()
                ));
            }
            None => self.shared.default_side(),
        };
        self.forward(side, request.raw, None, spec.is_blocking())
            .await;
    }

    fn unreachable(&mut self, side: Side, reason: &str) {
        self.slots
            .ready(encode::error(&format!("ERR cutover: {reason}")));
        let _ = side;
    }

    /// Forwards raw bytes to `side` with an ordinary slot, connecting first.
    pub(super) async fn forward(
        &mut self,
        side: Side,
        raw: Bytes,
        after: Option<Box<After>>,
        blocking: bool,
    ) {
        if let Err(reason) = self.connect(side).await {
            if let Some(after) = after {
                release(&after.keyspaces);
            }
            return self.unreachable(side, &reason);
        }
        let id = self.slots.waiting();
        self.send(
            side,
            &raw,
            Waiter::Slot {
                id,
                after,
                shadow: None,
                sent: Instant::now(),
                blocking,
            },
        );
    }
}

/// What to do when the reply to `writes` arrives: converge the keys (when
/// the route converges) and release each keyspace's fence count.
fn after_write(writes: &[&Resolved], route: Route, db: u32) -> Option<Box<After>> {
    let keyspaces = distinct_keyspaces(writes.iter().map(|k| &k.keyspace));
    (!keyspaces.is_empty()).then(|| {
        Box::new(After {
            keys: writes
                .iter()
                .map(|k| (k.keyspace.clone(), k.key.clone()))
                .collect(),
            converge_from: route.converge_to.map(|_| route.primary),
            keyspaces,
            db,
        })
    })
}

/// `CLIENT KILL ID <id>`: the one form that names a proxy client.
fn is_kill_by_id(args: &[Bytes]) -> bool {
    args.len() == 4 && args[2].eq_ignore_ascii_case(b"id")
}

/// The first key of a request found without validating it (a key at a
/// fixed position), to route a malformed command where its key lives.
fn first_key<'a>(spec: &CommandSpec, args: &'a [Bytes]) -> Option<&'a Bytes> {
    spec.key_specs
        .iter()
        .find_map(|ks| match (ks.begin_search, ks.find_keys) {
            (BeginSearch::Index(i), FindKeys::Range { .. })
                if i > 0 && !ks.flags.contains(KeySpecFlags::NOT_KEY) =>
            {
                args.get(usize::try_from(i).ok()?)
            }
            _ => None,
        })
}

fn same_db_copy(spec: &CommandSpec, request: &Request) -> bool {
    spec.name == "copy"
        && !request
            .args
            .iter()
            .skip(3)
            .any(|a| a.eq_ignore_ascii_case(b"db"))
}
