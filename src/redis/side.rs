//! One upstream connection of a client session (to the source or the
//! target), opened lazily and set up to mirror the client's connection
//! state: credentials, protocol version, database, name.

use bytes::{Bytes, BytesMut};
use cutover_redis::{Limits, ReplyKind, encode, reply_kind, reply_len};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::proxy::{Stream, Upstream, UpstreamError};

/// Which cluster of the migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// The cluster being left.
    Source = 0,
    /// The cluster being moved to.
    Target = 1,
}

impl Side {
    /// The other cluster.
    #[must_use]
    pub const fn other(self) -> Side {
        match self {
            Side::Source => Side::Target,
            Side::Target => Side::Source,
        }
    }

    /// Index into per-side arrays.
    #[must_use]
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Connection state the upstream must mirror.
#[derive(Clone, Debug, Default)]
pub struct Mirror {
    /// RESP version negotiated with HELLO (2 or 3).
    pub protocol: u8,
    /// Selected database.
    pub db: u32,
    /// CLIENT SETNAME value.
    pub name: Option<Bytes>,
}

/// Credentials for the upstream, from the cluster's `auth`.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// ACL user (None: `default`).
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
}

/// A connected upstream and its unparsed bytes. Not split into halves: the
/// one task that owns it reads and writes in turn, and `split` would add a
/// lock to every poll.
pub struct SideConn {
    /// The connection.
    pub stream: Stream,
    /// Bytes read but not yet framed.
    pub buffer: BytesMut,
}

/// The setup could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum SideError {
    /// No TCP/TLS connection.
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    /// Setup command refused (bad credentials, database out of range).
    #[error("cluster \"{cluster}\" refused the connection setup: {reply}")]
    Refused {
        /// Cluster name.
        cluster: String,
        /// The error reply, as text.
        reply: String,
    },
    /// The connection broke during setup.
    #[error("cluster \"{cluster}\" closed the connection during setup: {reason}")]
    Broken {
        /// Cluster name.
        cluster: String,
        /// What happened.
        reason: String,
    },
}

/// Initial read buffer per upstream connection; grows for large replies.
const READ_BUFFER: usize = 16 * 1024;

/// Opens a connection and replays AUTH, HELLO, SELECT and CLIENT SETNAME.
///
/// # Errors
/// [`SideError`] naming the cluster.
pub async fn open(
    upstream: &Upstream,
    credentials: &Credentials,
    mirror: &Mirror,
    limits: &Limits,
) -> Result<SideConn, SideError> {
    let stream = upstream.connect().await?;
    let mut conn = SideConn {
        stream,
        buffer: BytesMut::with_capacity(READ_BUFFER),
    };
    let setup = setup_commands(credentials, mirror);
    if setup.is_empty() {
        return Ok(conn);
    }
    let cluster = upstream.cluster.to_string();
    let broken = |reason: String| SideError::Broken {
        cluster: cluster.clone(),
        reason,
    };
    let mut out = BytesMut::new();
    for command in &setup {
        out.extend_from_slice(command);
    }
    conn.stream
        .write_all(&out)
        .await
        .map_err(|e| broken(e.to_string()))?;
    for _ in 0..setup.len() {
        let reply = read_reply(&mut conn, limits).await.map_err(broken)?;
        if reply_kind(&reply) == ReplyKind::Error {
            return Err(SideError::Refused {
                cluster,
                reply: String::from_utf8_lossy(reply.strip_prefix(b"-").unwrap_or(&reply))
                    .trim_end()
                    .to_owned(),
            });
        }
    }
    Ok(conn)
}

/// The AUTH that logs in as `credentials`; none without a password.
#[must_use]
pub fn auth_command(credentials: &Credentials) -> Option<Bytes> {
    let password = credentials.password.as_ref()?;
    Some(match &credentials.username {
        Some(user) => encode::command(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
        None => encode::command(&[b"AUTH", password.as_bytes()]),
    })
}

fn setup_commands(credentials: &Credentials, mirror: &Mirror) -> Vec<Bytes> {
    let mut commands = Vec::new();
    commands.extend(auth_command(credentials));
    if mirror.protocol == 3 {
        commands.push(encode::command(&[b"HELLO", b"3"]));
    }
    if mirror.db != 0 {
        commands.push(encode::command(&[
            b"SELECT",
            mirror.db.to_string().as_bytes(),
        ]));
    }
    if let Some(name) = &mirror.name {
        commands.push(encode::command(&[b"CLIENT", b"SETNAME", name]));
    }
    commands
}

/// Sends one command and reads its reply (setup and copier traffic; the
/// session pipelines and frames replies itself).
///
/// # Errors
/// A sentence when the connection fails or the reply cannot be framed.
pub async fn call(conn: &mut SideConn, limits: &Limits, command: &[u8]) -> Result<Bytes, String> {
    conn.stream
        .write_all(command)
        .await
        .map_err(|e| e.to_string())?;
    read_reply(conn, limits).await
}

/// Reads one whole non-push reply.
pub async fn read_reply(conn: &mut SideConn, limits: &Limits) -> Result<Bytes, String> {
    loop {
        if let Some(len) = reply_len(&conn.buffer, limits).map_err(|e| e.to_string())? {
            let reply = conn.buffer.split_to(len).freeze();
            if reply_kind(&reply) != ReplyKind::Push {
                return Ok(reply);
            }
            continue;
        }
        let read = conn
            .stream
            .read_buf(&mut conn.buffer)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("connection closed".into());
        }
    }
}
