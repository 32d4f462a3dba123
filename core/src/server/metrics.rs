//! The server's metrics, and the small HTTP endpoint that serves them in the OpenMetrics
//! text format (which Prometheus scrapes) at `GET /metrics`.
//!
//! Every metric is an atomic counter, gauge or bucket updated where the event happens: a
//! connection updates a handful of them once, as it ends; the open-file cache counts each
//! lookup. Nothing takes a lock on the way, and a server without metrics pays one branch.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `filefetch_requests_total` | counter | `outcome`: how the connection ended |
//! | `filefetch_sent_bytes_total` | counter | |
//! | `filefetch_active_connections` | gauge | |
//! | `filefetch_file_cache_hits_total`, `filefetch_file_cache_misses_total` | counter | |
//! | `filefetch_connections_refused_total` | counter | `reason`: `access_rule`, `per_address_limit` |
//! | `filefetch_request_duration_seconds` | histogram | |
//!
//! The endpoint reads at most [`MAX_HEAD`] bytes of request head, which must arrive within
//! the server's request timeout; the response must leave within its send timeout. At most
//! [`SCRAPES_AT_ONCE`] scrapes are served at once (more wait in the listen backlog), and
//! every connection is closed after its response.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, timeout_at};

/// Upper bounds of the request duration histogram's buckets, in seconds: from a small file
/// answered from memory to a large one sent to a slow client.
pub(super) const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Most bytes of a scrape's request line and headers.
pub(super) const MAX_HEAD: usize = 8 * 1024;

/// Most scrapes served at once.
pub(super) const SCRAPES_AT_ONCE: usize = 8;

/// How a connection ended, as the `outcome` label names it: one for each way the access log
/// reports (see `exchange::Outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Sent,
    NotFound,
    Unavailable,
    BadRequest,
    BadProxyHeader,
    Refused,
    TooMany,
    RequestTimeout,
    RequestCut,
    ClientGone,
    Stalled,
    Shrank,
    ReadFailed,
    #[cfg(feature = "object-store")]
    StoreFailed,
}

impl Ending {
    /// Every ending, each at the index of its discriminant.
    const ALL: &'static [Ending] = &[
        Ending::Sent,
        Ending::NotFound,
        Ending::Unavailable,
        Ending::BadRequest,
        Ending::BadProxyHeader,
        Ending::Refused,
        Ending::TooMany,
        Ending::RequestTimeout,
        Ending::RequestCut,
        Ending::ClientGone,
        Ending::Stalled,
        Ending::Shrank,
        Ending::ReadFailed,
        #[cfg(feature = "object-store")]
        Ending::StoreFailed,
    ];

    /// The value of the `outcome` label.
    pub(super) fn label(self) -> &'static str {
        match self {
            Ending::Sent => "sent",
            Ending::NotFound => "not_found",
            Ending::Unavailable => "unavailable",
            Ending::BadRequest => "bad_request",
            Ending::BadProxyHeader => "bad_proxy_header",
            Ending::Refused => "refused",
            Ending::TooMany => "too_many",
            Ending::RequestTimeout => "request_timeout",
            Ending::RequestCut => "request_cut",
            Ending::ClientGone => "client_gone",
            Ending::Stalled => "stalled",
            Ending::Shrank => "shrank",
            Ending::ReadFailed => "read_failed",
            #[cfg(feature = "object-store")]
            Ending::StoreFailed => "store_failed",
        }
    }
}

/// One label, as the families here have.
type Label = [(&'static str, &'static str); 1];

/// The metrics of one server and the registry that encodes them.
#[derive(Debug)]
pub(super) struct Metrics {
    registry: Registry,
    /// Connections by how they ended, indexed by [`Ending`]: the family's own counters,
    /// created up front, so that counting one is an atomic add (no look-up in the family).
    requests: Box<[Counter]>,
    sent_bytes: Counter,
    active: Gauge,
    cache_hits: Counter,
    cache_misses: Counter,
    refused_by_rule: Counter,
    refused_per_address: Counter,
    durations: Durations,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("filefetch");

        let by_outcome = Family::<Label, Counter>::default();
        let requests = Ending::ALL
            .iter()
            .map(|e| by_outcome.get_or_create(&[("outcome", e.label())]).clone())
            .collect();
        registry.register(
            "requests",
            "Connections handled, by how each ended (the outcome of its log line: sent, \
             not_found, refused, too_many, request_timeout, ...)",
            by_outcome,
        );

        let sent_bytes = Counter::default();
        registry.register_with_unit(
            "sent",
            "File data sent to clients, without the response headers (counted as each \
             connection ends)",
            Unit::Bytes,
            sent_bytes.clone(),
        );

        let active = Gauge::default();
        registry.register(
            "active_connections",
            "Connections open now, from accept to close",
            active.clone(),
        );

        let cache_hits = Counter::default();
        registry.register(
            "file_cache_hits",
            "Requests answered with a file the open-file cache kept open (only while the \
             cache is on)",
            cache_hits.clone(),
        );
        let cache_misses = Counter::default();
        registry.register(
            "file_cache_misses",
            "Requests the open-file cache had no open file for, so the name was opened \
             afresh (only while the cache is on)",
            cache_misses.clone(),
        );

        let refused = Family::<Label, Counter>::default();
        let refused_by_rule = refused.get_or_create(&[("reason", "access_rule")]).clone();
        let refused_per_address = refused
            .get_or_create(&[("reason", "per_address_limit")])
            .clone();
        registry.register(
            "connections_refused",
            "Connections closed without a response before their request was read, by reason: \
             an access rule, or the limit of connections at once per client address",
            refused,
        );

        let durations = Durations::new(&DURATION_BUCKETS);
        registry.register_with_unit(
            "request_duration",
            "Time from accept to close of each connection",
            Unit::Seconds,
            durations.clone(),
        );

        Metrics {
            registry,
            requests,
            sent_bytes,
            active,
            cache_hits,
            cache_misses,
            refused_by_rule,
            refused_per_address,
            durations,
        }
    }

    /// The counters of the open-file cache's hits and misses.
    pub(super) fn cache_counters(&self) -> (Counter, Counter) {
        (self.cache_hits.clone(), self.cache_misses.clone())
    }

    /// Counts a connection as open until the value returned is dropped.
    pub(super) fn opened(&self) -> Active<'_> {
        self.active.inc();
        Active(&self.active)
    }

    /// Counts a connection that ended as `ending` after sending `bytes` of file data and
    /// lasting `elapsed`.
    pub(super) fn ended(&self, ending: Ending, bytes: u64, elapsed: Duration) {
        self.requests[ending as usize].inc();
        if bytes > 0 {
            self.sent_bytes.inc_by(bytes);
        }
        match ending {
            Ending::Refused => {
                self.refused_by_rule.inc();
            }
            Ending::TooMany => {
                self.refused_per_address.inc();
            }
            _ => {}
        }
        self.durations.observe(elapsed);
    }

    /// Every metric, in the OpenMetrics text format.
    pub(super) fn encode(&self) -> String {
        let mut text = String::with_capacity(4096);
        // Writing to a String cannot fail, and neither can these metrics' encoding.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// An open connection, counted in the active connections gauge until dropped (however the
/// connection ends: a panic or an abort included).
#[derive(Debug)]
pub(super) struct Active<'a>(&'a Gauge);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A histogram of durations made of atomics only (prometheus-client's own takes a lock for
/// each observation): a count per bucket and the sum in nanoseconds. Clones share it.
#[derive(Debug, Clone)]
struct Durations(Arc<DurationsInner>);

#[derive(Debug)]
struct DurationsInner {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), the last one past every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl Durations {
    fn new(bounds: &'static [f64]) -> Durations {
        Durations(Arc::new(DurationsInner {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }))
    }

    fn observe(&self, d: Duration) {
        let inner = &*self.0;
        let secs = d.as_secs_f64();
        // The first bucket whose bound is at least the value (`le`), or the last.
        let at = inner.bounds.partition_point(|&bound| bound < secs);
        inner.counts[at].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        inner.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's bound with its count (the last bound
    /// `f64::MAX`, which the encoder writes as `+Inf`). The count is that of the buckets, so
    /// the two agree even while observations come in.
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.0;
        let buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|&(_, n)| n).sum();
        let sum = inner.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, count, buckets)
    }
}

impl EncodeMetric for Durations {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Serves scrapes on `listener` until the task is dropped (which drops the scrapes under
/// way too): each request head must arrive within `request_timeout`, each response leave
/// within `send_timeout`.
pub(super) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    request_timeout: Duration,
    send_timeout: Duration,
) {
    let permits = Arc::new(Semaphore::new(SCRAPES_AT_ONCE));
    let mut scrapes = JoinSet::new();
    let mut last_warning: Option<Instant> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        while scrapes.try_join_next().is_some() {}
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                scrapes.spawn(async move {
                    scrape(stream, &metrics, request_timeout, send_timeout).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors or memory: keep serving, and back off.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "metrics: accept failed; retrying");
                    last_warning = Some(Instant::now());
                }
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What reading a request head came to.
enum Head {
    /// The head is the first this many bytes.
    Complete(usize),
    /// [`MAX_HEAD`] bytes arrived without the blank line that ends a head.
    TooLarge,
    /// The client closed or failed first.
    Gone,
}

/// One scrape: the request head, then the response, then close.
async fn scrape(
    mut stream: TcpStream,
    metrics: &Metrics,
    request_timeout: Duration,
    send_timeout: Duration,
) {
    let mut buf = vec![0u8; MAX_HEAD];
    let deadline = tokio::time::Instant::now().checked_add(request_timeout);
    let read = read_head(&mut stream, &mut buf);
    let head = match deadline {
        Some(deadline) => timeout_at(deadline, read).await,
        None => Ok(read.await),
    };
    let (response, drain) = match head {
        // Too slow: cut off without a word.
        Err(_) | Ok(Head::Gone) => return,
        Ok(Head::TooLarge) => (
            plain(
                "431 Request Header Fields Too Large",
                "request head too large\n",
            ),
            true,
        ),
        Ok(Head::Complete(len)) => (answer(&buf[..len], metrics), false),
    };
    let _ = timeout(send_timeout, async {
        stream.write_all(&response).await?;
        stream.shutdown().await?;
        if drain {
            // Read what is left of the request, so that closing with it unread does not
            // reset the connection before the client has read the answer; no more than a
            // few times the head's limit, within the same time.
            let mut left = 4 * MAX_HEAD;
            while left > 0 {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                left = left.saturating_sub(n);
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Reads until the blank line that ends a request head, at most `buf.len()` bytes.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8]) -> Head {
    let mut got = 0;
    loop {
        if let Some(end) = head_end(&buf[..got]) {
            return Head::Complete(end);
        }
        if got == buf.len() {
            return Head::TooLarge;
        }
        match stream.read(&mut buf[got..]).await {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => got += n,
        }
    }
}

/// Where a request head ends: just past its first empty line (`\r\n\r\n`, or `\n\n` from a
/// lenient client).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The whole response to a request head: the metrics for `GET /metrics` (the headers alone
/// for `HEAD`), 404 for any other path, 405 for any other method, 400 for what is not an
/// HTTP/1 request line.
fn answer(head: &[u8], metrics: &Metrics) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Ok(line) = std::str::from_utf8(line) else {
        return plain("400 Bad Request", "bad request\n");
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain("400 Bad Request", "bad request\n");
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return plain("400 Bad Request", "bad request\n");
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    if path != "/metrics" {
        return plain("404 Not Found", "not found; the metrics are at /metrics\n");
    }
    match method {
        "GET" | "HEAD" => {
            let body = metrics.encode();
            let mut response = headers(
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body.len(),
                "",
            );
            if method == "GET" {
                response.extend_from_slice(body.as_bytes());
            }
            response
        }
        _ => {
            let body = "method not allowed\n";
            let mut response = headers(
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                body.len(),
                "Allow: GET, HEAD\r\n",
            );
            response.extend_from_slice(body.as_bytes());
            response
        }
    }
}

/// A response with a plain text body.
fn plain(status: &str, body: &str) -> Vec<u8> {
    let mut response = headers(status, "text/plain; charset=utf-8", body.len(), "");
    response.extend_from_slice(body.as_bytes());
    response
}

/// A response's status line and headers (`extra`: more header lines, each ending in CRLF).
fn headers(status: &str, content_type: &str, len: usize, extra: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         {extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample named `name` (labels included, as written) in `text`.
    fn sample(text: &str, name: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            (key == name).then(|| value.parse().unwrap())
        })
    }

    fn body(response: &[u8]) -> &str {
        let text = std::str::from_utf8(response).unwrap();
        text.split_once("\r\n\r\n").unwrap().1
    }

    #[test]
    fn every_ending_has_its_own_counter_and_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, &ending) in Ending::ALL.iter().enumerate() {
            assert_eq!(ending as usize, i, "{ending:?} is not at its index");
            let label = ending.label();
            assert!(label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(labels.insert(label), "{label} twice");
        }
    }

    #[test]
    fn endings_move_their_counters() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        // Every outcome is there from the start, at zero.
        for ending in Ending::ALL {
            let name = format!("filefetch_requests_total{{outcome=\"{}\"}}", ending.label());
            assert_eq!(sample(&text, &name), Some(0.0), "{name} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# HELP filefetch_sent_bytes File data sent"));
        assert!(text.contains("# TYPE filefetch_request_duration_seconds histogram"));

        metrics.ended(Ending::Sent, 100, Duration::from_micros(300));
        metrics.ended(Ending::Sent, 23, Duration::from_millis(7));
        metrics.ended(Ending::Refused, 0, Duration::from_millis(2));
        metrics.ended(Ending::TooMany, 0, Duration::from_secs(100));
        let text = metrics.encode();
        let get = |name: &str| sample(&text, name).unwrap_or_else(|| panic!("{name}:\n{text}"));
        assert_eq!(get("filefetch_requests_total{outcome=\"sent\"}"), 2.0);
        assert_eq!(get("filefetch_requests_total{outcome=\"refused\"}"), 1.0);
        assert_eq!(get("filefetch_requests_total{outcome=\"too_many\"}"), 1.0);
        assert_eq!(get("filefetch_requests_total{outcome=\"not_found\"}"), 0.0);
        assert_eq!(get("filefetch_sent_bytes_total"), 123.0);
        assert_eq!(
            get("filefetch_connections_refused_total{reason=\"access_rule\"}"),
            1.0
        );
        assert_eq!(
            get("filefetch_connections_refused_total{reason=\"per_address_limit\"}"),
            1.0
        );
        assert_eq!(get("filefetch_request_duration_seconds_count"), 4.0);
        let sum = get("filefetch_request_duration_seconds_sum");
        assert!((sum - 100.0093).abs() < 1e-9, "{sum}");
        // Cumulative buckets: 0.3 ms, 2 ms, 7 ms, then 100 s past every bound.
        let bucket = |le: &str| {
            get(&format!(
                "filefetch_request_duration_seconds_bucket{{le=\"{le}\"}}"
            ))
        };
        assert_eq!(bucket("0.0005"), 1.0);
        assert_eq!(bucket("0.0025"), 2.0);
        assert_eq!(bucket("0.01"), 3.0);
        assert_eq!(bucket("60.0"), 3.0);
        assert_eq!(bucket("+Inf"), 4.0);
    }

    #[test]
    fn a_value_on_a_bound_falls_in_that_bucket() {
        let d = Durations::new(&DURATION_BUCKETS);
        d.observe(Duration::from_millis(1));
        d.observe(Duration::ZERO);
        d.observe(Duration::MAX);
        let (_, count, buckets) = d.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets[1], (0.001, 1));
        assert_eq!(buckets.last(), Some(&(f64::MAX, 1)));
    }

    #[test]
    fn active_connections_go_down_as_they_close() {
        let metrics = Metrics::new();
        let a = metrics.opened();
        let b = metrics.opened();
        assert_eq!(metrics.active.get(), 2);
        drop(a);
        assert_eq!(metrics.active.get(), 1);
        drop(b);
        assert_eq!(metrics.active.get(), 0);
    }

    #[test]
    fn requests_are_routed_by_path_and_method() {
        let metrics = Metrics::new();
        let status = |head: &[u8]| {
            let response = answer(head, &metrics);
            let text = String::from_utf8(response).unwrap();
            text.lines().next().unwrap().to_owned()
        };
        assert_eq!(
            status(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            "HTTP/1.1 200 OK"
        );
        assert_eq!(status(b"GET /metrics?x=1 HTTP/1.0\n\n"), "HTTP/1.1 200 OK");
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), "HTTP/1.1 404 Not Found");
        assert_eq!(
            status(b"GET /metricsx HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 404 Not Found"
        );
        assert_eq!(
            status(b"POST /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 405 Method Not Allowed"
        );
        assert_eq!(status(b"GET /metrics\r\n\r\n"), "HTTP/1.1 400 Bad Request");
        assert_eq!(
            status(b"GET  /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(b"\xff /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );
        assert_eq!(
            status(b"PRI * HTTP/2.0\r\n\r\n"),
            "HTTP/1.1 400 Bad Request"
        );

        let get = answer(b"GET /metrics HTTP/1.1\r\n\r\n", &metrics);
        let text = String::from_utf8(get.clone()).unwrap();
        assert!(text.contains("Content-Type: application/openmetrics-text; version=1.0.0"));
        assert!(text.contains("Connection: close\r\n"));
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body(&get).len());
        assert!(body(&get).contains("filefetch_active_connections 0"));
        // HEAD: the same headers, no body.
        let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &metrics);
        assert!(String::from_utf8(head.clone())
            .unwrap()
            .contains(&format!("Content-Length: {length}")));
        assert_eq!(body(&head), "");
        let wrong =
            String::from_utf8(answer(b"DELETE /metrics HTTP/1.1\r\n\r\n", &metrics)).unwrap();
        assert!(wrong.contains("Allow: GET, HEAD\r\n"));
    }

    #[test]
    fn the_head_ends_at_the_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\nmore\r\n\r\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b""), None);
    }
}
