//! Connection-level commands the proxy answers itself (HELLO, AUTH, SELECT,
//! CLIENT SETNAME) and mirrors onto the upstream connections, so both
//! clusters see the same protocol version, database and client name.

use bytes::{BufMut, Bytes, BytesMut};
use cutover_redis::{Request, encode};

use super::session::{Session, Waiter};
use super::side::Side;

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

    pub(super) fn auth(&mut self, request: &Request) {
        let password = match request.args.len() {
            2 => &request.args[1],
            3 => &request.args[2],
            _ => {
                return self.local(encode::error(
                    "ERR wrong number of arguments for 'auth' command",
                ));
            }
        };
        let reply = self.check_password(password);
        self.local(reply);
    }

    fn check_password(&mut self, given: &[u8]) -> Bytes {
        match &self.shared.options.client_password {
            None => encode::error(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            Some(expected) if expected.as_bytes() == given => {
                self.authenticated = true;
                encode::ok()
            }
            Some(_) => {
                encode::error("WRONGPASS invalid username-password pair or user is disabled.")
            }
        }
    }

    pub(super) fn hello(&mut self, request: &Request) {
        let mut protocol = self.mirror.protocol;
        if let Some(version) = request.args.get(1) {
            match version.as_ref() {
                b"2" => protocol = 2,
                b"3" => protocol = 3,
                _ => return self.local(encode::error("NOPROTO unsupported protocol version")),
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
                (b"auth", Some(_user), Some(password)) => {
                    let reply = self.check_password(password);
                    if reply.starts_with(b"-") {
                        return self.local(reply);
                    }
                    i += 3;
                }
                (b"setname", Some(name), _) => {
                    self.apply_name(name.clone());
                    i += 2;
                }
                _ => return self.local(encode::error("ERR Syntax error in HELLO option")),
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
        self.local(hello_reply(protocol));
    }

    pub(super) fn select(&mut self, request: &Request) {
        let Some(db) = request
            .args
            .get(1)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|a| a.parse::<u32>().ok())
        else {
            return self.local(encode::error("ERR invalid DB index"));
        };
        if db != self.mirror.db {
            self.mirror.db = db;
            self.mirror_to_sides(&request.raw);
        }
        self.local(encode::ok());
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

    fn apply_name(&mut self, name: Bytes) {
        let command = encode::command(&[b"CLIENT", b"SETNAME", &name]);
        self.mirror.name = Some(name);
        self.mirror_to_sides(&command);
    }
}

/// HELLO's answer: a map in RESP3, a flat array in RESP2.
fn hello_reply(protocol: u8) -> Bytes {
    let fields: [(&str, Bytes); 6] = [
        ("server", encode::bulk(b"redis")),
        ("version", encode::bulk(REPORTED_VERSION.as_bytes())),
        ("proto", encode::integer(i64::from(protocol))),
        ("id", encode::integer(0)),
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
