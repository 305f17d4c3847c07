//! Sans-IO Redis protocol support for cutover: framing of client requests
//! and upstream replies (RESP2 and RESP3), a full reply decoder for the few
//! places that need content, encoders for what the proxy says itself, and
//! the Redis 7 command table with key extraction.
//!
//! This crate knows only bytes: no sockets, no runtime, no metrics, no
//! configuration. The Redis session in the main crate feeds it buffers and
//! decides where requests go.
//!
//! - [`parse_request`] frames a request and slices its arguments;
//! - [`reply_len`] / [`ReplyScanner`] find where a reply ends (hot path);
//! - [`decode_reply`] decodes a whole reply (off the hot path);
//! - [`lookup`] and [`keys`] say what a command is and where its keys are.

#![warn(missing_docs)]

pub mod acl;
mod decode;
pub mod encode;
mod error;
mod inline;
mod limits;
mod reply;
mod request;
pub mod selfcheck;
pub mod table;
mod wire;

pub use decode::{decode_reply, from_resp2};
pub use error::FrameError;
pub use limits::{
    DEFAULT_MAX_ARRAY_LEN, DEFAULT_MAX_BULK_LEN, DEFAULT_MAX_INLINE_LEN, DEFAULT_MAX_NESTING,
    Limits, MAX_NESTING_CAP,
};
pub use reply::{ReplyKind, ReplyScanner, reply_kind, reply_len};
pub use request::{Request, parse_request};
pub use table::{
    Class, CommandFlags, CommandSpec, Group, KeyError, KeyRef, KeySpecFlags, has_incomplete_keys,
    keys, lookup,
};

/// The redis-protocol crate, re-exported so users of [`ReplyFrame`] need
/// not depend on the same version themselves.
pub use redis_protocol;
/// The decoded reply type of [`decode_reply`] (redis-protocol's RESP3 frame).
pub use redis_protocol::resp3::types::BytesFrame as ReplyFrame;
