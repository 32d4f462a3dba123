//! How a server behaves: [`ServerConfig`], read-only once built, and [`ServerConfigBuilder`],
//! which checks every value when it builds it.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::access::{AccessRule, Cidr};
use crate::config::{self, check_count, check_duration};
use crate::error::{Error, Result};

/// How a server behaves. [`ServerConfig::new`] gives the defaults;
/// [`ServerConfig::builder`] sets others.
///
/// ```
/// use std::time::Duration;
/// let config = filefetch::ServerConfig::builder()
///     .root("/srv/files")
///     .request_timeout(Duration::from_millis(500))
///     .build()?;
/// assert_eq!(config.max_connections(), filefetch::config::MAX_CONNECTIONS);
/// assert!(filefetch::ServerConfig::builder().threads(1 << 20).build().is_err());
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    root: PathBuf,
    #[cfg(feature = "object-store")]
    object_store: Option<(std::sync::Arc<dyn object_store::ObjectStore>, String)>,
    max_connections: usize,
    request_timeout: Duration,
    send_timeout: Duration,
    grace_period: Duration,
    threads: usize,
    portable: bool,
    file_cache: Duration,
    proxy_protocol: bool,
    access_rules: Vec<AccessRule>,
    max_per_address: usize,
    rate_limit: u64,
    total_rate_limit: u64,
    metrics: Option<SocketAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            root: PathBuf::from("."),
            #[cfg(feature = "object-store")]
            object_store: None,
            max_connections: config::MAX_CONNECTIONS,
            request_timeout: config::REQUEST_TIMEOUT,
            send_timeout: config::SEND_TIMEOUT,
            grace_period: config::GRACE_PERIOD,
            threads: config::THREADS,
            portable: false,
            file_cache: config::FILE_CACHE,
            proxy_protocol: false,
            access_rules: Vec::new(),
            max_per_address: config::MAX_PER_ADDRESS,
            rate_limit: config::RATE_LIMIT,
            total_rate_limit: config::TOTAL_RATE_LIMIT,
            metrics: None,
        }
    }
}

impl ServerConfig {
    /// The defaults: the working directory, the constants of [`config`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder(Self::default())
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> ServerConfigBuilder {
        ServerConfigBuilder(self.clone())
    }

    /// Directory (or object-store URL) files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The object store set with [`ServerConfigBuilder::object_store`], with its prefix.
    #[cfg(feature = "object-store")]
    pub fn object_store(&self) -> Option<(&std::sync::Arc<dyn object_store::ObjectStore>, &str)> {
        self.object_store
            .as_ref()
            .map(|(store, prefix)| (store, prefix.as_str()))
    }

    /// Most connections handled at once (the process's open file limit may lower it; see
    /// [`Server::connection_limit`](crate::Server::connection_limit)).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Time the whole FileRequest has to arrive, from accept.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Time a client may read nothing before it is dropped.
    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// Time transfers in flight have to finish after a graceful shutdown.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// Worker threads; 0 means one per CPU core.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the portable code paths are forced.
    pub fn portable(&self) -> bool {
        self.portable
    }

    /// How long a small file stays open for reuse (zero: never).
    pub fn file_cache(&self) -> Duration {
        self.file_cache
    }

    /// Whether every connection must start with a PROXY protocol header.
    pub fn proxy_protocol(&self) -> bool {
        self.proxy_protocol
    }

    /// The access rules, in the order they are checked (none: every client is served).
    pub fn access_rules(&self) -> &[AccessRule] {
        &self.access_rules
    }

    /// Most connections at once from one client address (0: no limit).
    pub fn max_per_address(&self) -> usize {
        self.max_per_address
    }

    /// Most bytes a second one connection sends (0: no limit).
    pub fn rate_limit(&self) -> u64 {
        self.rate_limit
    }

    /// Most bytes a second the whole server sends (0: no limit).
    pub fn total_rate_limit(&self) -> u64 {
        self.total_rate_limit
    }

    /// Where the metrics are served over HTTP, if they are (see
    /// [`ServerConfigBuilder::metrics`]).
    pub fn metrics(&self) -> Option<SocketAddr> {
        self.metrics
    }
}

/// Sets [`ServerConfig`]; [`build`](ServerConfigBuilder::build) checks the values.
#[derive(Debug, Clone, Default)]
pub struct ServerConfigBuilder(ServerConfig);

impl ServerConfigBuilder {
    /// Directory files are served from (the working directory by default), or, with the
    /// `object-store` feature, an object store's URL: `s3://bucket/prefix` (endpoint, region
    /// and credentials from the standard `AWS_*` variables), `file:///dir` or `memory://`.
    /// A plain path always means a directory, served with the confinement rules.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.0.root = root.into();
        self
    }

    /// Serves the objects of `store` whose keys start with `prefix` (for instance a store
    /// built with options of your own, or an in-memory one in tests); this takes the place of
    /// [`root`](ServerConfigBuilder::root).
    #[cfg(feature = "object-store")]
    pub fn object_store(
        mut self,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        prefix: &str,
    ) -> Self {
        self.0.object_store = Some((store, prefix.to_owned()));
        self
    }

    /// Most connections handled at once; more wait in the listen backlog (10,000 by default;
    /// 1 to [`config::MAX_CONNECTIONS_LIMIT`]).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.0.max_connections = n;
        self
    }

    /// The whole FileRequest must arrive within this time from accept (1 s by default;
    /// above 0).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.0.request_timeout = t;
        self
    }

    /// A client that reads nothing for this long is dropped (10 s by default; above 0).
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.0.send_timeout = t;
        self
    }

    /// On a graceful shutdown, how long transfers in flight may take to finish (10 s by
    /// default; 0 cuts them at once).
    pub fn grace_period(mut self, t: Duration) -> Self {
        self.0.grace_period = t;
        self
    }

    /// Worker threads; 0 (the default) means one per CPU core; at most
    /// [`config::MAX_THREADS`]. On Linux, each listening socket the server binds itself also
    /// has a thread of its own waiting in `accept`, which serves the requests that need no
    /// waiting and hands the rest to the workers.
    pub fn threads(mut self, n: usize) -> Self {
        self.0.threads = n;
        self
    }

    /// Uses the portable code paths (component walk instead of `openat2`, read/write instead
    /// of `sendfile`) even where the fast ones exist.
    pub fn portable(mut self, portable: bool) -> Self {
        self.0.portable = portable;
        self
    }

    /// How long a small file (64 KiB or less) stays open for reuse by the next requests of
    /// the same name (1 s by default; zero opens every file afresh).
    ///
    /// The name is looked up again at every request, so a file deleted, renamed away or
    /// replaced is noticed at once, and sizes are measured each time; only a permission
    /// change can take this long to be seen. While open, a file unchanged for 3 s also has
    /// its response kept in memory (8 MiB at most over all files), checked against the
    /// file's size and times at every request; a change that leaves the times alone (a write
    /// through a shared memory mapping) can go unseen for this long. On Windows files are
    /// never kept open between requests (a file held open there cannot be replaced by a
    /// rename), so this setting has no effect.
    pub fn file_cache(mut self, t: Duration) -> Self {
        self.0.file_cache = t;
        self
    }

    /// Expects every connection to start with a PROXY protocol header, v1 or v2, as a load
    /// balancer sends it (HAProxy's `send-proxy` or `send-proxy-v2`); off by default.
    ///
    /// The header must arrive within the request timeout, with the request after it. The
    /// client it names is the connection's `peer` in the log, with the load balancer's
    /// address as `via`; v1 `UNKNOWN`, v2 `LOCAL` (HAProxy's health checks) and v2 `UNSPEC`
    /// keep the connection's own peer. A connection without a valid header is closed
    /// without a response, and so is one whose v2 header is longer than 232 bytes or is for
    /// anything but TCP over IPv4 or IPv6. Only turn this on behind a load balancer that
    /// sends the header: anyone who can reach the server directly can claim any address.
    /// Off, a PROXY header is a malformed request like any other.
    pub fn proxy_protocol(mut self, on: bool) -> Self {
        self.0.proxy_protocol = on;
        self
    }

    /// Adds a rule serving the clients in `network`; see
    /// [`access_rule`](ServerConfigBuilder::access_rule) for how rules are checked.
    pub fn allow(self, network: Cidr) -> Self {
        self.access_rule(AccessRule::Allow(network))
    }

    /// Adds a rule refusing the clients in `network`; see
    /// [`access_rule`](ServerConfigBuilder::access_rule) for how rules are checked.
    pub fn deny(self, network: Cidr) -> Self {
        self.access_rule(AccessRule::Deny(network))
    }

    /// Adds an access rule after those already added.
    ///
    /// Rules are checked in the order they were added, as nginx checks `allow` and `deny`:
    /// the first whose network contains the client decides. A client that no rule matches
    /// is served if every rule is a deny rule (or there are none), and refused if there is
    /// at least one allow rule. So `allow 10.0.0.0/8` alone serves 10.0.0.0/8 only,
    /// `deny 10.0.0.0/8` alone serves everyone else, and `deny 10.0.0.5, allow 10.0.0.0/8`
    /// serves 10.0.0.0/8 but 10.0.0.5.
    ///
    /// The client is the connection's peer, or with
    /// [`proxy_protocol`](ServerConfigBuilder::proxy_protocol) the client the PROXY header
    /// names (a health check's header names none: the load balancer is judged). An IPv4
    /// client that reaches an IPv6 socket as `::ffff:a.b.c.d` is judged as the IPv4 client
    /// `a.b.c.d`. A refused client is closed without a response, before its request is read
    /// (right after the PROXY header when that is on), and logged.
    pub fn access_rule(mut self, rule: AccessRule) -> Self {
        self.0.access_rules.push(rule);
        self
    }

    /// At most `n` connections at once from one client address (the real client's, as for
    /// the [access rules](ServerConfigBuilder::access_rule)); one more is closed without a
    /// response, before its request is read, and logged. 0 (the default) sets no limit;
    /// otherwise 1 to [`config::MAX_CONNECTIONS_LIMIT`]. Every IPv6 address counts on its
    /// own, as nginx's `limit_conn` on `$binary_remote_addr` does.
    pub fn max_per_address(mut self, n: usize) -> Self {
        self.0.max_per_address = n;
        self
    }

    /// Each connection sends at most `bytes_per_sec` bytes a second (0, the default: no
    /// limit). A connection may run ahead of the rate by a tenth of a second's worth (at
    /// least 1 KiB): in its first `t` seconds it sends at most `rate × t + burst` bytes,
    /// header included. Large files still leave with `sendfile`, in paced chunks; the
    /// pauses do not count as the client stalling.
    pub fn rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.0.rate_limit = bytes_per_sec;
        self
    }

    /// All connections together send at most `bytes_per_sec` bytes a second (0, the default:
    /// no limit), with the same burst as [`rate_limit`](ServerConfigBuilder::rate_limit).
    /// Connections take turns in the order they ask, 16 KiB at a time at most, so that each
    /// gets an even share; both limits can be set at once.
    pub fn total_rate_limit(mut self, bytes_per_sec: u64) -> Self {
        self.0.total_rate_limit = bytes_per_sec;
        self
    }

    /// Serves the server's metrics at `addr` (`None`, the default: no metrics), in the
    /// OpenMetrics text format that Prometheus scrapes, to HTTP `GET /metrics` (404 for any
    /// other path, 405 for any other method; each connection is closed after its response).
    /// Port 0 picks a free port: see [`Server::metrics_addr`](crate::Server::metrics_addr).
    ///
    /// The metrics: `filefetch_requests_total` by `outcome` (how each connection ended, as
    /// its log line says: `sent`, `not_found`, `refused`, `too_many`, `request_timeout`...),
    /// `filefetch_sent_bytes_total` (file data), `filefetch_active_connections`,
    /// `filefetch_file_cache_hits_total` and `filefetch_file_cache_misses_total` (while the
    /// [open-file cache](ServerConfigBuilder::file_cache) is on),
    /// `filefetch_connections_refused_total` by `reason` (`access_rule`,
    /// `per_address_limit`) and the histogram `filefetch_request_duration_seconds` (accept
    /// to close, buckets from 0.5 ms to 60 s).
    ///
    /// The address is listened on when the server is bound, and closed when the server
    /// stops accepting (at the start of a graceful shutdown too). A scraper's request line
    /// and headers (8 KiB at most) must arrive within the
    /// [request timeout](ServerConfigBuilder::request_timeout), and the response leave
    /// within the [send timeout](ServerConfigBuilder::send_timeout). Anyone who can reach
    /// the address can read the metrics: keep it on loopback or a private network.
    pub fn metrics(mut self, addr: impl Into<Option<SocketAddr>>) -> Self {
        self.0.metrics = addr.into();
        self
    }

    /// The configuration, or [`Error::InvalidOption`](crate::Error::InvalidOption) naming
    /// the first value out of range.
    pub fn build(self) -> Result<ServerConfig> {
        let c = self.0;
        check_count(
            "max_connections",
            c.max_connections,
            1,
            config::MAX_CONNECTIONS_LIMIT,
        )?;
        check_duration("request_timeout", c.request_timeout, true)?;
        check_duration("send_timeout", c.send_timeout, true)?;
        check_duration("grace_period", c.grace_period, false)?;
        check_count("threads", c.threads, 0, config::MAX_THREADS)?;
        check_duration("file_cache", c.file_cache, false)?;
        check_count(
            "max_per_address",
            c.max_per_address,
            0,
            config::MAX_CONNECTIONS_LIMIT,
        )?;
        if let Some(addr) = c.metrics {
            check_listenable("metrics", addr)?;
        }
        Ok(c)
    }
}

/// Checks that `addr` is one a TCP socket can listen on: not a multicast or broadcast
/// address.
fn check_listenable(option: &'static str, addr: SocketAddr) -> Result<()> {
    let ip = addr.ip();
    if ip.is_multicast() || ip == IpAddr::from([255, 255, 255, 255]) {
        return Err(Error::invalid(
            option,
            format!("{addr}: a multicast or broadcast address cannot be listened on"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_address_is_checked() {
        let config = ServerConfig::builder().build().unwrap();
        assert_eq!(config.metrics(), None);
        let addr: SocketAddr = "127.0.0.1:9100".parse().unwrap();
        let config = ServerConfig::builder().metrics(addr).build().unwrap();
        assert_eq!(config.metrics(), Some(addr));
        // Off again.
        let config = config.to_builder().metrics(None).build().unwrap();
        assert_eq!(config.metrics(), None);
        for bad in ["224.0.0.1:9100", "255.255.255.255:9100", "[ff02::1]:9100"] {
            let err = ServerConfig::builder()
                .metrics(bad.parse::<SocketAddr>().unwrap())
                .build()
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::InvalidOption {
                        option: "metrics",
                        ..
                    }
                ),
                "{bad}: {err}"
            );
        }
    }
}
