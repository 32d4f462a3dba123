//! `filefetch serve --proxy-protocol` behind a (pretend) load balancer: the log line of each
//! connection names the client the PROXY header gives, with the balancer as `via`.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tempfile::tempdir;

use crate::support::{fetch, filefetch, serve, PATIENCE};

/// A FileRequest for `name`.
fn request(name: &str) -> Vec<u8> {
    let mut req = vec![0x49, 0x7E, 1];
    req.extend_from_slice(&(name.len() as u16).to_be_bytes());
    req.extend_from_slice(name.as_bytes());
    req
}

/// Sends `bytes` as one write and returns everything the server sent back, and the address
/// the server saw the connection come from.
fn exchange(port: u16, bytes: &[u8]) -> (Vec<u8>, SocketAddr) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(bytes).unwrap();
    let mut reply = Vec::new();
    // A reset (the server closing on unread bytes) ends the reply like a close.
    let _ = s.read_to_end(&mut reply);
    (reply, s.local_addr().unwrap())
}

/// v2 PROXY, TCP over IPv6, from [2001:db8::7]:40000, with an authority TLV.
fn v2_inet6() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x21\x00\x2A".to_vec();
    h.extend_from_slice(
        &"2001:db8::7"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(
        &"2001:db8::1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    h.extend_from_slice(&[0x9C, 0x40, 0x1B, 0x58]);
    h.extend_from_slice(&[0x02, 0x00, 0x03]);
    h.extend_from_slice(b"a.b");
    h
}

#[test]
fn the_log_names_the_client_the_header_gives() {
    let root = tempdir().unwrap();
    for name in ["v1", "v2", "local", "unknown"] {
        fs::write(root.path().join(name), name).unwrap();
    }
    let (mut server, port) = serve(root.path(), &["--proxy-protocol"]);
    let found = |name: &str| {
        [
            &[0x49, 0x7E, 2, 1, 0, 0, 0, name.len() as u8][..],
            name.as_bytes(),
        ]
        .concat()
    };

    let v1 = [
        &b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n"[..],
        &request("v1"),
    ]
    .concat();
    let (reply, balancer) = exchange(port, &v1);
    assert_eq!(reply, found("v1"));
    let line = server.stdout.wait_for(|l| l.contains("name=\"v1\""));
    assert!(
        line.contains(&format!("sent peer=203.0.113.7:40000 via={balancer} ")),
        "{line}"
    );

    let (reply, balancer) = exchange(port, &[v2_inet6(), request("v2")].concat());
    assert_eq!(reply, found("v2"));
    let line = server.stdout.wait_for(|l| l.contains("name=\"v2\""));
    assert!(
        line.contains(&format!("sent peer=[2001:db8::7]:40000 via={balancer} ")),
        "{line}"
    );

    // HAProxy's health checks (v2 LOCAL), and v1 UNKNOWN: the connection's own address.
    let local = [
        &b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"[..],
        &request("local"),
    ]
    .concat();
    let unknown = [&b"PROXY UNKNOWN\r\n"[..], &request("unknown")].concat();
    for (name, bytes) in [("local", local), ("unknown", unknown)] {
        let (reply, peer) = exchange(port, &bytes);
        assert_eq!(reply, found(name));
        let line = server
            .stdout
            .wait_for(|l| l.contains(&format!("name=\"{name}\"")));
        assert!(line.contains(&format!("sent peer={peer} name=")), "{line}");
    }

    // A client that came straight in: no header, no response, and the log says why.
    let (reply, peer) = exchange(port, &request("v1"));
    assert_eq!(reply, b"");
    let line = server.stdout.wait_for(|l| l.contains("bad PROXY header"));
    assert!(
        line.contains(&format!(
            "bad PROXY header: missing (the first byte is 0x49); closed without a response \
             peer={peer} name=\"-\""
        )),
        "{line}"
    );
    // The same with the fetch command, which sends no header.
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "v1", &["--timeout", "2"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let line = server
        .stdout
        .wait_for(|l| l.contains("bad PROXY header") && !l.contains(&format!("peer={peer} ")));
    assert!(line.contains(" WARN "), "{line}");
}

#[test]
fn without_the_option_a_header_is_a_bad_request() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"f").unwrap();
    let (mut server, port) = serve(root.path(), &[]);
    let bytes = [
        &b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\n"[..],
        &request("f"),
    ]
    .concat();
    let (reply, peer) = exchange(port, &bytes);
    assert_eq!(reply, b"");
    let line = server.stdout.wait_for(|l| l.contains("bad request"));
    assert!(line.contains(&format!("peer={peer} ")), "{line}");
    assert!(!line.contains("via="), "{line}");
}

#[test]
fn help_explains_the_option() {
    let out = filefetch(tempdir().unwrap().path(), &["serve", "--help"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("--proxy-protocol"), "{help}");
    assert!(help.contains("`send-proxy` or `send-proxy-v2`"), "{help}");
}
