//! MULTI/EXEC through the proxy. The transaction is queued here and sent
//! as one MULTI…EXEC block to the single cluster that owns every key it
//! touches, so it stays atomic; its written keys are converged afterwards.

use cutover_redis::{CommandSpec, Request, encode, keys, lookup};

use super::commands::{distinct_keyspaces, release};
use super::route::{Route, route};
use super::session::{After, Session, Waiter};
use super::side::Side;

/// Commands one transaction may hold; Redis has no limit, the proxy must.
const MAX_QUEUED: usize = 10_000;

impl Session {
    pub(super) fn begin_transaction(&mut self) {
        if self.multi.is_some() {
            return self.local(encode::error("ERR MULTI calls can not be nested"));
        }
        self.multi = Some(Vec::new());
        self.multi_failed = false;
        self.local(encode::ok());
    }

    pub(super) fn queue_in_transaction(&mut self, spec: &'static CommandSpec, request: Request) {
        let queued = self.multi.as_ref().map_or(0, Vec::len);
        let problem = if queued >= MAX_QUEUED {
            Some(format!(
                "ERR cutover: a transaction may queue at most {MAX_QUEUED} commands"
            ))
        } else if let Err(e) = keys(spec, &request.args) {
            Some(match e {
                cutover_redis::KeyError::WrongArity { .. } => format!(
                    "ERR wrong number of arguments for '{}' command",
                    spec.name.replace('|', " ")
                ),
                other => format!("ERR {other}"),
            })
        } else if matches!(
            spec.name,
            "subscribe" | "psubscribe" | "ssubscribe" | "hello" | "auth" | "select"
        ) {
            Some(format!(
                "ERR cutover: {} inside MULTI is not supported through the proxy",
                spec.name.to_uppercase()
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                self.multi_failed = true;
                self.local(encode::error(&message));
            }
            None => {
                if let Some(multi) = self.multi.as_mut() {
                    multi.push(request);
                }
                self.local(encode::simple("QUEUED"));
            }
        }
    }

    pub(super) async fn discard(&mut self) {
        if self.multi.take().is_none() {
            return self.local(encode::error("ERR DISCARD without MULTI"));
        }
        // Redis's DISCARD also unwatches; UNWATCH's +OK then serves as DISCARD's reply.
        match self.watch_side.take() {
            Some(side) => {
                self.forward(side, encode::command(&[b"UNWATCH"]), None, false)
                    .await
            }
            None => self.local(encode::ok()),
        }
    }

    pub(super) async fn watch(&mut self, spec: &'static CommandSpec, request: Request) {
        if self.multi.is_some() {
            return self.local(encode::error("ERR WATCH inside MULTI is not allowed"));
        }
        let Ok(refs) = keys(spec, &request.args) else {
            return self.local(encode::error(
                "ERR wrong number of arguments for 'watch' command",
            ));
        };
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
        let side = side.unwrap_or(Side::Source);
        self.watch_side = Some(side);
        self.forward(side, request.raw, None, false).await;
    }

    pub(super) async fn exec(&mut self, request: Request) {
        let Some(queued) = self.multi.take() else {
            return self.local(encode::error("ERR EXEC without MULTI"));
        };
        let watched = self.watch_side.take();
        if self.multi_failed {
            if let Some(side) = watched {
                self.forward(side, encode::command(&[b"UNWATCH"]), None, false)
                    .await;
            }
            return self.local(encode::error(
                "EXECABORT Transaction discarded because of previous errors.",
            ));
        }
        let mut touched = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        for queued_request in &queued {
            let Some(spec) = lookup(&queued_request.args) else {
                continue;
            };
            let Ok(refs) = keys(spec, &queued_request.args) else {
                continue;
            };
            for key_ref in refs {
                let key = queued_request.args[key_ref.index].clone();
                let Some(keyspace) = self.shared.keyspace_for(&key).cloned() else {
                    return self.local(encode::error(
                        "EXECABORT cutover: a queued command names a key that matches no keyspace",
                    ));
                };
                let key_route = route(keyspace.topic.state());
                if !routes.contains(&key_route) {
                    routes.push(key_route);
                }
                if super::commands::is_write(spec) {
                    touched.push((keyspace, key));
                }
            }
        }
        let primaries: Vec<Side> = routes.iter().map(|r| r.primary).collect();
        let side = primaries.first().copied().or(watched).unwrap_or_else(|| {
            self.shared
                .common_route()
                .map_or(Side::Source, |r| r.primary)
        });
        if primaries.iter().any(|p| *p != side) || watched.is_some_and(|w| w != side) {
            return self.local(encode::error(&format!(
                "EXECABORT cutover: the transaction touches keyspaces on different clusters ({})",
                self.shared.describe_states()
            )));
        }
        let keyspaces = distinct_keyspaces(touched.iter().map(|(k, _)| k));
        for (i, keyspace) in keyspaces.iter().enumerate() {
            if !keyspace.begin_write() {
                release(&keyspaces[..i]);
                self.watch_side = watched;
                self.parked = Some(super::session::Parked {
                    request,
                    keyspace: keyspace.clone(),
                    queued: Some(queued),
                });
                return;
            }
        }
        if let Err(reason) = self.connect(side).await {
            release(&keyspaces);
            return self.local(encode::error(&format!("EXECABORT cutover: {reason}")));
        }
        let converge_from = routes.first().and_then(|r| r.converge_to.map(|_| side));
        self.send(side, &encode::command(&[b"MULTI"]), Waiter::Discard);
        for queued_request in &queued {
            self.send(side, &queued_request.raw, Waiter::Discard);
        }
        let after = (!keyspaces.is_empty()).then(|| {
            Box::new(After {
                keys: touched,
                converge_from,
                keyspaces,
                db: self.mirror.db,
            })
        });
        let id = self.slots.waiting();
        self.send(
            side,
            &request.raw,
            Waiter::Slot {
                id,
                after,
                shadow: None,
                sent: std::time::Instant::now(),
                blocking: false,
            },
        );
    }
}
