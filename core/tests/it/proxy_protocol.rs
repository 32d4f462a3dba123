//! The PROXY protocol (`ServerConfigBuilder::proxy_protocol`), spoken in raw bytes as a load
//! balancer would: v1 and v2 headers before the request, in one write or apart; and what is
//! refused, closed without a response, with the server serving on afterwards. (The client
//! address the header gives shows in the log line: see the CLI's `proxy` tests.)

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::{raw, read_to_close, request, TestServer};

const SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `command` (0x20 LOCAL, 0x21 PROXY), family and protocol (0x11 TCP over
/// IPv4, 0x21 over IPv6), the length, then `payload`.
fn v2(command: u8, kind: u8, len: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.extend_from_slice(&[command, kind]);
    h.extend_from_slice(&len.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// v2 PROXY, TCP over IPv4, from 203.0.113.7:40000 to 10.0.0.1:7000, with a NOOP TLV.
fn v2_inet() -> Vec<u8> {
    let payload = [
        &[203, 0, 113, 7, 10, 0, 0, 1][..],
        &40000u16.to_be_bytes(),
        &7000u16.to_be_bytes(),
        &[0x04, 0, 2, 0xAB, 0xCD],
    ]
    .concat();
    v2(0x21, 0x11, payload.len() as u16, &payload)
}

/// v2 PROXY, TCP over IPv6, from [2001:db8::7]:40000 to [2001:db8::1]:7000.
fn v2_inet6() -> Vec<u8> {
    let source: std::net::Ipv6Addr = "2001:db8::7".parse().unwrap();
    let destination: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let payload = [
        &source.octets()[..],
        &destination.octets(),
        &40000u16.to_be_bytes(),
        &7000u16.to_be_bytes(),
    ]
    .concat();
    v2(0x21, 0x21, 36, &payload)
}

const V1_TCP4: &[u8] = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n";
const V1_TCP6: &[u8] = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 7000\r\n";

fn server(timeout: Duration) -> TestServer {
    let server = TestServer::with(|c| c.proxy_protocol(true).request_timeout(timeout));
    server.put("f.txt", b"behind a proxy");
    server
}

/// The response to a request for f.txt.
fn found() -> Vec<u8> {
    [&[0x49, 0x7E, 2, 1, 0, 0, 0, 14][..], b"behind a proxy"].concat()
}

/// Sends `parts` in separate writes, a moment apart, and returns what came back.
fn send_in_parts(server: &TestServer, parts: &[&[u8]]) -> Vec<u8> {
    let mut s = raw(server.addr());
    s.set_nodelay(true).unwrap();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
        s.write_all(part).unwrap();
    }
    read_to_close(&mut s).unwrap_or_default()
}

/// A connection through the proxy is still served, as is HAProxy's health check (LOCAL).
fn still_serves(server: &TestServer, after: &str) {
    let req = request(b"f.txt");
    let reply = send_in_parts(server, &[&[V1_TCP4, &req].concat()]);
    assert!(reply == found(), "after {after}: {reply:?}");
}

#[test]
fn every_header_kind_then_the_request_is_served() {
    let server = server(Duration::from_secs(5));
    let req = request(b"f.txt");
    let headers: [(&str, Vec<u8>); 6] = [
        ("v1 TCP4", V1_TCP4.to_vec()),
        ("v1 TCP6", V1_TCP6.to_vec()),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec()),
        ("v2 INET", v2_inet()),
        ("v2 INET6", v2_inet6()),
        ("v2 LOCAL", v2(0x20, 0x00, 0, &[])),
    ];
    for (kind, header) in &headers {
        // In one write, as a load balancer usually sends them.
        let reply = send_in_parts(&server, &[&[&header[..], &req].concat()]);
        assert!(reply == found(), "{kind}, one write: {reply:?}");
        // The request later, alone.
        let reply = send_in_parts(&server, &[header, &req]);
        assert!(reply == found(), "{kind}, two writes: {reply:?}");
        // Cut inside the header, and inside the request.
        let both = [&header[..], &req].concat();
        for cut in [1, header.len() / 2, header.len() - 1, header.len() + 2] {
            let reply = send_in_parts(&server, &[&both[..cut], &both[cut..]]);
            assert!(reply == found(), "{kind}, cut at {cut}: {reply:?}");
        }
    }
}

#[test]
fn a_missing_or_malformed_header_is_closed_without_a_response() {
    let server = server(Duration::from_secs(5));
    let req = request(b"f.txt");
    let mut long_v1 = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000".to_vec();
    long_v1.resize(120, b' ');
    long_v1.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("no header", req.clone()),
        ("garbage", b"\x00\x01garbage\r\n".to_vec()),
        ("HTTP", b"GET / HTTP/1.0\r\n\r\n".to_vec()),
        ("v1 line over 107 bytes", long_v1),
        (
            "v1 with a bad address",
            b"PROXY TCP4 203.0.113.999 10.0.0.1 40000 7000\r\n".to_vec(),
        ),
        ("v1 without CRLF", b"PROXY UNKNOWN\n".to_vec()),
        ("v2 with a bad signature", {
            let mut h = v2_inet();
            h[11] = b'X';
            h
        }),
        ("v2 length too short for the addresses", {
            let mut h = v2_inet();
            h[15] = 4;
            h
        }),
        ("v2 length past the TLVs", {
            let mut h = v2_inet();
            h[15] += 2;
            h
        }),
        ("v2 length over 216", v2(0x21, 0x11, 1000, &[0; 12])),
        ("v2 UDP", {
            let mut h = v2_inet();
            h[13] = 0x12;
            h
        }),
        ("v2 unknown family", {
            let mut h = v2_inet();
            h[13] = 0x41;
            h
        }),
    ];
    for (case, header) in &cases {
        let reply = send_in_parts(&server, &[&[&header[..], &req].concat()]);
        assert!(reply.is_empty(), "{case}: got {reply:?}");
        still_serves(&server, case);
    }
}

/// A header cut short, then silence: closed at the request deadline, counted from accept,
/// and no later; others are served meanwhile.
#[test]
fn a_truncated_header_is_closed_at_the_deadline() {
    let deadline = Duration::from_millis(400);
    let server = server(deadline);
    for (case, partial) in [
        ("v1", &V1_TCP4[..20]),
        ("v2", &v2_inet()[..14]),
        ("v2 without its TLV", &v2_inet()[..20]),
        ("v1 without the request", V1_TCP4),
    ] {
        let started = Instant::now();
        let mut s = raw(server.addr());
        s.write_all(partial).unwrap();
        still_serves(&server, case);
        let reply = read_to_close(&mut s).unwrap_or_default();
        let took = started.elapsed();
        assert!(reply.is_empty(), "{case}: got {reply:?}");
        assert!(
            took >= deadline - Duration::from_millis(50) && took < Duration::from_secs(4),
            "{case}: closed after {took:?}"
        );
    }
}

/// Without the option, a PROXY header is a malformed request (its first bytes are not the
/// protocol's magic), as ever.
#[test]
fn without_the_option_a_header_is_a_bad_request() {
    let server = TestServer::start();
    server.put("f.txt", b"behind a proxy");
    let req = request(b"f.txt");
    for header in [V1_TCP4.to_vec(), v2_inet()] {
        let mut s: TcpStream = raw(server.addr());
        s.write_all(&[&header[..], &req].concat()).unwrap();
        let reply = read_to_close(&mut s).unwrap_or_default();
        assert!(reply.is_empty(), "{header:?}: got {reply:?}");
    }
    let mut s = raw(server.addr());
    s.write_all(&req).unwrap();
    assert_eq!(read_to_close(&mut s).unwrap(), found());
}
