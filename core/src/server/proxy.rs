//! The PROXY protocol header (v1 text, v2 binary) that a load balancer such as HAProxy
//! (`send-proxy`, `send-proxy-v2`) puts before the client's bytes to say whose connection it
//! passes on. The exchange reads it into the buffer the FileRequest goes into, and the
//! request starts right after it; [`parse`] looks at what has arrived so far.
//!
//! Parsing is the `ppp` crate's: it tells a header cut short (read more) from a malformed one
//! (refuse) field by field, enforces v1's 107-byte limit, and its errors say what was wrong,
//! for the log. This module adds what the specification asks of a receiver beyond parsing:
//! the v2 family and protocol combinations, TLVs that fill the header exactly, and a bound on
//! the v2 length.

use std::fmt;
use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Protocol};
use ppp::{v1, v2, PartialResult};

/// The longest PROXY header accepted, and the room the exchange's buffer keeps for it: a v2
/// header's 16 fixed bytes and 216 of addresses and TLVs (IPv6 addresses take 36 of them,
/// leaving 180 for TLVs). A longer v2 header is refused as malformed; a v1 line is 107 bytes
/// at most, as the specification says.
pub(super) const MAX_HEADER: usize = 16 + 216;

/// The longest v1 line, "\r\n" included.
const V1_MAX: usize = 107;

/// The fixed part of a v2 header: signature, version and command, family and protocol,
/// length.
const V2_FIXED: usize = 16;

/// A PROXY header read whole.
#[derive(Debug, PartialEq)]
pub(super) struct Header {
    /// Its length in bytes: the FileRequest starts right after it.
    pub(super) len: usize,
    /// The client's address, if the header gives one. Not for v1 `UNKNOWN`, nor v2 `LOCAL`
    /// (the load balancer's own connections, such as HAProxy's health checks), nor a v2
    /// `PROXY` with the `UNSPEC` family (v2's `UNKNOWN`): the connection's own peer stands.
    pub(super) client: Option<SocketAddr>,
}

/// Why a PROXY header was refused.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The connection starts with this byte, which no PROXY header starts with.
    Missing(u8),
    /// The connection closed after this many bytes of a header.
    Cut(usize),
    /// A malformed v1 line.
    V1(v1::BinaryParseError),
    /// A malformed v2 header.
    V2(v2::ParseError),
    /// A v2 header of this many bytes: longer than [`MAX_HEADER`].
    TooLong(usize),
    /// A v2 `PROXY` header for a connection other than TCP over IPv4 or IPv6 (UDP, a Unix
    /// socket), or a family and protocol combination the specification does not define.
    Unsupported(u8),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing(byte) => write!(f, "missing (the first byte is {byte:#04x})"),
            Refusal::Cut(n) => write!(f, "the client closed after {n} bytes of it"),
            Refusal::V1(v1::BinaryParseError::Parse(v1::ParseError::HeaderTooLong)) => {
                f.write_str("v1 line longer than 107 bytes")
            }
            Refusal::V1(e) => write!(f, "v1: {}", Tidy(&e.to_string())),
            Refusal::V2(e) => write!(f, "v2: {}", Tidy(&e.to_string())),
            Refusal::TooLong(n) => write!(
                f,
                "v2 header of {n} bytes, longer than the {MAX_HEADER} accepted"
            ),
            Refusal::Unsupported(kind) => write!(
                f,
                "v2 family and protocol {kind:#04x} not supported (TCP over IPv4 or IPv6 only)"
            ),
        }
    }
}

/// A message of the parser's for one clause of a log line: without its capital and full
/// stop, and with control characters (its own "\r\n") escaped.
struct Tidy<'a>(&'a str);

impl fmt::Display for Tidy<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.trim_end_matches('.');
        for (i, c) in text.chars().enumerate() {
            match c {
                c if i == 0 => write!(f, "{}", c.to_lowercase())?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => write!(f, "{c}")?,
            }
        }
        Ok(())
    }
}

/// The PROXY header at the start of `buf`, the bytes of the connection so far: `Ok(None)`
/// while they are only the beginning of one.
pub(super) fn parse(buf: &[u8]) -> Result<Option<Header>, Refusal> {
    // A v1 line starts with "PROXY", a v2 signature with "\r\n": anything else (a
    // FileRequest from a client that came straight in) is refused at its first byte.
    match buf.first() {
        None => Ok(None),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(&byte) => Err(Refusal::Missing(byte)),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, Refusal> {
    // Judged once the whole line is in (up to its "\r" and the byte after, or a bare
    // "\n"): the parser can take a line cut short after a space for a malformed one. Until
    // then, only its start is checked.
    let end = buf
        .iter()
        .take(V1_MAX)
        .position(|&b| b == b'\r' || b == b'\n')
        .map(|i| if buf[i] == b'\r' { i + 1 } else { i });
    let line = match end {
        Some(end) if end < buf.len() => &buf[..=end],
        Some(_) => return Ok(None),
        None if buf.len() >= V1_MAX => {
            return Err(Refusal::V1(v1::ParseError::HeaderTooLong.into()))
        }
        None if !buf.iter().zip(b"PROXY ").all(|(a, b)| a == b) => {
            return Err(Refusal::V1(v1::ParseError::InvalidPrefix.into()))
        }
        None => return Ok(None),
    };
    // Whole: what the parser would call incomplete (a line not ended by "\r\n") is wrong.
    let header = v1::Header::try_from(line).map_err(Refusal::V1)?;
    let client = match header.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    };
    Ok(Some(Header {
        len: header.header.len(),
        client,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, Refusal> {
    let header = match v2::Header::try_from(buf) {
        // Refused as soon as the length is known, not after waiting for bytes that would
        // not fit.
        Err(v2::ParseError::Partial(_, len)) if V2_FIXED + len > MAX_HEADER => {
            return Err(Refusal::TooLong(V2_FIXED + len))
        }
        Err(e) if e.is_incomplete() => return Ok(None),
        Err(e) => return Err(Refusal::V2(e)),
        Ok(header) if header.len() > MAX_HEADER => return Err(Refusal::TooLong(header.len())),
        Ok(header) => header,
    };
    // The TLVs are not used, but they must fill the header exactly: a header whose length
    // is wrong shows here rather than by taking the request's bytes for its own.
    if let Some(Err(e)) = header.tlvs().find(Result::is_err) {
        return Err(Refusal::V2(e));
    }
    let kind = header.address_family() | header.protocol;
    // The combinations the specification defines: UNSPEC, and TCP, UDP or a Unix stream or
    // datagram socket; any other "must be rejected as invalid by receivers".
    if !matches!(kind, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
        return Err(Refusal::Unsupported(kind));
    }
    let client = match (header.command, header.addresses, header.protocol) {
        // "The receiver must accept this connection as valid and must use the real
        // connection endpoints and discard the protocol block including the family."
        (Command::Local, _, _) => None,
        (Command::Proxy, Addresses::Unspecified, _) => None,
        (Command::Proxy, Addresses::IPv4(a), Protocol::Stream) => {
            Some(SocketAddr::from((a.source_address, a.source_port)))
        }
        (Command::Proxy, Addresses::IPv6(a), Protocol::Stream) => {
            Some(SocketAddr::from((a.source_address, a.source_port)))
        }
        (Command::Proxy, _, _) => return Err(Refusal::Unsupported(kind)),
    };
    Ok(Some(Header {
        len: header.len(),
        client,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

    /// A v2 header: command (0x20 LOCAL, 0x21 PROXY), family and protocol, then `payload`
    /// under the length `len`.
    fn v2(command: u8, kind: u8, len: u16, payload: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.extend_from_slice(&[command, kind]);
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn inet(tlvs: &[u8]) -> Vec<u8> {
        let mut p = vec![203, 0, 113, 7, 10, 0, 0, 1];
        p.extend_from_slice(&40000u16.to_be_bytes());
        p.extend_from_slice(&7000u16.to_be_bytes());
        p.extend_from_slice(tlvs);
        p
    }

    /// `header` whole is read as such, with `request` after it left alone; every prefix of
    /// it asks for more.
    fn reads(header: &[u8], client: Option<&str>) {
        let request = [0x49, 0x7E, 1, 0, 1, b'a'];
        let both = [header, &request[..]].concat();
        let expected = Header {
            len: header.len(),
            client: client.map(|c| c.parse().unwrap()),
        };
        assert_eq!(parse(&both).unwrap(), Some(expected));
        for cut in 0..header.len() {
            let got = parse(&header[..cut]);
            assert!(matches!(got, Ok(None)), "cut at {cut}: {got:?}");
        }
    }

    fn refused(bytes: &[u8]) -> String {
        match parse(bytes) {
            Err(e) => e.to_string(),
            other => panic!("{bytes:?}: {other:?}"),
        }
    }

    #[test]
    fn v1_headers_give_the_client() {
        reads(
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n",
            Some("203.0.113.7:40000"),
        );
        reads(
            b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 7000\r\n",
            Some("[2001:db8::7]:40000"),
        );
        reads(b"PROXY UNKNOWN\r\n", None);
        reads(b"PROXY UNKNOWN ::1 ::1 1 2\r\n", None);
        // The longest v1 line there is.
        let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                        ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), 104);
        reads(
            longest,
            Some("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"),
        );
    }

    #[test]
    fn v2_headers_give_the_client() {
        reads(&v2(0x21, 0x11, 12, &inet(&[])), Some("203.0.113.7:40000"));
        let mut inet6 = [0x20, 0x01, 0x0d, 0xb8].to_vec();
        inet6.extend_from_slice(&[0; 11]);
        inet6.push(7);
        inet6.extend_from_slice(&[0; 16]);
        inet6.extend_from_slice(&[0x9c, 0x40, 0x1b, 0x58]);
        reads(&v2(0x21, 0x21, 36, &inet6), Some("[2001:db8::7]:40000"));
        // TLVs (a NOOP and an authority) are allowed, and ignored.
        let tlvs = [&[0x04, 0, 2, 0, 0][..], &[0x02, 0, 3], b"a.b"].concat();
        reads(
            &v2(0x21, 0x11, 12 + tlvs.len() as u16, &inet(&tlvs)),
            Some("203.0.113.7:40000"),
        );
        // LOCAL, with addresses or without: the connection's own peer.
        reads(&v2(0x20, 0x11, 12, &inet(&[])), None);
        reads(&v2(0x20, 0x00, 0, &[]), None);
        reads(&v2(0x21, 0x00, 0, &[]), None);
        // The longest accepted.
        let fill = [&[0x04, 0][..], &[200 - 3], &[0; 200 - 3]].concat();
        let longest = v2(
            0x21,
            0x11,
            12 + 204,
            &inet(&[&fill[..], &[0x04, 0, 1, 0]].concat()),
        );
        assert_eq!(longest.len(), MAX_HEADER);
        reads(&longest, Some("203.0.113.7:40000"));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let request = [0x49, 0x7E, 1, 0, 1, b'a'];
        assert_eq!(refused(&request), "missing (the first byte is 0x49)");
        assert_eq!(
            refused(b"GET / HTTP/1.0\r\n"),
            "missing (the first byte is 0x47)"
        );
        assert_eq!(refused(b"PRO\0"), "v1: header must start with 'PROXY'");
        // Over 107 bytes without an end, or with it too late.
        assert_eq!(refused(&[b'P'; 107]), "v1 line longer than 107 bytes");
        let long = format!("PROXY UNKNOWN {}\r\n", "x".repeat(100));
        assert_eq!(refused(long.as_bytes()), "v1 line longer than 107 bytes");
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 70000\r\n"[..],
            b"PROXY TCP4 2001:db8::7 10.0.0.1 40000 7000\r\n",
            b"PROXY TCP5 203.0.113.7 10.0.0.1 40000 7000\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\rX",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000 9\r\n",
            b"PROXY \xff\r\n",
        ] {
            let why = refused(bad);
            assert!(why.starts_with("v1: "), "{bad:?}: {why}");
            assert!(!why.contains(['\r', '\n']), "{why:?}");
        }
        // A wrong signature, version, command, family.
        assert!(refused(b"\r\n\r\n\0\r\nQUIX\n").starts_with("v2: expected header to start"));
        let mut bad_version = v2(0x21, 0x11, 12, &inet(&[]));
        bad_version[12] = 0x11;
        assert!(refused(&bad_version).starts_with("v2: expected version"));
        assert!(refused(&v2(0x22, 0x11, 12, &inet(&[]))).starts_with("v2: invalid command"));
        assert!(refused(&v2(0x21, 0x41, 12, &inet(&[]))).starts_with("v2: invalid Address Family"));
        // Lengths too short for the addresses, too long for this server, or not matching
        // the TLVs in them.
        assert!(refused(&v2(0x21, 0x11, 8, &inet(&[]))).starts_with("v2: header length of 8"));
        assert_eq!(
            refused(&v2(0x21, 0x11, 0xFFFF, &[])),
            "v2 header of 65551 bytes, longer than the 232 accepted"
        );
        assert!(refused(&v2(0x21, 0x11, 14, &inet(&[0x49, 0x7E])))
            .starts_with("v2: header contains leftover"));
        assert!(refused(&v2(0x21, 0x11, 16, &inet(&[0x04, 0, 9, 0])))
            .starts_with("v2: header is not long enough"));
        // UDP, Unix sockets, and combinations the specification does not define.
        for kind in [0x12, 0x22, 0x31, 0x10, 0x01] {
            let payload = vec![0; 216];
            let why = refused(&v2(0x21, kind, 216, &payload));
            assert!(why.contains("not supported"), "{kind:#x}: {why}");
        }
    }
}
