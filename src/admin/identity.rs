//! Who made an admin request, for the history and the action log.
//!
//! A request carries a claim (`ctl:alice`, `console`: whatever the caller
//! says it is) and, where the transport can prove one, an identity: on the
//! Unix socket the peer process's uid from the kernel (`SO_PEERCRED`), on
//! TCP the name of the bearer token it presented. Both are recorded, so the
//! log says who claimed to act and who could be proven to.

use axum::extract::FromRequestParts;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::http::request::Parts;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

use super::auth::Caller;

/// Header `ctl` sends its claim in (requests without a body have no
/// `actor` field to carry it).
pub const ACTOR_HEADER: &str = "x-cutover-actor";

/// The kernel's word on who is at the other end of an admin socket
/// connection.
#[derive(Clone, Copy, Debug)]
pub struct SocketPeer {
    uid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for SocketPeer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        SocketPeer {
            uid: stream.io().peer_cred().ok().map(|cred| cred.uid()),
        }
    }
}

/// What a request proved and claimed about its sender.
#[derive(Clone, Debug)]
pub struct Identity {
    claimed: Option<String>,
    proven: Option<String>,
}

impl Identity {
    /// The actor recorded in the logs: the claim (or `fallback` when the
    /// request made none), then the proven identity in brackets.
    #[must_use]
    pub fn actor(&self, claimed_in_body: Option<String>, fallback: &str) -> String {
        let claim = claimed_in_body
            .or_else(|| self.claimed.clone())
            .unwrap_or_else(|| fallback.to_owned());
        match &self.proven {
            Some(proven) => format!("{claim} ({proven})"),
            None => claim,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let claimed = parts
            .headers
            .get(ACTOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_CLAIM).collect());
        let proven = if let Some(Caller(token)) = parts.extensions.get::<Caller>() {
            Some(token.clone())
        } else {
            parts
                .extensions
                .get::<ConnectInfo<SocketPeer>>()
                .map(|ConnectInfo(peer)| socket_identity(peer.uid))
        };
        Ok(Identity { claimed, proven })
    }
}

/// Longest claim kept: a claim is free text from the caller.
const MAX_CLAIM: usize = 128;

fn socket_identity(uid: Option<u32>) -> String {
    match uid {
        Some(uid) => match passwd_name(uid) {
            Some(name) => format!("socket uid {uid} {name}"),
            None => format!("socket uid {uid}"),
        },
        None => "socket, peer unknown".to_owned(),
    }
}

fn passwd_name(uid: u32) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| user_of(&passwd, uid))
}

/// Who runs this process, for the claim `ctl` makes: `$USER` or `$LOGNAME`
/// when set, else the name `/etc/passwd` gives this process's uid, else
/// `uid N` (a service or container often has neither variable set).
#[must_use]
pub fn local_user() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.trim().is_empty()
        {
            return name;
        }
    }
    let Ok(uid) = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m))
    else {
        return "unknown".into();
    };
    passwd_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// The name of `uid` in passwd(5) text.
pub(crate) fn user_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id = fields.nth(1)?.parse::<u32>().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uid_is_named_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_of(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_of(passwd, 0).as_deref(), Some("root"));
        assert_eq!(user_of(passwd, 7), None);
    }

    #[test]
    fn the_actor_is_the_claim_then_the_proof() {
        let both = Identity {
            claimed: Some("ctl:alice".into()),
            proven: Some("socket uid 1000 alice".into()),
        };
        assert_eq!(both.actor(None, "api"), "ctl:alice (socket uid 1000 alice)");
        assert_eq!(
            both.actor(Some("console".into()), "api"),
            "console (socket uid 1000 alice)"
        );
        let bare = Identity {
            claimed: None,
            proven: None,
        };
        assert_eq!(bare.actor(None, "api"), "api");
    }
}
