//! `serve`, `Server` and its asyncio twin `AsyncServer`: core's [`BackgroundServer`] driven
//! from Python. Every blocking wait for the server thread runs with the GIL released, in
//! slices short enough that Ctrl-C (or any signal handler that raises) is noticed at once.
//! Stopping has core's two words: `shutdown` is graceful (no new connections; the transfers
//! in flight get the grace period), abort is at once (Python's `close()`).
//!
//! `Server` and `AsyncServer` wrap the same [`Started`] server and share their constructor
//! and addresses ([`server_methods!`]); `AsyncServer`'s waits for the server's end are core's
//! [`BackgroundServer::finished`] future, awaited on [`aio`]'s runtime, instead of blocking
//! calls.
//!
//! Lock order: the GIL is never waited for while the lock of a [`Started`] is held (every
//! wait for the server thread holds the lock only with the GIL released), so a `close()`
//! from another thread cannot deadlock with a waiting `serve_forever()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use filefetch::server::{AccessRule, Cidr};
use filefetch::{config, BackgroundServer, Error, ServerConfig, ServerHandle};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use pyo3::IntoPyObjectExt;
use tracing::Level;

use crate::aio::{self, OnCancel, Outcome};
use crate::args::{self, Hosts, Int, Seconds, Strings};
use crate::errors;
use crate::interrupt::SIGNAL_POLL;
use crate::log;

/// The settings `serve` and `Server` share, as Python gave them.
struct Settings {
    root: PathBuf,
    max_connections: Int,
    request_timeout: Seconds,
    send_timeout: Seconds,
    grace_period: Seconds,
    threads: Int,
    file_cache: Seconds,
    portable: bool,
    proxy_protocol: bool,
    allow: Strings,
    deny: Strings,
    access: Strings,
    max_per_address: Int,
    rate_limit: Int,
    total_rate_limit: Int,
    /// Where the metrics are served, "IP:PORT"; `None`: no metrics.
    metrics: Option<String>,
}

impl Settings {
    /// The configuration, checked by core's builder.
    fn config(self, py: Python<'_>) -> PyResult<ServerConfig> {
        let mut builder = ServerConfig::builder()
            .root(self.root)
            .max_connections(args::unsigned(py, "max_connections", self.max_connections)?)
            .request_timeout(args::duration(py, "request_timeout", self.request_timeout)?)
            .send_timeout(args::duration(py, "send_timeout", self.send_timeout)?)
            .grace_period(args::duration(py, "grace_period", self.grace_period)?)
            .threads(args::unsigned(py, "threads", self.threads)?)
            .file_cache(args::duration(py, "file_cache", self.file_cache)?)
            .portable(self.portable)
            .proxy_protocol(self.proxy_protocol)
            .max_per_address(args::unsigned(py, "max_per_address", self.max_per_address)?)
            .rate_limit(args::unsigned(py, "rate_limit", self.rate_limit)?)
            .total_rate_limit(args::unsigned(
                py,
                "total_rate_limit",
                self.total_rate_limit,
            )?)
            .metrics(metrics_addr(py, self.metrics.as_deref())?);
        for rule in access_rules(py, &self.access, &self.deny, &self.allow)? {
            builder = builder.access_rule(rule);
        }
        args::built(py, builder.build())
    }
}

/// The access rules, in the order they are checked: `access` in its order, then every
/// network of `deny`, then every network of `allow`.
fn access_rules(
    py: Python<'_>,
    access: &Strings,
    deny: &Strings,
    allow: &Strings,
) -> PyResult<Vec<AccessRule>> {
    let mut rules = Vec::new();
    for text in &access.0 {
        let mut words = text.split_whitespace();
        let rule = match (words.next(), words.next(), words.next()) {
            (Some("allow"), Some(net), None) => AccessRule::Allow(network(py, "allow", net)?),
            (Some("deny"), Some(net), None) => AccessRule::Deny(network(py, "deny", net)?),
            _ => {
                return Err(errors::to_py(
                    py,
                    Error::InvalidOption {
                        option: "access",
                        problem: format!(
                            "{text:?} is not a rule such as \"allow 10.0.0.0/8\" or \"deny \
                             192.0.2.7\""
                        ),
                    },
                ))
            }
        };
        rules.push(rule);
    }
    for net in &deny.0 {
        rules.push(AccessRule::Deny(network(py, "deny", net)?));
    }
    for net in &allow.0 {
        rules.push(AccessRule::Allow(network(py, "allow", net)?));
    }
    Ok(rules)
}

/// A network (`10.0.0.0/8`, `2001:db8::/32`, one address) by core's rules, its error naming
/// the keyword `option` it was given in.
fn network(py: Python<'_>, option: &'static str, text: &str) -> PyResult<Cidr> {
    text.parse::<Cidr>().map_err(|e| {
        let e = match e {
            Error::InvalidOption { problem, .. } => Error::InvalidOption { option, problem },
            other => other,
        };
        errors::to_py(py, e)
    })
}

/// The address of `metrics=`, "IP:PORT" as the command's `--metrics` and the C library take
/// it ("127.0.0.1:9100", "[::1]:0"; port 0 picks a free port); `None` turns metrics off.
fn metrics_addr(py: Python<'_>, text: Option<&str>) -> PyResult<Option<SocketAddr>> {
    let Some(text) = text else {
        return Ok(None);
    };
    match text.parse::<SocketAddr>() {
        Ok(addr) => Ok(Some(addr)),
        Err(_) => Err(errors::to_py(
            py,
            Error::InvalidOption {
                option: "metrics",
                problem: format!(
                    "{text:?} is not an IP address and port (\"127.0.0.1:9100\", \"[::1]:9100\")"
                ),
            },
        )),
    }
}

/// Binds `hosts`:`port` and starts serving on a thread of the core's.
fn start(
    py: Python<'_>,
    hosts: &Hosts,
    port: Int,
    settings: Settings,
) -> PyResult<BackgroundServer> {
    let port = args::local_port(py, port)?;
    let config = settings.config(py)?;
    let addrs = args::listen_addrs(py, hosts, port)?;
    py.detach(|| filefetch::Server::bind_all(&addrs, config)?.spawn())
        .map_err(|e| errors::to_py(py, e))
}

/// How [`finish`] ends a server.
enum Stop {
    /// At once, cutting the transfers in flight (core's abort).
    Abort,
    /// The server has stopped, or is stopping: wait for it.
    Join,
}

/// Ends `server` as `how` says, waiting for its thread with the GIL released. Every stop
/// of a server, by `serve` or a `Server`, completes here.
fn finish(py: Python<'_>, server: BackgroundServer, how: Stop) -> PyResult<()> {
    let result = py.detach(|| match how {
        Stop::Abort => server.abort(),
        Stop::Join => server.join(),
    });
    // The log records of the server's last connections are delivered before the stop
    // returns (3 s at most, should a handler be stuck).
    log::flush(py);
    result.map_err(|e| errors::to_py(py, e))
}

/// Serve the files under `root` on `port` until interrupted (Ctrl-C).
///
/// Listens on `host`, one address or a sequence of them ("0.0.0.0": every IPv4 address;
/// "::" every address; "" as "0.0.0.0"), on any free port if `port` is 0. Clients are served
/// concurrently; names are confined to `root`. At most `max_connections` are handled at
/// once; a request must arrive within `request_timeout` seconds of connecting; a client that
/// reads nothing for `send_timeout` seconds is dropped. `threads` worker threads serve (0:
/// one per CPU core). A small file (64 KiB or less) stays open for `file_cache` seconds for
/// reuse by later requests of the same name (0: every request opens it afresh); its size is
/// measured at every request and a file deleted or replaced is seen at once, while a rename
/// away or a permission change can take that long to be seen. `portable` uses the portable
/// code paths instead of system-specific fast ones. Each connection is logged on the
/// "filefetch.server" logger.
///
/// Who may connect: `deny` and `allow` take networks ("10.0.0.0/8", "2001:db8::/32", or one
/// address such as "192.0.2.7"; one str or a sequence of them). A client in a `deny` network
/// is refused; when there is any `allow` network, only the clients in one are served.
/// `access` takes rules checked in the order given, as nginx checks its `allow` and `deny`
/// ("deny 10.0.0.5", "allow 10.0.0.0/8": 10.0.0.0/8 except 10.0.0.5). All the rules together
/// are checked in order, those of `access` first, then those of `deny`, then those of
/// `allow`: the first whose network contains the client decides, and a client that none
/// matches is refused if any rule is an allow rule, served otherwise. `max_per_address`
/// limits the connections at once from one client address (0: no limit). A refused client,
/// or one connection too many, is closed without a response, before its request is read,
/// and logged. `proxy_protocol` expects every connection to start with a PROXY protocol
/// header (v1 or v2, as HAProxy's `send-proxy` sends it): the client it names is the one
/// logged and judged by the rules, and a connection without a valid header is closed without
/// a response; turn it on only behind such a load balancer. `rate_limit` and
/// `total_rate_limit` cap the bytes a second each connection and the whole server send (0:
/// no limit); each may run ahead by a tenth of a second's worth (at least 1 KiB).
///
/// `metrics` ("IP:PORT", such as "127.0.0.1:9100" or "[::1]:9100"; port 0 picks a free one;
/// None, the default: off) also serves the server's metrics over HTTP at /metrics on that
/// address, in the OpenMetrics text format Prometheus scrapes: connections by outcome
/// (`filefetch_requests_total`), bytes sent, active connections, open-file cache hits and
/// misses, refused connections by reason, and a request duration histogram. The address is
/// logged after the listening one ("metrics on http://127.0.0.1:9100/metrics"). Anyone who
/// can reach it can read the metrics: keep it on loopback or a private network.
///
/// Blocks with the GIL released. The first time a signal handler raises (KeyboardInterrupt
/// on Ctrl-C), the server stops accepting connections and the transfers in flight get
/// `grace_period` seconds to finish (0: none); if a handler raises again meanwhile, the
/// server stops at once. Either way the exception then propagates. Raises LocalError (an
/// OSError) when the port (or the metrics' address) cannot be bound or `root` is not a
/// readable directory, and InvalidArgumentError (a ValueError) for bad arguments (a
/// `metrics` that is not an IP address and port, or on a port files are served on).
#[pyfunction]
#[pyo3(signature = (
    port, root=PathBuf::from("."), *, host=Hosts::of("0.0.0.0"),
    max_connections=Int::of(config::MAX_CONNECTIONS),
    request_timeout=Seconds::of(config::REQUEST_TIMEOUT),
    send_timeout=Seconds::of(config::SEND_TIMEOUT),
    grace_period=Seconds::of(config::GRACE_PERIOD), threads=Int::of(config::THREADS),
    file_cache=Seconds::of(config::FILE_CACHE), portable=false, proxy_protocol=false,
    allow=Strings::default(), deny=Strings::default(), access=Strings::default(),
    max_per_address=Int::of(config::MAX_PER_ADDRESS),
    rate_limit=Int::of_u64(config::RATE_LIMIT),
    total_rate_limit=Int::of_u64(config::TOTAL_RATE_LIMIT), metrics=None,
), text_signature = "(port, root='.', *, host='0.0.0.0', max_connections=10000, \
    request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0, \
    portable=False, proxy_protocol=False, allow=(), deny=(), access=(), max_per_address=0, \
    rate_limit=0, total_rate_limit=0, metrics=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve(
    py: Python<'_>,
    port: Int,
    root: PathBuf,
    host: Hosts,
    max_connections: Int,
    request_timeout: Seconds,
    send_timeout: Seconds,
    grace_period: Seconds,
    threads: Int,
    file_cache: Seconds,
    portable: bool,
    proxy_protocol: bool,
    allow: Strings,
    deny: Strings,
    access: Strings,
    max_per_address: Int,
    rate_limit: Int,
    total_rate_limit: Int,
    metrics: Option<String>,
) -> PyResult<()> {
    let shown_root = root.canonicalize().unwrap_or_else(|_| root.clone());
    let settings = Settings {
        root,
        max_connections,
        request_timeout,
        send_timeout,
        grace_period,
        threads,
        file_cache,
        portable,
        proxy_protocol,
        allow,
        deny,
        access,
        max_per_address,
        rate_limit,
        total_rate_limit,
        metrics,
    };
    let server = start(py, &host, port, settings)?;
    let handle = server.handle();
    let listening: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let serving = format!(
        "serving {} on {}",
        shown_root.display(),
        listening.join(", ")
    );
    // Like the command: the first interrupt is a graceful shutdown, the second stops at once.
    // The line is logged from here, not through `tracing`, so that an interrupt raised while
    // this thread writes it (in the logging module's Python code) is not lost. The records
    // of earlier events, queued for the logging thread, come first.
    log::flush(py);
    let mut interrupted = log::to_python(py, "filefetch::server", Level::INFO, &serving).err();
    if let (None, Some(addr)) = (&interrupted, server.metrics_addr()) {
        // As the command prints it, after the listening line.
        let metrics = format!("metrics on http://{addr}/metrics");
        interrupted = log::to_python(py, "filefetch::server", Level::INFO, &metrics).err();
    }
    if interrupted.is_some() {
        handle.shutdown();
    }
    loop {
        if py.detach(|| server.wait_timeout(SIGNAL_POLL)) {
            // Only an error ends the server on its own, unless it was shut down.
            let result = finish(py, server, Stop::Join);
            return match interrupted {
                Some(interrupt) => Err(interrupt),
                None => result,
            };
        }
        if let Err(interrupt) = py.check_signals() {
            match interrupted.take() {
                None => {
                    handle.shutdown();
                    interrupted = Some(interrupt);
                }
                Some(first) => {
                    // The exception that propagates is the latest, raised while the first
                    // was being handled.
                    let _ = finish(py, server, Stop::Abort);
                    interrupt.set_context(py, Some(first));
                    return Err(interrupt);
                }
            }
        }
    }
}

/// A server started from Python, with what `Server` and `AsyncServer` share: where it
/// listens, the handle that stops it, and the server itself until it has stopped.
struct Started {
    addrs: Vec<SocketAddr>,
    /// Where the metrics are served (the real port), if they are on.
    metrics: Option<SocketAddr>,
    /// Stops the server without the lock below.
    handle: ServerHandle,
    /// The running server; `None` once stopped and its thread taken to be joined.
    running: Mutex<Option<BackgroundServer>>,
}

/// What a slice of waiting for the server thread found.
enum Waited {
    /// The server has stopped; its thread is ours to join, unless another call took it.
    Stopped(Option<BackgroundServer>),
    /// Still running.
    Running,
}

impl Started {
    /// Binds `hosts`:`port` and starts serving, as [`start`] does.
    fn new(py: Python<'_>, hosts: &Hosts, port: Int, settings: Settings) -> PyResult<Started> {
        let server = start(py, hosts, port, settings)?;
        Ok(Started {
            addrs: server.local_addrs().to_vec(),
            metrics: server.metrics_addr(),
            handle: server.handle(),
            running: Mutex::new(Some(server)),
        })
    }

    fn running(&self) -> MutexGuard<'_, Option<BackgroundServer>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.running().is_none())
    }

    /// Stops the server at once and waits for its thread (unless another call took it).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        // First the signal, which needs no lock: a wait holding the lock then ends at once.
        self.handle.abort();
        match py.detach(|| self.running().take()) {
            Some(server) => finish(py, server, Stop::Abort),
            None => Ok(()),
        }
    }

    /// Waits, with the GIL released, until the server thread has ended (then takes and joins
    /// it, unless another call did) or a signal handler raises.
    fn wait_stopped(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let waited = py.detach(|| {
                let mut running = self.running();
                match running.as_ref() {
                    None => Waited::Stopped(None),
                    Some(server) if server.wait_timeout(SIGNAL_POLL) => {
                        Waited::Stopped(running.take())
                    }
                    Some(_) => Waited::Running,
                }
            });
            match waited {
                Waited::Stopped(Some(server)) => return finish(py, server, Stop::Join),
                Waited::Stopped(None) => return Ok(()),
                Waited::Running => py.check_signals()?,
            }
        }
    }

    /// Completes once the server thread has ended, then takes it (unless another call did):
    /// the outcome joins it. The wait is core's future; nothing blocks but the join, made by
    /// the thread handing the outcome over (the thread has ended by then).
    async fn stopped(&self) -> Option<BackgroundServer> {
        let finished = self.running().as_ref().map(BackgroundServer::finished);
        if let Some(finished) = finished {
            finished.await;
        }
        self.running().take()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        // Garbage collection holds the GIL, which the server thread may be waiting for (to
        // log): stop without joining it.
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(server) = running.take() {
            server.abort_detached();
        }
    }
}

/// The `#[pymethods]` of a server class (`Server`, `AsyncServer`, wrapping a [`Started`]):
/// what they share (the constructor with serve's settings, the addresses, the repr), then
/// the class's own `$methods`.
macro_rules! server_methods {
    ($class:ident, $methods:tt) => {
        server_methods!(@impl $class, stringify!($class), $methods);
    };
    (@impl $class:ident, $repr_name:expr, { $($methods:tt)* }) => {
        #[pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (
                port=Int::of(0), root=PathBuf::from("."), *, host=Hosts::of("127.0.0.1"),
                max_connections=Int::of(config::MAX_CONNECTIONS),
                request_timeout=Seconds::of(config::REQUEST_TIMEOUT),
                send_timeout=Seconds::of(config::SEND_TIMEOUT),
                grace_period=Seconds::of(config::GRACE_PERIOD), threads=Int::of(config::THREADS),
                file_cache=Seconds::of(config::FILE_CACHE), portable=false, proxy_protocol=false,
                allow=Strings::default(), deny=Strings::default(), access=Strings::default(),
                max_per_address=Int::of(config::MAX_PER_ADDRESS),
                rate_limit=Int::of_u64(config::RATE_LIMIT),
                total_rate_limit=Int::of_u64(config::TOTAL_RATE_LIMIT), metrics=None,
            ), text_signature = "(port=0, root='.', *, host='127.0.0.1', max_connections=10000, \
                request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, \
                file_cache=1.0, portable=False, proxy_protocol=False, allow=(), deny=(), \
                access=(), max_per_address=0, rate_limit=0, total_rate_limit=0, \
                metrics=None)")]
            #[allow(clippy::too_many_arguments)]
            fn new(
                py: Python<'_>,
                port: Int,
                root: PathBuf,
                host: Hosts,
                max_connections: Int,
                request_timeout: Seconds,
                send_timeout: Seconds,
                grace_period: Seconds,
                threads: Int,
                file_cache: Seconds,
                portable: bool,
                proxy_protocol: bool,
                allow: Strings,
                deny: Strings,
                access: Strings,
                max_per_address: Int,
                rate_limit: Int,
                total_rate_limit: Int,
                metrics: Option<String>,
            ) -> PyResult<Self> {
                let settings = Settings {
                    root,
                    max_connections,
                    request_timeout,
                    send_timeout,
                    grace_period,
                    threads,
                    file_cache,
                    portable,
                    proxy_protocol,
                    allow,
                    deny,
                    access,
                    max_per_address,
                    rate_limit,
                    total_rate_limit,
                    metrics,
                };
                Started::new(py, &host, port, settings).map($class)
            }

            /// The port the server listens on (the real one when 0 was asked for).
            #[getter]
            fn port(&self) -> u16 {
                self.0.addrs[0].port()
            }

            /// The (host, port) the server listens on, as socket.getsockname() gives it; the
            /// first of `addresses` when it listens on several.
            #[getter]
            fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
                let addr = self.0.addrs[0];
                (addr.ip().to_string(), addr.port()).into_pyobject(py)
            }

            /// Every (host, port) the server listens on.
            #[getter]
            fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
                let addrs = self.0.addrs.iter().map(|a| (a.ip().to_string(), a.port()));
                PyList::new(py, addrs)
            }

            /// The (host, port) the metrics are served on over HTTP, at /metrics (the real
            /// port when 0 was asked for), as `address` gives the server's; None when the
            /// server was started without `metrics`.
            #[getter]
            fn metrics_address<'py>(
                &self,
                py: Python<'py>,
            ) -> PyResult<Option<Bound<'py, PyTuple>>> {
                self.0
                    .metrics
                    .map(|addr| (addr.ip().to_string(), addr.port()).into_pyobject(py))
                    .transpose()
            }

            fn __repr__(&self, py: Python<'_>) -> String {
                let state = if self.0.closed(py) { " closed" } else { "" };
                format!("<filefetch.{} {}{state}>", $repr_name, self.0.addrs[0])
            }

            $($methods)*
        }
    };
}

/// A file server running in the background, for tests and embedding.
///
/// Serves the files under `root` on `host`:`port` (by default 127.0.0.1, on any free port;
/// see `.port`) from threads of its own, so the caller carries on at once. `host` may be a
/// sequence of addresses to listen on them all (see `.addresses`). The other arguments are as
/// for serve; with `metrics` ("127.0.0.1:0": any free port), `.metrics_address` is where the
/// metrics are served. shutdown() stops it gracefully: no new connections, and the transfers
/// in flight get `grace_period` seconds to finish. close() stops it at once (the core's
/// abort), cutting them, and so does leaving a `with` block; garbage collection stops it at
/// once too, without waiting for its threads.
#[pyclass(frozen, module = "filefetch", name = "Server")]
pub(crate) struct Server(Started);

server_methods!(Server, {
    /// True once the server has stopped and its threads have ended: after close(), or once
    /// shutdown() has returned.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.0.closed(py)
    }

    /// Stop serving at once (the core's abort: transfers in flight are cut) and wait for the
    /// server's threads. Calling it again does nothing. From another thread, it cuts a
    /// shutdown() short.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.0.close(py)
    }

    /// Stop gracefully: stop accepting connections at once, let the transfers in flight
    /// finish within `grace_period` seconds (those still running then are cut), and wait for
    /// the server's threads.
    ///
    /// Waits with the GIL released. If a signal handler raises meanwhile (KeyboardInterrupt
    /// on Ctrl-C), the server stops at once and the exception propagates. Calling it again,
    /// or after close(), does nothing.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        self.0.handle.shutdown();
        let result = self.0.wait_stopped(py);
        if result.is_err() {
            // Interrupted: stop at once. (After an error of the server itself, it is
            // stopped already and this does nothing.)
            let _ = self.0.close(py);
        }
        result
    }

    /// Block until the server has stopped (close() or shutdown() from another thread) or a
    /// signal handler raises, as KeyboardInterrupt does on Ctrl-C; the exception propagates
    /// and the server keeps running until closed.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        self.0.wait_stopped(py)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the server at once, as close() does: transfers in flight are cut (call
    /// shutdown() in the block to let them finish first). Exceptions propagate.
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Bound<'_, PyAny>,
        exc_value: Bound<'_, PyAny>,
        traceback: Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let _ = (exc_type, exc_value, traceback);
        self.0.close(py)?;
        Ok(false)
    }
});

/// A file server running in the background, for asyncio programs: Server's twin.
///
/// Takes Server's arguments, with the same defaults (`metrics` too: see `.metrics_address`),
/// and binds at once (raising as Server does). The server runs on threads of its own, as
/// Server's does; what is awaited is its stopping, which never blocks the event loop. `async
/// with` returns the server and, at the end of the block, stops it at once (as aclose()
/// does). `await shutdown()` stops it gracefully: no new connections, and the transfers in
/// flight get `grace_period` seconds to finish; cancelling it stops the server at once.
/// close() stops it at once and waits for its threads without awaiting (they end within
/// milliseconds of the stop); aclose() does the same as a coroutine. Garbage collection stops
/// it at once.
#[pyclass(frozen, module = "filefetch", name = "AsyncServer")]
pub(crate) struct AsyncServer(Started);

/// What a wait for the server to stop does when its coroutine is cancelled.
#[derive(Clone, Copy)]
enum WhenCancelled {
    /// Stops the server at once, and goes on waiting (a few milliseconds).
    Abort,
    /// Stops waiting; the server goes on.
    Leave,
}

impl AsyncServer {
    /// The coroutine `AsyncServer.<method>`: `first` (a stop signal to the server, or none),
    /// then a wait for the server's end on core's future, no thread waiting; its result is
    /// `result`, or the error the server ended with.
    fn wait<'py, T>(
        slf: &Bound<'py, Self>,
        method: &str,
        first: impl FnOnce(&ServerHandle) + Send + 'static,
        cancelled: WhenCancelled,
        result: T,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let server = slf.clone().unbind();
        let handle = slf.get().0.handle.clone();
        let on_cancel = match cancelled {
            WhenCancelled::Abort => {
                let handle = handle.clone();
                OnCancel::Call(Box::new(move || handle.abort()))
            }
            WhenCancelled::Leave => OnCancel::Drop,
        };
        let fut = async move {
            first(&handle);
            let ended = server.get().0.stopped().await;
            Box::new(move |py: Python<'_>| {
                if let Some(ended) = ended {
                    finish(py, ended, Stop::Join)?;
                }
                result.into_py_any(py)
            }) as Outcome
        };
        let name = format!("AsyncServer.{method}");
        aio::coroutine(slf.py(), &name, fut, on_cancel, async {})
    }
}

server_methods!(AsyncServer, {
    /// True once the server has stopped and its threads have ended: after close(), or once
    /// an awaited shutdown() or aclose() has returned.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        self.0.closed(py)
    }

    /// Stop serving at once (transfers in flight are cut) and wait for the server's threads,
    /// which end within milliseconds. Calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.0.close(py)
    }

    /// Stop serving at once (transfers in flight are cut); completes once the server's
    /// threads have ended. Calling it again does nothing.
    fn aclose<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        AsyncServer::wait(slf, "aclose", ServerHandle::abort, WhenCancelled::Abort, ())
    }

    /// Stop gracefully: stop accepting connections at once, let the transfers in flight
    /// finish within `grace_period` seconds (those still running then are cut); completes
    /// once the server's threads have ended. Cancelling it stops the server at once (and
    /// CancelledError propagates once it has stopped). Calling it again, or after close(),
    /// does nothing.
    fn shutdown<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let shutdown = ServerHandle::shutdown;
        AsyncServer::wait(slf, "shutdown", shutdown, WhenCancelled::Abort, ())
    }

    /// Complete once the server has stopped (close(), aclose() or shutdown(), from another
    /// task or thread). Cancelling it leaves the server running.
    fn serve_forever<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        AsyncServer::wait(slf, "serve_forever", |_| {}, WhenCancelled::Leave, ())
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let server = slf.clone().unbind();
        let fut = async move { aio::ready(server) };
        aio::coroutine(
            slf.py(),
            "AsyncServer.__aenter__",
            fut,
            OnCancel::Drop,
            async {},
        )
    }

    /// Closes the server at once, as aclose() does: transfers in flight are cut (await
    /// shutdown() in the block to let them finish first). Exceptions propagate.
    fn __aexit__<'py>(
        slf: &Bound<'py, Self>,
        exc_type: Bound<'py, PyAny>,
        exc_value: Bound<'py, PyAny>,
        traceback: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let _ = (exc_type, exc_value, traceback);
        let abort = ServerHandle::abort;
        AsyncServer::wait(slf, "__aexit__", abort, WhenCancelled::Abort, false)
    }
});
