//! Sans-IO RocketMQ remoting support for cutover: frame splitting, both
//! header encodings (JSON and ROCKETMQ binary), re-encoding in the encoding
//! the peer used, and the NameServer bodies the proxy rewrites
//! (`TopicRouteData`, `ClusterInfo`), including fastjson's legacy form with
//! unquoted integer keys.
//!
//! This crate knows only bytes: no sockets, no runtime, no metrics, no
//! configuration. The RocketMQ session in the main crate feeds it buffers
//! and decides where requests go.
//!
//! - [`next_frame`] splits and decodes the next whole frame;
//!   [`split_frame`] + [`Frame::parse`] for callers that want the raw bytes
//!   even when the header is bad;
//! - [`Header`] with [`Header::is_response`], [`Header::ext`],
//!   [`Header::set_ext`] ...; [`RequestCode`] and [`ResponseCode`] constants;
//! - [`peek`] reads code, opaque, flag and a few named ext fields in place,
//!   without building the header (the relay's hot path);
//! - [`replace_values`] swaps peeked ext values in place (a broker's
//!   virtual name for its real one) without re-encoding the header;
//! - [`encode`] writes a header and body back as a frame;
//! - [`TopicRouteData`], [`ClusterInfo`] and the [`PERM_READ`] family.
//!
//! Wire format (Apache RocketMQ `RemotingCommand`):
//! `i32 total | i32 (serialize type << 24 | header length) | header | body`,
//! big-endian, where `total` counts everything after itself.

#![warn(missing_docs)]

mod binary;
pub mod body;
mod error;
mod frame;
mod header;
mod json;
mod peek;
mod rewrite;
pub mod selfcheck;

pub use body::{
    BrokerData, ClusterInfo, MASTER_ID, PERM_INHERIT, PERM_READ, PERM_WRITE, QueueData,
    TopicRouteData, quote_integer_keys,
};
pub use error::{BodyError, FrameError};
pub use frame::{
    DEFAULT_MAX_FRAME, Encoding, Frame, LEN_PREFIX, MAX_HEADER_LEN, encode, next_frame,
    peek_lengths, split_frame,
};
pub use header::{FLAG_ONEWAY, FLAG_RESPONSE, Header, Language, RequestCode, ResponseCode};
pub use peek::{Peek, peek};
pub use rewrite::{Edit, replace_values};
