//! The metrics endpoint: scraped before and after a known set of connections (a file sent,
//! a missing name, a client refused by a rule, one too many from an address), its counters
//! must have moved by exactly what happened; a scraper that sends nothing, or too much, is
//! cut off; the endpoint closes with the server.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use filefetch::{BackgroundServer, Server, ServerConfig, ServerConfigBuilder};

use crate::support::{found, raw, read_to_close, request, NOT_FOUND};

/// Upper bound for any wait here; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(20);

const CONTENT: &[u8] = b"counted and measured";

/// A server on 127.0.0.1 port 0 with metrics on 127.0.0.1 port 0, serving `f.txt`, behind
/// a (pretend) load balancer, so that a test can speak for any client address.
fn serve(
    configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder,
) -> (BackgroundServer, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("f.txt"), CONTENT).unwrap();
    let config = ServerConfig::builder()
        .root(root.path())
        .proxy_protocol(true)
        .request_timeout(PATIENCE)
        .metrics("127.0.0.1:0".parse::<SocketAddr>().unwrap());
    let config = configure(config).build().unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    let metrics = server.metrics_addr().expect("metrics are on");
    assert_eq!(metrics.ip().to_string(), "127.0.0.1");
    assert_ne!(metrics.port(), 0);
    assert_ne!(metrics, server.local_addr());
    let server = server.spawn().unwrap();
    assert_eq!(server.metrics_addr(), Some(metrics));
    (server, root)
}

/// A v1 PROXY header from `client` (an IPv4 address).
fn proxy(client: &str) -> Vec<u8> {
    format!("PROXY TCP4 {client} 127.0.0.1 40000 5000\r\n").into_bytes()
}

/// Asks for `name` as `client`; all that came back (nothing after a reset).
fn ask(server: &BackgroundServer, client: &str, name: &str) -> Vec<u8> {
    let mut s = raw(server.local_addr());
    let _ = s.write_all(&[proxy(client), request(name.as_bytes())].concat());
    read_to_close(&mut s).unwrap_or_default()
}

/// A response: its status code, head and body.
struct Response {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` to `addr` and reads the response to the close.
fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_write_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).unwrap();
    let text = String::from_utf8(got).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {head}"));
    Response {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The samples of one scrape, by name with labels as written
/// (`filefetch_requests_total{outcome="sent"}`).
#[derive(Debug)]
struct Samples {
    values: BTreeMap<String, f64>,
    text: String,
}

impl Samples {
    fn get(&self, key: &str) -> f64 {
        *self
            .values
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in:\n{}", self.text))
    }

    fn requests(&self, outcome: &str) -> f64 {
        self.get(&format!(
            "filefetch_requests_total{{outcome=\"{outcome}\"}}"
        ))
    }

    /// Every `outcome` label and its count.
    fn outcomes(&self) -> BTreeMap<String, f64> {
        let prefix = "filefetch_requests_total{outcome=\"";
        self.values
            .iter()
            .filter_map(|(key, &v)| {
                let outcome = key.strip_prefix(prefix)?.strip_suffix("\"}")?;
                Some((outcome.to_owned(), v))
            })
            .collect()
    }

    fn total_requests(&self) -> f64 {
        self.outcomes().values().sum()
    }

    fn refused(&self, reason: &str) -> f64 {
        self.get(&format!(
            "filefetch_connections_refused_total{{reason=\"{reason}\"}}"
        ))
    }

    fn active(&self) -> f64 {
        self.get("filefetch_active_connections")
    }
}

/// Scrapes `GET /metrics` once and parses the text.
fn scrape(server: &BackgroundServer) -> Samples {
    let response = http(
        server.metrics_addr().unwrap(),
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(response.status, 200, "{}", response.head);
    assert!(
        response
            .head
            .contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{}",
        response.head
    );
    assert!(response.body.ends_with("# EOF\n"), "{}", response.body);
    let mut values = BTreeMap::new();
    for line in response.body.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a value: {line}"));
        assert!(
            values.insert(key.to_owned(), value).is_none(),
            "{key} twice"
        );
    }
    Samples {
        values,
        text: response.body,
    }
}

/// Scrapes until `done` holds (at most [`PATIENCE`]); the last scrape.
fn scrape_until(server: &BackgroundServer, done: impl Fn(&Samples) -> bool) -> Samples {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let samples = scrape(server);
        if done(&samples) {
            return samples;
        }
        assert!(
            Instant::now() < deadline,
            "the metrics never got there:\n{}",
            samples.text
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_counters_move_by_what_happened() {
    // The cache kept open for the whole test, so that the second request surely hits it.
    let (server, _root) = serve(|c| {
        c.deny("192.0.2.0/24".parse().unwrap())
            .file_cache(Duration::from_secs(600))
    });
    let before = scrape(&server);
    for family in [
        "filefetch_requests",
        "filefetch_sent_bytes",
        "filefetch_active_connections",
        "filefetch_file_cache_hits",
        "filefetch_file_cache_misses",
        "filefetch_connections_refused",
        "filefetch_request_duration_seconds",
    ] {
        assert!(
            before.text.contains(&format!("# HELP {family} ")),
            "no help for {family}:\n{}",
            before.text
        );
    }
    assert_eq!(before.total_requests(), 0.0);
    assert!(before.outcomes().contains_key("sent"));
    assert!(before.outcomes().contains_key("not_found"));
    assert_eq!(before.active(), 0.0);

    // A connection open: counted as active while it lasts.
    let mut held = raw(server.local_addr());
    scrape_until(&server, |s| s.active() == 1.0);
    held.write_all(b"PROXY").unwrap();
    drop(held);
    scrape_until(&server, |s| s.active() == 0.0);

    let file = [found(CONTENT.len() as u32), CONTENT.to_vec()].concat();
    assert_eq!(ask(&server, "198.51.100.1", "f.txt"), file);
    assert_eq!(ask(&server, "198.51.100.2", "f.txt"), file);
    assert_eq!(ask(&server, "198.51.100.1", "missing.txt"), NOT_FOUND);
    // Denied: closed without a response.
    assert_eq!(ask(&server, "192.0.2.7", "f.txt"), b"");

    // Each connection is counted before it closes; the wait covers a slow machine all the
    // same.
    let after = scrape_until(&server, |s| s.total_requests() >= 5.0);
    let mut outcomes = after.outcomes();
    outcomes.retain(|_, n| *n != 0.0);
    let expected: BTreeMap<String, f64> = [
        ("sent", 2.0),
        ("not_found", 1.0),
        ("refused", 1.0),
        ("bad_proxy_header", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(outcomes, expected, "\n{}", after.text);
    assert_eq!(after.total_requests(), 5.0);
    assert_eq!(
        after.get("filefetch_sent_bytes_total") - before.get("filefetch_sent_bytes_total"),
        2.0 * CONTENT.len() as f64
    );
    assert_eq!(after.refused("access_rule"), 1.0);
    assert_eq!(after.refused("per_address_limit"), 0.0);
    assert_eq!(after.active(), 0.0);

    // f.txt opened once and then found open; missing.txt looked for in vain. (No file is
    // kept open on Windows, where the cache is off.)
    let (hits, misses) = (
        after.get("filefetch_file_cache_hits_total"),
        after.get("filefetch_file_cache_misses_total"),
    );
    if cfg!(windows) {
        assert_eq!((hits, misses), (0.0, 0.0));
    } else {
        assert_eq!((hits, misses), (1.0, 2.0));
    }

    // One observation per connection, in cumulative buckets.
    let count = after.get("filefetch_request_duration_seconds_count");
    assert_eq!(count, after.total_requests());
    assert_eq!(
        after.get("filefetch_request_duration_seconds_bucket{le=\"+Inf\"}"),
        count
    );
    let buckets: Vec<(f64, f64)> = after
        .values
        .iter()
        .filter_map(|(key, &n)| {
            let le = key
                .strip_prefix("filefetch_request_duration_seconds_bucket{le=\"")?
                .strip_suffix("\"}")?;
            Some((le.parse::<f64>().unwrap_or(f64::INFINITY), n))
        })
        .collect();
    assert_eq!(buckets.len(), 17, "{buckets:?}");
    let mut sorted = buckets.clone();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(sorted.first().unwrap().0, 0.0005);
    assert_eq!(sorted[sorted.len() - 2].0, 60.0);
    assert!(
        sorted.windows(2).all(|w| w[0].1 <= w[1].1),
        "not cumulative: {sorted:?}"
    );
    let sum = after.get("filefetch_request_duration_seconds_sum");
    assert!(sum > 0.0 && sum.is_finite(), "{sum}");

    server.abort().unwrap();
}

#[test]
fn one_connection_too_many_is_counted() {
    // A large file sent slowly keeps the first connection (and its place) open while the
    // second arrives.
    let (server, root) = serve(|c| c.max_per_address(1).rate_limit(64 * 1024));
    std::fs::write(root.path().join("big"), vec![7u8; 4 << 20]).unwrap();
    let mut first = raw(server.local_addr());
    first
        .write_all(&[proxy("198.51.100.9"), request(b"big")].concat())
        .unwrap();
    let mut header = [0u8; 8];
    first.read_exact(&mut header).unwrap();
    assert_eq!(header, found(4 << 20)[..]);
    // The first connection holds its place: one more from the same address is refused.
    assert_eq!(ask(&server, "198.51.100.9", "f.txt"), b"");
    drop(first);

    let after = scrape_until(&server, |s| s.total_requests() >= 2.0);
    assert_eq!(after.requests("too_many"), 1.0, "\n{}", after.text);
    assert_eq!(after.refused("per_address_limit"), 1.0);
    assert_eq!(after.refused("access_rule"), 0.0);
    let after = scrape_until(&server, |s| s.active() == 0.0);
    assert_eq!(
        after.get("filefetch_request_duration_seconds_count"),
        after.total_requests()
    );
    server.abort().unwrap();
}

#[test]
fn other_paths_and_methods_are_refused() {
    let (server, _root) = serve(|c| c);
    let addr = server.metrics_addr().unwrap();
    assert_eq!(http(addr, b"GET / HTTP/1.1\r\n\r\n").status, 404);
    assert_eq!(http(addr, b"GET /metrics/x HTTP/1.1\r\n\r\n").status, 404);
    let post = http(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    assert!(post.head.contains("Allow: GET, HEAD"), "{}", post.head);
    assert_eq!(http(addr, b"nonsense\r\n\r\n").status, 400);
    let head = http(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    // None of these was a connection to the file server.
    assert_eq!(scrape(&server).total_requests(), 0.0);
    server.abort().unwrap();
}

#[test]
fn a_scraper_that_sends_nothing_or_too_much_is_cut_off() {
    let (server, _root) = serve(|c| c.request_timeout(Duration::from_millis(300)));
    let addr = server.metrics_addr().unwrap();

    // Silent: closed once the request timeout has passed, long before this side's patience.
    let mut silent = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    silent.set_read_timeout(Some(PATIENCE)).unwrap();
    // Meanwhile others are served.
    assert_eq!(scrape(&server).active(), 0.0);
    let mut got = Vec::new();
    match silent.read_to_end(&mut got) {
        Ok(_) => assert!(got.is_empty(), "{got:?}"),
        Err(e) => assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "not cut off: {e}"
        ),
    }

    // A head past 8 KiB without its end: refused, whatever follows.
    let mut endless = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    endless.set_read_timeout(Some(PATIENCE)).unwrap();
    endless.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut head = b"GET /metrics HTTP/1.1\r\n".to_vec();
    head.resize(9000, b'a');
    endless.write_all(&head).unwrap();
    endless.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    endless.read_to_end(&mut got).unwrap();
    let got = String::from_utf8(got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{got}"
    );

    // A head trickling in: cut off at the request timeout too, however it keeps sending.
    let mut slow = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let deadline = Instant::now() + PATIENCE;
    let cut = loop {
        assert!(
            Instant::now() < deadline,
            "a trickling head was never cut off"
        );
        if slow.write_all(b"X-Slow: 1\r\n").is_err() {
            break true;
        }
        let mut byte = [0u8; 1];
        match slow.read(&mut byte) {
            Ok(0) => break true,
            Ok(_) => panic!("an answer to an unfinished head"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break true,
        }
    };
    assert!(cut);
    server.abort().unwrap();
}

#[test]
fn the_endpoint_closes_with_the_server() {
    let (server, _root) = serve(|c| c.grace_period(PATIENCE));
    let addr = server.metrics_addr().unwrap();
    scrape(&server);

    // A connection in flight keeps the server draining after a graceful shutdown: the
    // metrics are closed already.
    let held = raw(server.local_addr());
    scrape_until(&server, |s| s.active() == 1.0);
    server.handle().shutdown();
    let deadline = Instant::now() + PATIENCE;
    loop {
        match TcpStream::connect_timeout(&addr, PATIENCE) {
            // Refused; or, on Windows, reset when the attempt reached the backlog of the
            // listening socket as it closed.
            Err(e) => {
                assert!(
                    matches!(
                        e.kind(),
                        ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                    ),
                    "{e}"
                );
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "the metrics still listen");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
    assert!(!server.is_finished(), "the server should still be draining");
    drop(held);
    assert!(server.wait_timeout(PATIENCE), "the server did not stop");
    server.join().unwrap();
    let err = TcpStream::connect_timeout(&addr, PATIENCE).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn no_metrics_unless_asked() {
    let root = tempfile::tempdir().unwrap();
    let config = ServerConfig::builder().root(root.path()).build().unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap();
    assert_eq!(server.metrics_addr(), None);
    let server = server.spawn().unwrap();
    assert_eq!(server.metrics_addr(), None);
    server.abort().unwrap();
}

#[test]
fn a_metrics_address_in_use_fails_the_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let root = tempfile::tempdir().unwrap();
    let config = ServerConfig::builder()
        .root(root.path())
        .metrics(addr)
        .build()
        .unwrap();
    let err = Server::bind("127.0.0.1:0".parse().unwrap(), config).unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("metrics"), "{message}");
}
