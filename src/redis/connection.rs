//! Connection-level commands the proxy answers itself (HELLO, AUTH, SELECT,
//! CLIENT SETNAME, CLIENT ID, CLIENT REPLY, RESET) and mirrors onto the
//! upstream connections, so both clusters see the same protocol version,
//! database and client name; and CLIENT UNBLOCK / NO-EVICT, translated to
//! the upstream connections behind a client.

use bytes::{BufMut, Bytes, BytesMut};
use cutover_redis::acl::Verdict;
use cutover_redis::{Request, encode};

use super::route::Merge;
use super::session::{Session, Waiter};
use super::side::{Credentials, Side, auth_command};
use crate::config::UpstreamIdentity;

/// Reported by HELLO: the Redis version whose command table the proxy routes by.
const REPORTED_VERSION: &str = "7.0.15";

impl Session {
    /// Sends a state-changing command to every connected side, discarding replies.
    fn mirror_to_sides(&mut self, command: &Bytes) {
        for side in [Side::Source, Side::Target] {
            if self.sides[side.index()].is_some() {
                self.send(side, command, Waiter::Discard);
            }
        }
    }

    pub(super) async fn auth(&mut self, request: &Request) {
        let (user, password) = match request.args.len() {
            2 => (&b"default"[..], &request.args[1]),
            3 => (&request.args[1][..], &request.args[2]),
            _ => {
                return self.local(encode::error(
                    "ERR wrong number of arguments for 'auth' command",
                ));
            }
        };
        let reply = self.check_password(user, password).await;
        self.local(reply);
    }

    /// Checks a user and password against the users file (or the single
    /// `client_password`) without touching any upstream; a refusal is
    /// logged with the client's address and held back when that address
    /// keeps failing.
    async fn check_password(&mut self, user: &[u8], given: &[u8]) -> Bytes {
        let accepted = match (&self.shared.users, &self.shared.options.client_password) {
            (Some(users), _) => users.current().verify(user, given) == Verdict::Accepted,
            (None, Some(expected)) => user == b"default" && expected.as_bytes() == given,
            (None, None) => {
                return encode::error(
                    "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                );
            }
        };
        if accepted {
            self.shared.auth_throttle.succeeded(self.peer.ip());
            self.authenticated = true;
            self.become_user(user, given);
            return encode::ok();
        }
        self.shared.auth_failures.increment(1);
        let delay = self
            .shared
            .auth_throttle
            .failed(self.peer.ip(), std::time::Instant::now());
        tracing::warn!(
            migration = %self.shared.migration.name,
            peer = %self.peer,
            user = %String::from_utf8_lossy(user),
            held_back_ms = delay.as_millis(),
            "client authentication failed"
        );
        tokio::time::sleep(delay).await;
        encode::error("WRONGPASS invalid username-password pair or user is disabled.")
    }

    /// With `upstream_identity: client`, later upstream connections log in
    /// as this user, and the connected ones switch now; if a cluster
    /// refuses the switch the client is disconnected rather than left
    /// running as its previous user ([`Waiter::Reauth`]).
    fn become_user(&mut self, user: &[u8], password: &[u8]) {
        if self.shared.identity != UpstreamIdentity::Client {
            return;
        }
        let changed = self.user.as_ref().is_none_or(|u| {
            u.username.as_deref().map(str::as_bytes) != Some(user)
                || u.password.as_deref().map(str::as_bytes) != Some(password)
        });
        self.user = Some(Credentials {
            username: Some(String::from_utf8_lossy(user).into_owned()),
            password: Some(String::from_utf8_lossy(password).into_owned()),
        });
        if !changed {
            return;
        }
        for side in [Side::Source, Side::Target] {
            if self.sides[side.index()].is_some() {
                let credentials = self.side_credentials(side);
                let command = auth_command(&credentials)
                    .unwrap_or_else(|| encode::command(&[b"AUTH", b"default", b""]));
                self.send(side, &command, Waiter::Reauth);
            }
        }
    }

    /// Whom `side`'s upstream connections of this session log in as.
    pub(super) fn side_credentials(&self, side: Side) -> Credentials {
        if self.shared.identity == UpstreamIdentity::Proxy {
            return self.shared.credentials[side.index()].clone();
        }
        let name = self
            .user
            .as_ref()
            .and_then(|u| u.username.as_deref())
            .unwrap_or("default");
        match (self.shared.mapped[side.index()].get(name), &self.user) {
            (Some(mapped), _) => mapped.clone(),
            (None, Some(user)) => user.clone(),
            // The default user without a password: no AUTH at all.
            (None, None) => Credentials::default(),
        }
    }

    pub(super) async fn hello(&mut self, request: &Request) {
        let mut protocol = self.mirror.protocol;
        if let Some(version) = request.args.get(1) {
            let number = std::str::from_utf8(version)
                .ok()
                .and_then(|v| v.parse::<i64>().ok());
            match number {
                Some(2) => protocol = 2,
                Some(3) => protocol = 3,
                // Redis's words for both refusals.
                Some(_) => {
                    return self.local(encode::error("NOPROTO unsupported protocol version"));
                }
                None => {
                    return self.local(encode::error(
                        "ERR Protocol version is not an integer or out of range",
                    ));
                }
            }
        }
        let mut i = 2;
        while i < request.args.len() {
            let option = request.args[i].to_ascii_lowercase();
            match (
                option.as_slice(),
                request.args.get(i + 1),
                request.args.get(i + 2),
            ) {
                (b"auth", Some(user), Some(password)) => {
                    let reply = self.check_password(user, password).await;
                    if reply.starts_with(b"-") {
                        return self.local(reply);
                    }
                    i += 3;
                }
                (b"setname", Some(name), _) => {
                    self.apply_name(name.clone());
                    i += 2;
                }
                _ => {
                    let option = String::from_utf8_lossy(&request.args[i]);
                    let message = format!("ERR Syntax error in HELLO option '{option}'");
                    return self.local(encode::error(&message));
                }
            }
        }
        if !self.authenticated {
            return self.local(encode::error(
                "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
            ));
        }
        if protocol != self.mirror.protocol {
            self.mirror.protocol = protocol;
            let command = encode::command(&[b"HELLO", protocol.to_string().as_bytes()]);
            self.mirror_to_sides(&command);
        }
        self.local(hello_reply(protocol, self.client_id));
    }

    /// SELECT: only Redis knows how many databases it has, so the default
    /// side answers, while the mirror (and the other side) switch at once
    /// so that pipelined commands already use the new database; an error
    /// reply switches them back ([`Session::select_answered`]).
    pub(super) async fn select(&mut self, request: Request) {
        let side = self.shared.default_side();
        let db = std::str::from_utf8(&request.args[1])
            .ok()
            .filter(|a| !a.starts_with('+'))
            .and_then(|a| a.parse::<u32>().ok());
        let Some(db) = db else {
            // Not a database number: Redis refuses it in its own words.
            return self.forward(side, request.raw, None, false).await;
        };
        if db == self.mirror.db {
            return self.local(encode::ok());
        }
        if let Err(reason) = self.connect(side).await {
            return self.local(encode::error(&format!("ERR cutover: {reason}")));
        }
        let previous = std::mem::replace(&mut self.mirror.db, db);
        if self.sides[side.other().index()].is_some() {
            self.send(side.other(), &request.raw, Waiter::Discard);
        }
        let id = self.slots.waiting();
        self.send(side, &request.raw, Waiter::Select { id, previous });
    }

    /// The answer to a forwarded SELECT: relayed; after an error (database
    /// out of range) the connections go back to the previous database.
    pub(super) fn select_answered(&mut self, id: u64, previous: u32, reply: Bytes) {
        if cutover_redis::reply_kind(&reply) == cutover_redis::ReplyKind::Error {
            self.mirror.db = previous;
            let command = encode::command(&[b"SELECT", previous.to_string().as_bytes()]);
            self.mirror_to_sides(&command);
        }
        self.slots.fill(id, reply);
    }

    pub(super) fn set_name(&mut self, request: &Request) {
        let Some(name) = request.args.get(2) else {
            return self.local(encode::error(
                "ERR wrong number of arguments for 'client|setname' command",
            ));
        };
        if name.iter().any(|b| *b == b' ' || *b == b'\n') {
            return self.local(encode::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ));
        }
        self.apply_name(name.clone());
        self.local(encode::ok());
    }

    /// CLIENT REPLY ON|OFF|SKIP, with Redis's meaning: OFF and SKIP are
    /// not answered, and the replies they suppress are still awaited from
    /// upstream (in order) but never written. Other arguments go to Redis,
    /// which says what is wrong with them.
    pub(super) async fn client_reply(&mut self, request: Request) {
        let mode = request.args[2].to_ascii_lowercase();
        match mode.as_slice() {
            b"on" => {
                self.reply_off = false;
                self.skip_next_reply = false;
                self.skipping = false;
                self.slots.speak_from(self.slots.next_id());
                self.local(encode::ok());
            }
            b"off" => {
                if !self.reply_off {
                    self.slots.silence(self.slots.next_id()..u64::MAX);
                }
                self.reply_off = true;
            }
            b"skip" => self.skip_next_reply = !self.reply_off,
            _ => {
                let side = self.shared.default_side();
                self.forward(side, request.raw, None, false).await;
            }
        }
    }

    /// CLIENT UNBLOCK <id> [TIMEOUT|ERROR]: `id` is a proxy client id; the
    /// command is sent, with the upstream ids behind it, to each cluster
    /// that client is connected to, and answers 1 if any was unblocked.
    pub(super) async fn client_unblock(&mut self, request: Request) {
        let target = std::str::from_utf8(&request.args[2])
            .ok()
            .and_then(|id| id.parse::<u64>().ok());
        let upstreams = target.and_then(|id| self.shared.clients.upstreams(id));
        let mut parts: Vec<(Side, Bytes)> = Vec::with_capacity(2);
        for side in [Side::Source, Side::Target] {
            if let Some(upstream) = upstreams.and_then(|u| u[side.index()]) {
                let mut args: Vec<&[u8]> = request.args.iter().map(AsRef::as_ref).collect();
                let id = upstream.to_string();
                args[2] = id.as_bytes();
                parts.push((side, encode::command(&args)));
            }
        }
        if parts.is_empty() {
            // Not one of our clients (or not a number): id 0 is never a Redis
            // client, so Redis answers exactly as for an unknown id, and
            // still validates the other arguments.
            let side = self.shared.default_side();
            let mut args: Vec<&[u8]> = request.args.iter().map(AsRef::as_ref).collect();
            if target.is_some() {
                args[2] = b"0";
            }
            let command = encode::command(&args);
            return self.forward(side, command, None, false).await;
        }
        for (side, _) in &parts {
            if let Err(reason) = self.connect(*side).await {
                return self.local(encode::error(&format!("ERR cutover: {reason}")));
            }
        }
        let id = self
            .slots
            .parts(Merge::SumIntegers, vec![Vec::new(); parts.len()]);
        for (part, (side, command)) in parts.into_iter().enumerate() {
            self.send(
                side,
                &command,
                Waiter::Part {
                    id,
                    part,
                    after: None,
                },
            );
        }
    }

    /// CLIENT KILL ID <id>: `id` is a proxy client id (CLIENT ID); that
    /// client's connection is closed, and the answer counts it as Redis's
    /// does (never the caller itself, as with Redis's default SKIPME yes).
    /// An id that is not a number goes to Redis, which says why.
    pub(super) async fn kill_client(&mut self, request: Request) {
        let target = std::str::from_utf8(&request.args[3])
            .ok()
            .and_then(|id| id.parse::<u64>().ok())
            .filter(|id| *id > 0);
        let Some(target) = target else {
            let side = self.shared.default_side();
            return self.forward(side, request.raw, None, false).await;
        };
        let killed = target != self.client_id && self.shared.clients.kill(target);
        self.local(encode::integer(i64::from(killed)));
    }

    /// CLIENT NO-EVICT ON|OFF applies to every upstream connection of the
    /// client, now and when one is opened later; Redis answers.
    pub(super) async fn no_evict(&mut self, request: Request) {
        let mode = request.args[2].to_ascii_lowercase();
        let on = match mode.as_slice() {
            b"on" => Some(true),
            b"off" => Some(false),
            _ => None,
        };
        let side = self.shared.default_side();
        if let Some(on) = on {
            self.no_evict = on;
            if let Some(other) = self.sides[side.other().index()]
                .as_ref()
                .map(|_| side.other())
            {
                self.send(other, &request.raw, Waiter::Discard);
            }
        }
        self.forward(side, request.raw, None, false).await;
    }

    /// RESET: Redis's meaning for the client (transaction discarded,
    /// unwatched, replies on, database 0, RESP2, no name, eviction allowed,
    /// authenticated only if no password is set), applied to the upstream
    /// connections without resetting their own authentication.
    pub(super) fn reset(&mut self) {
        if let Some(side) = self.multi.take().and_then(|t| t.side()) {
            self.send_if_connected(side, &encode::command(&[b"DISCARD"]));
        }
        if let Some(side) = self.watch_side.take() {
            self.send_if_connected(side, &encode::command(&[b"UNWATCH"]));
        }
        self.watch_lost = false;
        self.reply_off = false;
        self.skip_next_reply = false;
        // A SKIP just before RESET still swallows RESET's own reply, as in Redis.
        self.slots.speak_from(self.slots.next_id());
        if self.mirror.db != 0 {
            self.mirror.db = 0;
            self.mirror_to_sides(&encode::command(&[b"SELECT", b"0"]));
        }
        if self.mirror.protocol != 2 {
            self.mirror.protocol = 2;
            self.mirror_to_sides(&encode::command(&[b"HELLO", b"2"]));
        }
        if self.mirror.name.take().is_some() {
            self.mirror_to_sides(&encode::command(&[b"CLIENT", b"SETNAME", b""]));
        }
        if std::mem::take(&mut self.no_evict) {
            self.mirror_to_sides(&encode::command(&[b"CLIENT", b"NO-EVICT", b"OFF"]));
        }
        self.authenticated = self.shared.default_authenticated();
        self.local(encode::simple("RESET"));
    }

    fn send_if_connected(&mut self, side: Side, command: &Bytes) {
        if self.sides[side.index()].is_some() {
            self.send(side, command, Waiter::Discard);
        }
    }

    fn apply_name(&mut self, name: Bytes) {
        let command = encode::command(&[b"CLIENT", b"SETNAME", &name]);
        self.mirror.name = Some(name);
        self.mirror_to_sides(&command);
    }
}

/// HELLO's answer: a map in RESP3, a flat array in RESP2.
fn hello_reply(protocol: u8, id: u64) -> Bytes {
    let fields: [(&str, Bytes); 6] = [
        ("server", encode::bulk(b"redis")),
        ("version", encode::bulk(REPORTED_VERSION.as_bytes())),
        ("proto", encode::integer(i64::from(protocol))),
        ("id", encode::integer(i64::try_from(id).unwrap_or(i64::MAX))),
        ("mode", encode::bulk(b"standalone")),
        ("role", encode::bulk(b"master")),
    ];
    let mut out = BytesMut::new();
    let count = fields.len() + 1;
    if protocol == 3 {
        out.put_slice(format!("%{count}\r\n").as_bytes());
    } else {
        out.put_slice(format!("*{}\r\n", count * 2).as_bytes());
    }
    for (name, value) in fields {
        out.put_slice(&encode::bulk(name.as_bytes()));
        out.put_slice(&value);
    }
    out.put_slice(&encode::bulk(b"modules"));
    out.put_slice(b"*0\r\n");
    out.freeze()
}
