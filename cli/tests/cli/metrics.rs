//! `filefetch serve --metrics ADDR`: the address is announced, and a scrape there shows the
//! connections served.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use tempfile::tempdir;

use crate::support::{fetch, serve, PATIENCE};

/// `GET /metrics` at `addr`: the status line and the body.
fn scrape(addr: SocketAddr) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, PATIENCE).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    let (head, body) = got.split_once("\r\n\r\n").expect("a complete response");
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// The value of the sample `key` (name and labels, as written) in `body`.
fn sample(body: &str, key: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(k, _)| *k == key))
        .map(|(_, v)| v.parse().unwrap())
}

#[test]
fn serve_announces_and_serves_its_metrics() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("a.txt"), b"metered").unwrap();
    let (mut server, port) = serve(root.path(), &["--metrics", "127.0.0.1:0"]);
    let line = server
        .stdout
        .wait_for(|l| l.starts_with("metrics on http://"));
    let addr: SocketAddr = line["metrics on http://".len()..]
        .strip_suffix("/metrics")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    assert_ne!(addr.port(), port);

    let (status, body) = scrape(addr);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let sent = "filefetch_requests_total{outcome=\"sent\"}";
    assert_eq!(sample(&body, sent), Some(0.0), "{body}");

    let fetched = tempdir().unwrap();
    let outcome = fetch(fetched.path(), port, "a.txt", &[]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);

    // Counted before the connection closes; the wait is for a slow machine only.
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let (_, body) = scrape(addr);
        if sample(&body, sent) != Some(0.0) || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    assert_eq!(sample(&body, sent), Some(1.0), "{body}");
    assert_eq!(sample(&body, "filefetch_sent_bytes_total"), Some(7.0));
    assert_eq!(sample(&body, "filefetch_active_connections"), Some(0.0));
    assert_eq!(
        sample(&body, "filefetch_request_duration_seconds_count"),
        Some(1.0)
    );
}

#[test]
fn a_bad_metrics_address_is_a_usage_error() {
    let root = tempdir().unwrap();
    let outcome = crate::support::filefetch(
        root.path(),
        &[
            "serve",
            "0",
            "--bind",
            "127.0.0.1",
            "--metrics",
            "localhost",
        ],
    );
    assert_eq!(outcome.code, Some(2), "{}", outcome.stderr);
    assert!(outcome.stderr.contains("--metrics"), "{}", outcome.stderr);
}
