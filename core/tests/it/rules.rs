//! Who may connect: `allow` and `deny` rules over IPv4 and IPv6 loopback clients (IPv4 ones
//! also as the mapped addresses a `[::]` listener sees), the client a PROXY header names,
//! and the limit of connections at once per address. A refused client gets no response at
//! all, and the log says why.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use filefetch::server::Cidr;
use filefetch::{BackgroundServer, Error, ErrorKind, Server, ServerConfig, ServerConfigBuilder};

use crate::support::{raw, read_to_close, request};

/// Upper bound for any wait here; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

const CONTENT: &[u8] = b"by the rules";

/// The response to a request for `f.txt`.
fn found() -> Vec<u8> {
    let mut reply = vec![0x49, 0x7E, 2, 1, 0, 0, 0, CONTENT.len() as u8];
    reply.extend_from_slice(CONTENT);
    reply
}

/// A server on `addr` serving `f.txt`, configured by `configure`; `None` where the address
/// cannot be listened on (no IPv6 loopback).
fn serve(
    addr: &str,
    configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
) -> Option<(BackgroundServer, tempfile::TempDir)> {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.txt"), CONTENT).unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    if std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0)).is_err() {
        return None;
    }
    let config = configure(ServerConfig::builder().root(root.path()))
        .build()
        .unwrap();
    let server = Server::bind(addr, config).unwrap().spawn().unwrap();
    Some((server, root))
}

fn net(text: &str) -> Cidr {
    text.parse().unwrap()
}

/// The server's port at `host` (an IPv4 or IPv6 loopback address).
fn at(server: &BackgroundServer, host: &str) -> SocketAddr {
    SocketAddr::new(host.parse().unwrap(), server.local_addr().port())
}

/// Sends `bytes` (a PROXY header and or a request) and returns all that came back; a reset
/// (the server closing with the request unread) counts as nothing.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = raw(addr);
    // A server that closes at once may reset the connection before the write.
    let _ = s.write_all(bytes);
    read_to_close(&mut s).unwrap_or_default()
}

/// Asks for `f.txt`: whether it was served (else it was closed without any response).
fn served(addr: SocketAddr) -> bool {
    let reply = exchange(addr, &request(b"f.txt"));
    assert!(
        reply.is_empty() || reply == found(),
        "neither served nor closed unanswered: {reply:?}"
    );
    !reply.is_empty()
}

/// The warnings of refusals the servers of this binary logged.
static REFUSALS: Mutex<String> = Mutex::new(String::new());

/// Keeps the log lines of refusals in [`REFUSALS`].
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        if line.contains("refused") || line.contains("too many connections") {
            REFUSALS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_str(&line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Collects the server's warnings (once for the whole binary; other tests' lines are dropped
/// unless they are refusals).
fn capture_log() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .try_init();
}

/// Waits (at most [`PATIENCE`]) for a logged refusal containing every one of `parts`.
fn logged(parts: &[&str]) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let log = REFUSALS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(line) = log.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no line with {parts:?} in {log}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_denied_network_is_closed_without_a_response() {
    capture_log();
    let (server, _root) = serve("127.0.0.1:0", |c| c.deny(net("127.0.0.0/8"))).unwrap();
    let addr = server.local_addr();
    assert!(!served(addr));
    let line = logged(&["refused by rule deny 127.0.0.0/8; closed without a response"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(
        line.contains("name=\"-\""),
        "not before the request: {line}"
    );

    // Only deny rules: everyone else is served.
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.deny(net("10.0.0.0/8")).deny(net("::1"))
    })
    .unwrap();
    assert!(served(server.local_addr()));

    // IPv6 clients, on an IPv6 loopback server.
    let Some((server, _root)) = serve("[::1]:0", |c| c.deny(net("::1/128"))) else {
        return;
    };
    assert!(!served(server.local_addr()));
    logged(&["refused by rule deny ::1/128"]);
    let (server, _root) = serve("[::1]:0", |c| c.deny(net("127.0.0.0/8"))).unwrap();
    assert!(served(server.local_addr()));
}

#[test]
fn allow_rules_serve_their_networks_only() {
    capture_log();
    // On a dual-stack listener, IPv4 clients arrive as ::ffff:127.0.0.1 and are judged as
    // 127.0.0.1.
    let Some((server, _root)) = serve("[::]:0", |c| c.allow(net("::1/128"))) else {
        return;
    };
    assert!(served(at(&server, "::1")));
    assert!(!served(at(&server, "127.0.0.1")));
    let line = logged(&["refused: no allow rule matches; closed without a response"]);
    assert!(line.contains("peer=[::ffff:127.0.0.1]:"), "{line}");

    let (server, _root) = serve("[::]:0", |c| c.allow(net("127.0.0.0/8"))).unwrap();
    assert!(served(at(&server, "127.0.0.1")));
    assert!(!served(at(&server, "::1")));

    let (server, _root) = serve("[::]:0", |c| c.deny(net("127.0.0.1"))).unwrap();
    assert!(!served(at(&server, "127.0.0.1")));
    assert!(served(at(&server, "::1")));

    // A rule written as a mapped address is the IPv4 rule.
    let (server, _root) = serve("[::]:0", |c| c.allow(net("::ffff:127.0.0.0/104"))).unwrap();
    assert!(served(at(&server, "127.0.0.1")));
    assert!(!served(at(&server, "::1")));
}

#[test]
fn the_first_matching_rule_decides() {
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.allow(net("127.0.0.1")).deny(net("127.0.0.0/8"))
    })
    .unwrap();
    assert!(served(server.local_addr()));
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.deny(net("127.0.0.0/8")).allow(net("127.0.0.1"))
    })
    .unwrap();
    assert!(!served(server.local_addr()));
    // An allow rule for others: this client matches none, and is refused.
    let (server, _root) = serve("127.0.0.1:0", |c| c.allow(net("192.0.2.0/24"))).unwrap();
    assert!(!served(server.local_addr()));
}

/// A v1 PROXY header from `client` (an IPv4 address), port 40000.
fn proxied(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 5000\r\n").into_bytes()
}

#[test]
fn behind_a_proxy_the_client_it_names_is_judged() {
    capture_log();
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.proxy_protocol(true).deny(net("203.0.113.0/24"))
    })
    .unwrap();
    let addr = server.local_addr();
    let req = request(b"f.txt");
    let reply = exchange(addr, &[proxied("203.0.113.7"), req.clone()].concat());
    assert!(reply.is_empty(), "{reply:?}");
    let line = logged(&["refused by rule deny 203.0.113.0/24"]);
    assert!(
        line.contains("peer=203.0.113.7:40000 via=127.0.0.1:"),
        "{line}"
    );
    let reply = exchange(addr, &[proxied("198.51.100.1"), req.clone()].concat());
    assert_eq!(reply, found());
    // A health check (LOCAL) names no client: the balancer itself is judged, and served.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    assert_eq!(exchange(addr, &[local, req].concat()), found());
}

/// Which of `streams` the server has closed: waits (at most [`PATIENCE`]) until at least
/// `expected` are, then a moment more for any further one a faulty limit would close.
fn closed_by_server(streams: &[TcpStream], expected: usize) -> Vec<usize> {
    let closed = || -> Vec<usize> {
        streams
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.set_nonblocking(true).unwrap();
                let mut byte = [0u8; 1];
                let gone = match s.peek(&mut byte) {
                    Ok(0) => true,
                    Ok(_) => panic!("the server sent something"),
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                s.set_nonblocking(false).unwrap();
                gone
            })
            .map(|(i, _)| i)
            .collect()
    };
    let deadline = Instant::now() + PATIENCE;
    while closed().len() < expected {
        assert!(Instant::now() < deadline, "the server closed none");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(300));
    closed()
}

/// Asks until served (at most [`PATIENCE`]): the server may not have seen a close yet.
fn eventually_served(addr: SocketAddr) {
    let deadline = Instant::now() + PATIENCE;
    while !served(addr) {
        assert!(Instant::now() < deadline, "never served again");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn one_connection_past_the_limit_per_address_is_closed() {
    capture_log();
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.max_per_address(3)
            .request_timeout(Duration::from_secs(60))
    })
    .unwrap();
    let addr = server.local_addr();
    // Four idle connections: the one the server took last is closed unanswered (which one
    // that is depends on the order the server accepted them in).
    let mut held: Vec<TcpStream> = (0..4).map(|_| raw(addr)).collect();
    let closed = closed_by_server(&held, 1);
    assert_eq!(closed.len(), 1, "closed: {closed:?}");
    held.remove(closed[0]);
    let line = logged(&["too many connections from this address (at most 3 at once)"]);
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    // Another address is not counted with them (Linux answers all of 127.0.0.0/8).
    #[cfg(target_os = "linux")]
    {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s.connect(&addr.into()).unwrap();
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s.write_all(&request(b"f.txt")).unwrap();
        assert_eq!(read_to_close(&mut s).unwrap(), found());
    }

    // At the limit, a request is not served; once one of the three closes, it is.
    assert!(!served(addr));
    drop(held.pop());
    eventually_served(addr);
    // The two still held are served in turn: they held their places all along.
    for mut s in held {
        s.write_all(&request(b"f.txt")).unwrap();
        assert_eq!(read_to_close(&mut s).unwrap(), found());
    }
}

#[test]
fn behind_a_proxy_connections_count_for_the_client_it_names() {
    let (server, _root) = serve("127.0.0.1:0", |c| {
        c.proxy_protocol(true)
            .max_per_address(1)
            .request_timeout(Duration::from_secs(60))
    })
    .unwrap();
    let addr = server.local_addr();
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = raw(addr);
            s.write_all(&proxied("203.0.113.7")).unwrap();
            s
        })
        .collect();
    assert_eq!(closed_by_server(&held, 1).len(), 1);
    // Another client through the same balancer has places of its own.
    let req = [proxied("203.0.113.8"), request(b"f.txt")].concat();
    assert_eq!(exchange(addr, &req), found());
}

#[test]
fn settings_are_checked() {
    let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
    assert!(
        matches!(e, Error::InvalidOption { option: "cidr", .. }),
        "{e}"
    );
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(ServerConfig::builder().max_per_address(0).build().is_ok());
    assert!(ServerConfig::builder()
        .max_per_address(u32::MAX as usize)
        .build()
        .is_ok());
    #[cfg(target_pointer_width = "64")]
    {
        let e = ServerConfig::builder()
            .max_per_address(usize::MAX)
            .build()
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidOption {
                    option: "max_per_address",
                    ..
                }
            ),
            "{e}"
        );
    }
    let config = ServerConfig::builder()
        .deny(net("10.0.0.5"))
        .allow(net("10.0.0.0/8"))
        .build()
        .unwrap();
    let shown: Vec<String> = config
        .access_rules()
        .iter()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(shown, ["deny 10.0.0.5/32", "allow 10.0.0.0/8"]);
}
