//! Replies in request order. Each client request gets a slot; upstream
//! replies fill slots (whole, or part of a split command); the front of
//! the queue is written to the client as soon as it is complete.

use std::collections::VecDeque;

use bytes::{BufMut, Bytes, BytesMut};
use cutover_redis::{Limits, ReplyKind, encode, reply_kind, reply_len};

use super::route::Merge;

/// One request's reply, possibly assembled from parts.
enum Slot {
    Waiting,
    Ready(Bytes),
    Parts {
        merge: Merge,
        /// Per part: the reply once it arrived, and the request positions it answers.
        parts: Vec<(Option<Bytes>, Vec<usize>)>,
        total: usize,
    },
}

/// The queue of replies owed to the client, oldest first.
#[derive(Default)]
pub struct Slots {
    queue: VecDeque<Slot>,
    /// Id of `queue[0]`.
    base: u64,
    /// Ids whose replies are dropped instead of written (CLIENT REPLY OFF
    /// / SKIP); an OFF range is open-ended until [`Slots::speak_from`].
    silent: Vec<std::ops::Range<u64>>,
}

impl Slots {
    /// Slots not yet written to the client.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing is owed to the client.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// A slot answered by one upstream reply.
    pub fn waiting(&mut self) -> u64 {
        self.push(Slot::Waiting)
    }

    /// A slot answered by the proxy itself.
    pub fn ready(&mut self, reply: Bytes) -> u64 {
        self.push(Slot::Ready(reply))
    }

    /// A slot assembled from parts; `positions[i]` lists the request
    /// positions part `i` answers (for [`Merge::ArrayByPosition`]).
    pub fn parts(&mut self, merge: Merge, positions: Vec<Vec<usize>>) -> u64 {
        let total = positions.iter().map(Vec::len).sum();
        self.push(Slot::Parts {
            merge,
            parts: positions.into_iter().map(|p| (None, p)).collect(),
            total,
        })
    }

    /// The id the next slot will get.
    #[must_use]
    pub fn next_id(&self) -> u64 {
        self.base + self.queue.len() as u64
    }

    /// Slots `ids` are answered upstream as usual but never written to the
    /// client (Redis's CLIENT REPLY OFF and SKIP).
    pub fn silence(&mut self, ids: std::ops::Range<u64>) {
        if !ids.is_empty() {
            self.silent.push(ids);
        }
    }

    /// Ends an open-ended [`Slots::silence`] (CLIENT REPLY ON): slots from
    /// `id` on are written again.
    pub fn speak_from(&mut self, id: u64) {
        for range in &mut self.silent {
            if range.end == u64::MAX {
                range.end = id.max(range.start);
            }
        }
    }

    fn push(&mut self, slot: Slot) -> u64 {
        self.queue.push_back(slot);
        self.base + self.queue.len() as u64 - 1
    }

    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        let index = usize::try_from(id.checked_sub(self.base)?).ok()?;
        self.queue.get_mut(index)
    }

    /// Fills a whole slot.
    pub fn fill(&mut self, id: u64, reply: Bytes) {
        if let Some(slot) = self.slot(id) {
            *slot = Slot::Ready(reply);
        }
    }

    /// Fills one part of a split slot; merges when it was the last part.
    pub fn fill_part(&mut self, id: u64, part: usize, reply: Bytes) {
        let Some(slot) = self.slot(id) else { return };
        let Slot::Parts {
            merge,
            parts,
            total,
        } = slot
        else {
            return;
        };
        if let Some(entry) = parts.get_mut(part) {
            entry.0 = Some(reply);
        }
        if parts.iter().all(|(reply, _)| reply.is_some()) {
            let merged = merge_parts(*merge, parts, *total);
            *slot = Slot::Ready(merged);
        }
    }

    /// Moves every complete reply at the front into `out`.
    pub fn drain_ready(&mut self, out: &mut BytesMut) {
        while let Some(Slot::Ready(_)) = self.queue.front() {
            if let Some(Slot::Ready(reply)) = self.queue.pop_front() {
                let id = self.base;
                self.base += 1;
                if !self.silent.iter().any(|r| r.contains(&id)) {
                    out.put_slice(&reply);
                }
                self.silent.retain(|r| r.end > self.base);
            }
        }
    }
}

fn merge_parts(merge: Merge, parts: &[(Option<Bytes>, Vec<usize>)], total: usize) -> Bytes {
    let replies = parts
        .iter()
        .map(|(r, p)| (r.clone().unwrap_or_default(), p));
    if merge == Merge::AnyOk {
        // One side's OK is the answer; otherwise the first side's error.
        return replies
            .clone()
            .find(|(r, _)| reply_kind(r) != ReplyKind::Error)
            .or_else(|| replies.clone().next())
            .map(|(r, _)| r)
            .unwrap_or_else(encode::ok);
    }
    if let Some((error, _)) = replies
        .clone()
        .find(|(r, _)| reply_kind(r) == ReplyKind::Error)
    {
        return error;
    }
    match merge {
        Merge::AllOk => encode::ok(),
        Merge::AnyOk => encode::ok(),
        Merge::SumIntegers => {
            let sum = replies.map(|(r, _)| parse_integer(&r).unwrap_or(0)).sum();
            encode::integer(sum)
        }
        Merge::ArrayByPosition => {
            let mut elements: Vec<Bytes> = vec![Bytes::new(); total];
            for (reply, positions) in replies {
                for (element, &position) in array_elements(&reply).into_iter().zip(positions) {
                    if let Some(slot) = elements.get_mut(position) {
                        *slot = element;
                    }
                }
            }
            encode::array(&elements)
        }
    }
}

pub fn parse_integer(reply: &[u8]) -> Option<i64> {
    std::str::from_utf8(reply.strip_prefix(b":")?)
        .ok()?
        .trim_end()
        .parse()
        .ok()
}

/// The elements of an array reply, as zero-copy slices.
pub fn array_elements(reply: &Bytes) -> Vec<Bytes> {
    let Some(header_end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return Vec::new();
    };
    let count: usize = std::str::from_utf8(&reply[1..header_end])
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let mut offset = header_end + 2;
    let mut elements = Vec::with_capacity(count);
    for _ in 0..count {
        match reply_len(&reply[offset..], &Limits::UNBOUNDED) {
            Ok(Some(len)) => {
                elements.push(reply.slice(offset..offset + len));
                offset += len;
            }
            _ => break,
        }
    }
    elements
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(slots: &mut Slots) -> Vec<u8> {
        let mut out = BytesMut::new();
        slots.drain_ready(&mut out);
        out.to_vec()
    }

    #[test]
    fn replies_leave_in_request_order() {
        let mut slots = Slots::default();
        let first = slots.waiting();
        let second = slots.waiting();
        slots.fill(second, Bytes::from_static(b"+2\r\n"));
        assert!(drained(&mut slots).is_empty(), "second must wait for first");
        slots.fill(first, Bytes::from_static(b"+1\r\n"));
        assert_eq!(drained(&mut slots), b"+1\r\n+2\r\n");
        assert!(slots.is_empty());
        let third = slots.ready(Bytes::from_static(b"+3\r\n"));
        assert_eq!(third, 2);
        assert_eq!(drained(&mut slots), b"+3\r\n");
    }

    #[test]
    fn silenced_slots_are_answered_but_not_written() {
        let mut slots = Slots::default();
        slots.ready(Bytes::from_static(b"+1\r\n"));
        let from = slots.next_id();
        let quiet = slots.waiting();
        slots.silence(from..slots.next_id());
        slots.ready(Bytes::from_static(b"+3\r\n"));
        assert_eq!(drained(&mut slots), b"+1\r\n");
        slots.fill(quiet, Bytes::from_static(b"+2\r\n"));
        assert_eq!(drained(&mut slots), b"+3\r\n");
        assert!(slots.is_empty());
        slots.silence(slots.next_id()..u64::MAX);
        slots.ready(Bytes::from_static(b"+4\r\n"));
        assert!(drained(&mut slots).is_empty());
        slots.speak_from(slots.next_id());
        slots.ready(Bytes::from_static(b"+5\r\n"));
        assert_eq!(drained(&mut slots), b"+5\r\n");
    }

    #[test]
    fn split_mget_merges_by_position() {
        let mut slots = Slots::default();
        let id = slots.parts(Merge::ArrayByPosition, vec![vec![0, 2], vec![1]]);
        slots.fill_part(id, 1, Bytes::from_static(b"*1\r\n$1\r\nb\r\n"));
        assert!(drained(&mut slots).is_empty());
        slots.fill_part(id, 0, Bytes::from_static(b"*2\r\n$1\r\na\r\n$-1\r\n"));
        assert_eq!(drained(&mut slots), b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n");
    }

    #[test]
    fn split_counts_sum_and_errors_win() {
        let mut slots = Slots::default();
        let id = slots.parts(Merge::SumIntegers, vec![vec![0], vec![1, 2]]);
        slots.fill_part(id, 0, Bytes::from_static(b":1\r\n"));
        slots.fill_part(id, 1, Bytes::from_static(b":2\r\n"));
        let failed = slots.parts(Merge::AllOk, vec![vec![0], vec![1]]);
        slots.fill_part(failed, 0, Bytes::from_static(b"+OK\r\n"));
        slots.fill_part(failed, 1, Bytes::from_static(b"-ERR down\r\n"));
        assert_eq!(drained(&mut slots), b":3\r\n-ERR down\r\n");
    }
}
