//! Allocation guard for kafka-protocol 0.18 decoding of untrusted requests.
//!
//! kafka-protocol pre-allocates every array from the count on the wire
//! (`Vec::with_capacity(n)` before reading an element), so a few bytes that
//! declare billions of elements make the allocator fail and the process
//! *abort*: one client could take down every connection of the proxy. This
//! module walks the bodies the proxy decodes from clients (Metadata, Produce,
//! Fetch, ListOffsets, OffsetCommit) along their schema and refuses any array whose count exceeds the
//! bytes left (each element takes at least one byte), before kafka-protocol
//! sees them. [`crate::decode_request_body`] calls it for those API keys.

use kafka_protocol::messages::ApiKey;

use crate::FrameError;
use crate::wire::{i16_at, i32_at, skip_tagged_fields, uvarint_at};

const WHAT: &str = "request body";

struct Walk<'a> {
    b: &'a [u8],
    pos: usize,
    flexible: bool,
}

impl Walk<'_> {
    fn truncated(&self, needed: usize) -> FrameError {
        FrameError::Truncated {
            what: WHAT,
            needed: self.pos.saturating_add(needed),
            available: self.b.len(),
        }
    }

    fn skip(&mut self, n: usize) -> Result<(), FrameError> {
        if self.b.len() - self.pos < n {
            return Err(self.truncated(n));
        }
        self.pos += n;
        Ok(())
    }

    /// A (nullable) string or bytes field, compact in flexible versions.
    fn blob(&mut self, int32_len: bool) -> Result<(), FrameError> {
        let len = if self.flexible {
            let (n, next) = uvarint_at(self.b, self.pos, WHAT)?;
            self.pos = next;
            i64::from(n) - 1
        } else if int32_len {
            let n = i32_at(self.b, self.pos).ok_or_else(|| self.truncated(4))?;
            self.pos += 4;
            i64::from(n)
        } else {
            let n = i16_at(self.b, self.pos).ok_or_else(|| self.truncated(2))?;
            self.pos += 2;
            i64::from(n)
        };
        if len > 0 {
            self.skip(usize::try_from(len).unwrap_or(usize::MAX))?;
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), FrameError> {
        self.blob(false)
    }

    /// An array whose count must fit in the bytes left; `each` walks one element.
    fn array(
        &mut self,
        mut each: impl FnMut(&mut Self) -> Result<(), FrameError>,
    ) -> Result<(), FrameError> {
        let at = self.pos;
        let count = if self.flexible {
            let (n, next) = uvarint_at(self.b, self.pos, WHAT)?;
            self.pos = next;
            i64::from(n) - 1
        } else {
            let n = i32_at(self.b, self.pos).ok_or_else(|| self.truncated(4))?;
            self.pos += 4;
            i64::from(n)
        };
        let left = self.b.len() - self.pos;
        if count > i64::try_from(left).unwrap_or(i64::MAX) {
            return Err(FrameError::Malformed {
                what: WHAT,
                reason: "array declares more elements than bytes left",
                offset: at,
            });
        }
        for _ in 0..count.max(0) {
            each(self)?;
        }
        Ok(())
    }

    fn tags(&mut self) -> Result<(), FrameError> {
        if self.flexible {
            self.pos = skip_tagged_fields(self.b, self.pos, WHAT)?;
        }
        Ok(())
    }
}

/// Checks that every array in a request body of `key` at `version` declares
/// no more elements than bytes remain. API keys other than Metadata, Produce,
/// Fetch, ListOffsets and OffsetCommit pass unchecked.
///
/// # Errors
/// [`FrameError::Malformed`] for an impossible array count and
/// [`FrameError::Truncated`] for a body that ends early.
pub fn check_request_body(key: ApiKey, version: i16, body: &[u8]) -> Result<(), FrameError> {
    let v = version;
    match key {
        ApiKey::Metadata => {
            let mut w = Walk {
                b: body,
                pos: 0,
                flexible: v >= 9,
            };
            w.array(|w| {
                if v >= 10 {
                    w.skip(16)?;
                }
                w.string()?;
                w.tags()
            })
        }
        ApiKey::Produce => {
            let mut w = Walk {
                b: body,
                pos: 0,
                flexible: v >= 9,
            };
            w.string()?;
            w.skip(2 + 4)?;
            w.array(|w| {
                if v <= 12 {
                    w.string()?;
                }
                if v >= 13 {
                    w.skip(16)?;
                }
                w.array(|w| {
                    w.skip(4)?;
                    w.blob(true)?;
                    w.tags()
                })?;
                w.tags()
            })
        }
        ApiKey::Fetch => {
            let mut w = Walk {
                b: body,
                pos: 0,
                flexible: v >= 12,
            };
            w.skip(if v <= 14 { 4 } else { 0 } + 4 + 4 + 4 + 1)?;
            if v >= 7 {
                w.skip(8)?;
            }
            let topic = |w: &mut Walk<'_>, named: bool| -> Result<(), FrameError> {
                if named && v <= 12 {
                    w.string()?;
                }
                if v >= 13 {
                    w.skip(16)?;
                }
                Ok(())
            };
            w.array(|w| {
                topic(w, true)?;
                w.array(|w| {
                    let fixed = 4
                        + if v >= 9 { 4 } else { 0 }
                        + 8
                        + if v >= 12 { 4 } else { 0 }
                        + if v >= 5 { 8 } else { 0 }
                        + 4;
                    w.skip(fixed)?;
                    w.tags()
                })?;
                w.tags()
            })?;
            if v >= 7 {
                w.array(|w| {
                    topic(w, v >= 7)?;
                    w.array(|w| w.skip(4))?;
                    w.tags()
                })?;
            }
            Ok(())
        }
        ApiKey::ListOffsets => {
            let mut w = Walk {
                b: body,
                pos: 0,
                flexible: v >= 6,
            };
            w.skip(4 + if v >= 2 { 1 } else { 0 })?;
            w.array(|w| {
                w.string()?;
                w.array(|w| {
                    w.skip(4 + if v >= 4 { 4 } else { 0 } + 8)?;
                    w.tags()
                })?;
                w.tags()
            })
        }
        ApiKey::OffsetCommit => {
            let mut w = Walk {
                b: body,
                pos: 0,
                flexible: v >= 8,
            };
            w.string()?;
            if v >= 1 {
                w.skip(4)?;
                w.string()?;
            }
            if v >= 7 {
                w.string()?;
            }
            if (2..=4).contains(&v) {
                w.skip(8)?;
            }
            w.array(|w| {
                w.string()?;
                w.array(|w| {
                    w.skip(4 + 8 + if v >= 6 { 4 } else { 0 } + if v == 1 { 8 } else { 0 })?;
                    w.string()?;
                    w.tags()
                })?;
                w.tags()
            })
        }
        _ => Ok(()),
    }
}
