//! Encoders for the replies and commands the proxy writes itself: error
//! replies to clients, commands of its own to upstreams (DUMP, RESTORE,
//! SCAN), merged replies of split multi-key commands.
//!
//! Everything else is forwarded as the original bytes and never re-encoded.

use bytes::{BufMut, Bytes, BytesMut};

/// Appends `<kind><n>\r\n`, the header of a bulk string or aggregate.
pub fn put_header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.reserve(24);
    out.put_u8(kind);
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[i..]);
    out.put_slice(b"\r\n");
}

/// Appends a bulk string: `$<len>\r\n<data>\r\n`.
pub fn put_bulk(out: &mut BytesMut, data: &[u8]) {
    put_header(out, b'$', data.len() as i64);
    out.reserve(data.len() + 2);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends a simple line of `kind` (`+` or `-`), replacing CR and LF in
/// `text` by spaces so the line cannot end early or smuggle a second reply.
fn put_line(out: &mut BytesMut, kind: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(kind);
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.put_slice(b"\r\n");
}

/// An error reply, `-MSG\r\n`. By Redis convention `msg` starts with an
/// upper-case code (`ERR`, `WRONGTYPE`, `CROSSSLOT`); CR and LF in it are
/// replaced by spaces.
#[must_use]
pub fn error(msg: &str) -> Bytes {
    let mut out = BytesMut::new();
    put_line(&mut out, b'-', msg.as_bytes());
    out.freeze()
}

/// A simple string reply, `+S\r\n`; CR and LF are replaced by spaces.
#[must_use]
pub fn simple(s: &str) -> Bytes {
    let mut out = BytesMut::new();
    put_line(&mut out, b'+', s.as_bytes());
    out.freeze()
}

/// The `+OK\r\n` reply.
#[must_use]
pub fn ok() -> Bytes {
    Bytes::from_static(b"+OK\r\n")
}

/// An integer reply, `:<i>\r\n`.
#[must_use]
pub fn integer(i: i64) -> Bytes {
    let mut out = BytesMut::new();
    put_header(&mut out, b':', i);
    out.freeze()
}

/// A bulk string reply (binary-safe).
#[must_use]
pub fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    put_bulk(&mut out, data);
    out.freeze()
}

/// The null reply of the connection's protocol: `$-1\r\n` for RESP2,
/// `_\r\n` for RESP3.
#[must_use]
pub fn null(resp3: bool) -> Bytes {
    Bytes::from_static(if resp3 { b"_\r\n" } else { b"$-1\r\n" })
}

/// An array header, `*<n>\r\n`; `n` elements must follow.
#[must_use]
pub fn array_header(n: usize) -> Bytes {
    let mut out = BytesMut::new();
    put_header(&mut out, b'*', n as i64);
    out.freeze()
}

/// An array of already-encoded frames, e.g. the per-keyspace parts of a
/// split MGET put back together in the client's key order.
#[must_use]
pub fn array(frames: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(frames.iter().map(Bytes::len).sum::<usize>() + 16);
    put_header(&mut out, b'*', frames.len() as i64);
    for f in frames {
        out.put_slice(f);
    }
    out.freeze()
}

/// A command as a RESP array of bulk strings, the form every Redis accepts.
#[must_use]
pub fn command(args: &[&[u8]]) -> Bytes {
    let size = args.iter().map(|a| a.len() + 16).sum::<usize>() + 16;
    let mut out = BytesMut::with_capacity(size);
    put_header(&mut out, b'*', args.len() as i64);
    for a in args {
        put_bulk(&mut out, a);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes() {
        assert_eq!(&error("ERR no\r\nsmuggled")[..], b"-ERR no  smuggled\r\n");
        assert_eq!(&simple("OK")[..], b"+OK\r\n");
        assert_eq!(&ok()[..], b"+OK\r\n");
        assert_eq!(&integer(0)[..], b":0\r\n");
        assert_eq!(&integer(-42)[..], b":-42\r\n");
        assert_eq!(&integer(i64::MIN)[..], b":-9223372036854775808\r\n");
        assert_eq!(&bulk(b"a\r\nb")[..], b"$4\r\na\r\nb\r\n");
        assert_eq!(&bulk(b"")[..], b"$0\r\n\r\n");
        assert_eq!(&null(false)[..], b"$-1\r\n");
        assert_eq!(&null(true)[..], b"_\r\n");
        assert_eq!(&array_header(3)[..], b"*3\r\n");
        assert_eq!(
            &array(&[integer(1), null(false)])[..],
            b"*2\r\n:1\r\n$-1\r\n"
        );
        assert_eq!(
            &command(&[b"GET", b"k"])[..],
            b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
        );
    }
}
