//! Size limits applied while framing, before any byte is buffered or
//! allocated on the strength of a declared length.
//!
//! A RESP header announces how much follows; a hostile or corrupt peer can
//! announce gigabytes. The decoder compares every declared length with
//! these limits as soon as its header line is complete, so an oversized
//! frame is refused while only its header is in memory.

/// Redis's default `proto-max-bulk-len`: no real client sends a larger
/// string, because the server would refuse it.
pub const DEFAULT_MAX_BULK_LEN: usize = 512 * 1024 * 1024;

/// Sixteen million elements. Redis accepts up to `INT_MAX` arguments and
/// answers HGETALL/ZRANGE/SMEMBERS of a big collection with one aggregate,
/// so a low cap would break real applications mid-migration. The cap is a
/// sanity bound, not the memory bound: a request's argument vector is only
/// allocated once every element's bytes have arrived, and reply framing
/// allocates nothing per element.
pub const DEFAULT_MAX_ARRAY_LEN: usize = 1 << 24;

/// Redis's `PROTO_INLINE_MAX_SIZE`: the longest inline (telnet-style)
/// command line the server accepts. Also bounds one simple line of a reply
/// (`+`, `-`, `:`, ...), which Redis keeps far shorter.
pub const DEFAULT_MAX_INLINE_LEN: usize = 64 * 1024;

/// Aggregates nested more than 32 deep do not occur in built-in Redis
/// replies (the deepest, such as XINFO STREAM FULL, are about 5); a Lua
/// script returning a deep table can go further. Framing ([`crate::reply_len`])
/// has no depth limit; this bound applies only to the recursive full
/// decoder ([`crate::decode_reply`]), to keep its stack use small.
pub const DEFAULT_MAX_NESTING: usize = 32;

/// Hard ceiling on [`Limits::max_nesting`] for the recursive full decoder;
/// a larger configured value is clamped to it.
pub const MAX_NESTING_CAP: usize = 128;

/// Framing limits, shared by request and reply parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted, in bytes.
    pub max_bulk_len: usize,
    /// Largest aggregate accepted, in elements (a map counts its pairs).
    pub max_array_len: usize,
    /// Longest inline command line or simple reply line, in bytes.
    pub max_inline_len: usize,
    /// Deepest aggregate nesting [`crate::decode_reply`] accepts (clamped
    /// to [`MAX_NESTING_CAP`]); framing a reply has no depth limit.
    pub max_nesting: usize,
}

impl Limits {
    /// The defaults, usable in `const` contexts.
    pub const DEFAULT: Limits = Limits {
        max_bulk_len: DEFAULT_MAX_BULK_LEN,
        max_array_len: DEFAULT_MAX_ARRAY_LEN,
        max_inline_len: DEFAULT_MAX_INLINE_LEN,
        max_nesting: DEFAULT_MAX_NESTING,
    };

    /// Limits that only bound nesting, for decoding a frame whose size was
    /// already checked.
    pub const UNBOUNDED: Limits = Limits {
        max_bulk_len: usize::MAX,
        max_array_len: usize::MAX,
        max_inline_len: usize::MAX,
        max_nesting: DEFAULT_MAX_NESTING,
    };

    /// Same as [`Limits::DEFAULT`].
    #[must_use]
    pub const fn new() -> Self {
        Self::DEFAULT
    }

    /// These limits with another maximum bulk length.
    #[must_use]
    pub const fn with_max_bulk_len(mut self, n: usize) -> Self {
        self.max_bulk_len = n;
        self
    }

    /// These limits with another maximum aggregate length.
    #[must_use]
    pub const fn with_max_array_len(mut self, n: usize) -> Self {
        self.max_array_len = n;
        self
    }

    /// These limits with another maximum inline line length.
    #[must_use]
    pub const fn with_max_inline_len(mut self, n: usize) -> Self {
        self.max_inline_len = n;
        self
    }

    /// These limits with another maximum nesting depth.
    #[must_use]
    pub const fn with_max_nesting(mut self, n: usize) -> Self {
        self.max_nesting = n;
        self
    }

    /// The nesting limit actually enforced: `max_nesting` clamped to
    /// [`MAX_NESTING_CAP`].
    #[must_use]
    pub const fn effective_max_nesting(&self) -> usize {
        if self.max_nesting < MAX_NESTING_CAP {
            self.max_nesting
        } else {
            MAX_NESTING_CAP
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}
