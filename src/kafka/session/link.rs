//! One upstream broker connection owned by one client session.
//!
//! Each client connection gets its own upstream connections (one per real
//! broker it needs) rather than sharing a pool: a broker serves one request
//! at a time per connection, so a consumer's long-poll Fetch on a shared
//! connection would stall every other client behind it.
//!
//! Requests carry the session's own correlation ids (several client
//! requests may be split onto one link, and proxy-originated requests
//! share it). Writes happen in the session's request order, which keeps
//! each partition's produce order; a reader task hands every answer to
//! the waiter registered for its correlation id (brokers answer in order,
//! so this is a queue, checked). When the connection fails, every waiter
//! learns why.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use cutover_kafka::{FrameError, next_frame, response_correlation_id};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::kafka::cluster::Side;
use crate::proxy::Stream;

/// Bytes buffered before a write reaches the socket; larger frames go
/// straight through.
const WRITE_BUFFER: usize = 64 * 1024;
const READ_RESERVE: usize = 16 * 1024;
/// Free room below which the buffer grows before a read. Frames split off
/// it still share its memory, so growing before every read would allocate
/// a new buffer per request; growing only when nearly full allocates once
/// per [`READ_RESERVE`] or so of traffic.
const READ_MIN_SPARE: usize = 4 * 1024;

/// An answer, or why none will come.
pub(crate) type Answer = Result<Bytes, Arc<LinkError>>;

/// Why a link failed: every request waiting on it fails with the same
/// error, so it is shared.
#[derive(Debug, thiserror::Error)]
#[error("the connection to {link} failed")]
pub(crate) struct LinkError {
    /// The cluster the link goes to.
    pub(crate) side: Side,
    link: String,
    #[source]
    fault: LinkFault,
}

/// What went wrong on a link.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkFault {
    #[error("writing")]
    Write(#[source] std::io::Error),
    #[error("reading")]
    Read(#[source] std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("an answer does not frame")]
    Frame(#[source] FrameError),
    #[error("the broker answered correlation id {got:?} while {due} was due")]
    Order { got: Option<i32>, due: i32 },
    #[error("the broker sent an answer nobody asked for")]
    Unasked,
}

/// An error and its sources, one sentence each (for a log line).
pub(crate) fn explain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}

struct Waiter {
    correlation_id: i32,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Queue {
    waiters: VecDeque<Waiter>,
    /// Set once the connection failed; later sends fail at once.
    failed: Option<Arc<LinkError>>,
}

/// A session's connection to one upstream broker.
pub(super) struct Link {
    /// Where it goes (`cluster` name and address), for messages.
    pub(crate) name: String,
    side: Side,
    /// When the connection's SASL login must be renewed (KIP-368): the
    /// broker limited its session.
    pub(super) reauth_at: Option<std::time::Instant>,
    writer: BufWriter<WriteHalf<Stream>>,
    queue: Arc<Mutex<Queue>>,
    reader: JoinHandle<()>,
    dirty: bool,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Link {
    /// Wraps a connected stream; `max_frame` bounds answers.
    pub(crate) fn new(side: Side, name: String, stream: Stream, max_frame: usize) -> Link {
        let (read, write) = tokio::io::split(stream);
        let queue = Arc::new(Mutex::new(Queue::default()));
        let reader = tokio::spawn(read_answers(
            read,
            queue.clone(),
            max_frame,
            (side, name.clone()),
        ));
        Link {
            name,
            side,
            reauth_at: None,
            writer: BufWriter::with_capacity(WRITE_BUFFER, write),
            queue,
            reader,
            dirty: false,
        }
    }

    /// Whether the connection has failed (the session then drops it and
    /// connects again on the next request).
    #[must_use]
    pub(crate) fn failed(&self) -> Option<Arc<LinkError>> {
        lock(&self.queue).failed.clone()
    }

    /// Writes one request (already carrying `correlation_id`), given as the
    /// parts to concatenate, and registers for its answer unless
    /// `answered` is false (Produce with acks=0). Buffered: call
    /// [`Link::flush`] before waiting.
    ///
    /// # Errors
    /// Why the connection cannot take it.
    pub(super) async fn send(
        &mut self,
        parts: &[&[u8]],
        correlation_id: i32,
        answered: bool,
    ) -> Result<Option<oneshot::Receiver<Answer>>, Arc<LinkError>> {
        let rx = {
            let mut q = lock(&self.queue);
            if let Some(why) = &q.failed {
                return Err(why.clone());
            }
            answered.then(|| {
                let (tx, rx) = oneshot::channel();
                q.waiters.push_back(Waiter { correlation_id, tx });
                rx
            })
        };
        for part in parts {
            if let Err(e) = self.writer.write_all(part).await {
                return Err(fail(&self.queue, self.error(LinkFault::Write(e))));
            }
        }
        self.dirty = true;
        Ok(rx)
    }

    /// Pushes buffered requests to the socket.
    ///
    /// # Errors
    /// Why the write failed.
    pub(crate) async fn flush(&mut self) -> Result<(), Arc<LinkError>> {
        if !self.dirty {
            return Ok(());
        }
        self.dirty = false;
        match self.writer.flush().await {
            Ok(()) => Ok(()),
            Err(e) => Err(fail(&self.queue, self.error(LinkFault::Write(e)))),
        }
    }

    fn error(&self, fault: LinkFault) -> LinkError {
        LinkError {
            side: self.side,
            link: self.name.clone(),
            fault,
        }
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

fn fail(queue: &Mutex<Queue>, error: LinkError) -> Arc<LinkError> {
    let mut q = lock(queue);
    let error = q.failed.get_or_insert_with(|| Arc::new(error)).clone();
    for w in q.waiters.drain(..) {
        let _ = w.tx.send(Err(error.clone()));
    }
    error
}

async fn read_answers(
    mut read: ReadHalf<Stream>,
    queue: Arc<Mutex<Queue>>,
    max_frame: usize,
    (side, link): (Side, String),
) {
    let error = |fault| LinkError {
        side,
        link: link.clone(),
        fault,
    };
    let mut buf = BytesMut::with_capacity(READ_RESERVE);
    let why = loop {
        loop {
            let frame = match next_frame(&mut buf, max_frame) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    fail(&queue, error(LinkFault::Frame(e)));
                    return;
                }
            };
            let id = response_correlation_id(&frame);
            let waiter = lock(&queue).waiters.pop_front();
            match waiter {
                Some(w) if Some(w.correlation_id) == id => {
                    let _ = w.tx.send(Ok(frame));
                }
                Some(w) => {
                    let due = w.correlation_id;
                    let why = fail(&queue, error(LinkFault::Order { got: id, due }));
                    let _ = w.tx.send(Err(why));
                    return;
                }
                None => {
                    fail(&queue, error(LinkFault::Unasked));
                    return;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_MIN_SPARE {
            buf.reserve(READ_RESERVE);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => break LinkFault::Closed,
            Ok(_) => {}
            Err(e) => break LinkFault::Read(e),
        }
    };
    fail(&queue, error(why));
}

/// Share of a broker's session lifetime after which the proxy logs in
/// again (the Java client picks 85-95%): early enough that a request never
/// meets an expired session, late enough to keep re-logins rare.
const REAUTH_AT_SHARE: f64 = 0.85;

/// When a login that holds for `lifetime` should be renewed.
#[must_use]
pub(super) fn reauth_deadline(lifetime: std::time::Duration) -> std::time::Instant {
    std::time::Instant::now() + lifetime.mul_f64(REAUTH_AT_SHARE)
}

/// A login's rounds through a live link (KIP-368 re-authentication): the
/// requests queue behind the ones already sent, as the broker expects.
pub(super) struct LinkRounds<'a> {
    /// The link.
    pub(super) link: &'a mut Link,
    /// Correlation ids of the session's id space, one per round.
    pub(crate) ids: std::vec::IntoIter<i32>,
}

#[async_trait::async_trait]
impl crate::kafka::sasl::client::Rounds for LinkRounds<'_> {
    async fn round(
        &mut self,
        make: &(dyn Fn(i32) -> Result<Bytes, String> + Sync),
    ) -> Result<Bytes, String> {
        let id = self
            .ids
            .next()
            .ok_or("a login with more rounds than expected")?;
        let frame = make(id)?;
        let rx = self
            .link
            .send(&[&frame], id, true)
            .await
            .map_err(|e| explain(&e))?
            .ok_or("no answer expected")?;
        self.link.flush().await.map_err(|e| explain(&e))?;
        match rx.await {
            Ok(answer) => answer.map_err(|e| explain(&e)),
            Err(_) => Err(format!("{} went away", self.link.name)),
        }
    }
}
