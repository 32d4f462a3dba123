//! The server: an event-driven (tokio) listener serving many clients at once.
//!
//! Each connection gets one request: the whole FileRequest must arrive within the request
//! deadline counted from accept; the name is checked and opened beneath the root; the
//! response goes out with the header sharing the first write with the data. A connection
//! limit bounds what a flood can cost; past it, new connections wait in the listen backlog.
//! Every connection ends with one log line through `tracing`.
//!
//! - `config`: the settings and their builder;
//! - this module: binding, the accept loops, the connection limit, the life cycle
//!   ([`Server`], [`BackgroundServer`], [`ServerHandle`]); `waiting`: on Linux, the accept
//!   loop of a socket the server bound itself, waiting in `accept` on a thread of its own;
//! - `exchange`: one connection, from the request to the log line;
//! - `confine`: names and opening them beneath the root; `cache`: files kept open;
//! - `send`: the response's paths to the socket; `socket`: the accepted socket;
//! - `proxy`: the PROXY protocol header a load balancer may put before the request;
//! - `access`: who may connect (access rules, connections per address); `pace`: rate
//!   limits; `activation`: listening sockets handed over by systemd;
//! - `metrics`: the counters, gauges and histogram of the server, and the HTTP endpoint
//!   that serves them.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

mod access;
mod access_log;
#[cfg(unix)]
mod activation;
mod cache;
mod config;
pub mod confine;
mod exchange;
mod metrics;
mod pace;
mod proxy;
mod send;
mod socket;
#[cfg(feature = "object-store")]
mod store;
#[cfg(target_os = "linux")]
mod waiting;

pub use access::{AccessRule, Cidr};
pub use access_log::{access_enabled, AccessEntry, AccessLog, ACCESS_TARGET};
#[cfg(unix)]
pub use activation::systemd_listeners;
pub use config::{ServerConfig, ServerConfigBuilder};

use access::PerAddress;
use cache::{FileCache, CAPACITY as CACHE_CAPACITY};
use confine::{Resolver, Root};
use exchange::{connection, Ctx, Source};
use metrics::Metrics;

use crate::error::{Error, Result};
use crate::sys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Draining,
    Stopped,
}

/// Stops a [`Server`] from another thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    state: Arc<watch::Sender<State>>,
}

impl ServerHandle {
    /// Stops accepting; transfers in flight may finish within the grace period.
    pub fn shutdown(&self) {
        self.state.send_if_modified(|s| {
            let change = *s == State::Running;
            if change {
                *s = State::Draining;
            }
            change
        });
    }

    /// Stops at once, cutting transfers in flight.
    pub fn abort(&self) {
        self.state.send_replace(State::Stopped);
    }
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    /// The listening sockets were bound here, not handed over: no one else has them.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    own_listeners: bool,
    addrs: Vec<SocketAddr>,
    config: ServerConfig,
    /// Connections handled at once: the configured limit, or fewer if the process's
    /// descriptor limit allows fewer.
    connection_limit: usize,
    ctx: Ctx,
    handle: ServerHandle,
    /// The metrics' listening socket and its address, if metrics are on.
    metrics: Option<(std::net::TcpListener, SocketAddr)>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
            .field("metrics_addr", &self.metrics_addr())
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// Binds one address (port 0 picks a free port). `[::]` listens on IPv6 and IPv4 both.
    pub fn bind(addr: SocketAddr, config: ServerConfig) -> Result<Server> {
        Self::bind_all(&[addr], config)
    }

    /// Binds every address given; the server listens on all of them.
    pub fn bind_all(addrs: &[SocketAddr], config: ServerConfig) -> Result<Server> {
        if addrs.is_empty() {
            return Err(no_listener());
        }
        let source = open_source(&config)?;
        let mut listeners = Vec::with_capacity(addrs.len());
        let mut bound = Vec::with_capacity(addrs.len());
        for &addr in addrs {
            let listener = listen(addr).map_err(|source| Error::Bind { addr, source })?;
            bound.push(
                listener
                    .local_addr()
                    .map_err(|source| Error::Bind { addr, source })?,
            );
            listeners.push(listener);
        }
        let metrics = listen_metrics(&config, &bound)?;
        let mut server = Self::with_listeners(listeners, bound, source, config, metrics);
        server.own_listeners = true;
        Ok(server)
    }

    /// Serves on listening sockets opened elsewhere: by a service manager (see
    /// [`systemd_listeners`]), or by the caller. They are used as they are (their address,
    /// backlog and IPv6-only setting stay); the server makes them non-blocking and sets on
    /// them what it sets on its own (`TCP_NODELAY`, and on Linux delayed acknowledgements
    /// for the connections accepted).
    pub fn from_listeners(
        listeners: Vec<std::net::TcpListener>,
        config: ServerConfig,
    ) -> Result<Server> {
        if listeners.is_empty() {
            return Err(no_listener());
        }
        let source = open_source(&config)?;
        let mut bound = Vec::with_capacity(listeners.len());
        for listener in &listeners {
            let io = |source| Error::Io { path: None, source };
            bound.push(listener.local_addr().map_err(io)?);
            adopt(listener).map_err(io)?;
        }
        let metrics = listen_metrics(&config, &bound)?;
        Ok(Self::with_listeners(
            listeners, bound, source, config, metrics,
        ))
    }

    /// The server for `listeners` (listening at `bound`), serving from `source`, with its
    /// metrics listening on `metrics` if they are on.
    fn with_listeners(
        listeners: Vec<std::net::TcpListener>,
        bound: Vec<SocketAddr>,
        source: Source,
        config: ServerConfig,
        metrics: Option<(std::net::TcpListener, SocketAddr)>,
    ) -> Server {
        let (cache_capacity, connection_limit) =
            descriptor_budget(config.max_connections(), sys::descriptor_limit());
        if connection_limit < config.max_connections() {
            tracing::debug!(
                "the open file limit ({}) allows {connection_limit} connections at once",
                sys::descriptor_limit().unwrap_or(0)
            );
        }
        let counters = metrics.as_ref().map(|_| Arc::new(Metrics::new()));
        let mut files = FileCache::new(
            if sys::CAN_REPLACE_OPEN_FILES {
                config.file_cache()
            } else {
                Duration::ZERO
            },
            cache_capacity,
        );
        if let Some(counters) = &counters {
            let (hits, misses) = counters.cache_counters();
            files = files.counting(hits, misses);
        }
        let ctx = Ctx {
            source,
            files,
            request_timeout: config.request_timeout(),
            send_timeout: config.send_timeout(),
            resolver: if config.portable() {
                Resolver::Portable
            } else {
                Resolver::Native
            },
            paths: send::Paths::new(config.portable()),
            proxy_protocol: config.proxy_protocol(),
            access_rules: config.access_rules().to_vec(),
            per_address: (config.max_per_address() > 0)
                .then(|| Arc::new(PerAddress::new(config.max_per_address()))),
            rate_limit: config.rate_limit(),
            total_rate: (config.total_rate_limit() > 0)
                .then(|| pace::Shared::new(config.total_rate_limit())),
            metrics: counters,
            access_log: None,
        };
        let (state, _) = watch::channel(State::Running);
        Server {
            listeners,
            own_listeners: false,
            addrs: bound,
            config,
            connection_limit,
            ctx,
            handle: ServerHandle {
                state: Arc::new(state),
            },
            metrics,
        }
    }

    /// The first address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where the metrics are served (with the real port), if they are on (see
    /// [`ServerConfigBuilder::metrics`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|&(_, addr)| addr)
    }

    /// How many connections the server handles at once: the configured limit, or fewer if
    /// the process's open file limit allows fewer (each connection takes a socket and a file;
    /// more wait in the listen backlog).
    pub fn connection_limit(&self) -> usize {
        self.connection_limit
    }

    /// Hands the line of each connection to `log` instead of logging it as a `tracing`
    /// event (see [`AccessLog`]).
    pub fn access_log(mut self, log: Arc<dyn AccessLog>) -> Server {
        self.ctx.access_log = Some(log);
        self
    }

    /// A handle to stop the server from another thread.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Serves until [`ServerHandle::shutdown`] or [`ServerHandle::abort`] is called.
    ///
    /// The server runs its own multi-threaded runtime, so this blocks the calling thread and
    /// must not be called from inside an async runtime; use [`Server::spawn`] there.
    pub fn run(self) -> Result<()> {
        let threads = match self.config.threads() {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("filefetch-server")
            .on_thread_start(sys::block_sigpipe)
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| Error::Io { path: None, source })?;
        let result = runtime.block_on(self.serve(threads));
        // Connections still running after the grace period are dropped here; the worker
        // threads are joined, so none outlives the server (a library may be unloaded next).
        runtime.shutdown_timeout(Duration::from_secs(5));
        result
    }

    /// Runs the server on a background thread; the returned value stops it when dropped.
    pub fn spawn(self) -> Result<BackgroundServer> {
        let addrs = self.addrs.clone();
        let metrics_addr = self.metrics_addr();
        let handle = self.handle();
        let ended = Arc::new(Ended::default());
        let on_exit = SetOnDrop(ended.clone());
        let thread = std::thread::Builder::new()
            .name("filefetch-server".into())
            .spawn(move || {
                let _on_exit = on_exit;
                self.run()
            })
            .map_err(|source| Error::Io { path: None, source })?;
        Ok(BackgroundServer {
            addrs,
            metrics_addr,
            handle,
            ended,
            thread: Some(thread),
        })
    }

    /// Serves with `acceptors` accept loops per listening socket (one per worker thread), or
    /// on Linux, for the sockets bound here, one waiting in `accept` (see `waiting`).
    async fn serve(self, acceptors: usize) -> Result<()> {
        // More than u32::MAX connections at once is beyond any system; the cap keeps the
        // semaphore (and the drain below, which takes every permit back) within range.
        let limit = self.connection_limit;
        let permits = Arc::new(Semaphore::new(limit));
        let ctx = Arc::new(self.ctx);
        let mut state = self.handle.state.subscribe();
        let mut accepting = JoinSet::new();
        #[cfg(target_os = "linux")]
        let mut waiting = waiting::Threads::new();
        let io = |source| Error::Io { path: None, source };
        let started = async {
            for listener in self.listeners {
                #[cfg(target_os = "linux")]
                if self.own_listeners {
                    listener.set_nonblocking(false).map_err(io)?;
                    let state = self.handle.state.subscribe();
                    waiting
                        .start(listener, ctx.clone(), permits.clone(), state)
                        .map_err(io)?;
                    continue;
                }
                let listener = Arc::new(sys::Listener::new(listener).map_err(io)?);
                for _ in 0..acceptors.max(1) {
                    accepting.spawn(accept_loop(listener.clone(), ctx.clone(), permits.clone()));
                }
            }
            if !ctx.files.ttl().is_zero() {
                accepting.spawn(sweep_files(ctx.clone()));
            }
            // The metrics listen as long as the server accepts: aborted with the accept
            // loops, the task closes its socket and drops the scrapes under way.
            if let (Some((listener, _)), Some(counters)) = (self.metrics, &ctx.metrics) {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(io)?;
                accepting.spawn(metrics::serve(
                    listener,
                    counters.clone(),
                    self.config.request_timeout(),
                    self.config.send_timeout(),
                ));
            }
            Ok(())
        }
        .await;
        if let Err(e) = started {
            // What did start stops before the error is told: no thread is left waiting in
            // `accept` on a socket that nothing will close.
            #[cfg(target_os = "linux")]
            waiting.stop().await;
            accepting.abort_all();
            while accepting.join_next().await.is_some() {}
            return Err(e);
        }
        let stop = match state.wait_for(|s| *s != State::Running).await {
            Ok(s) => *s,
            Err(_) => State::Stopped,
        };
        // Close the listening sockets before waiting for the transfers in flight: new
        // connections are refused from here on.
        #[cfg(target_os = "linux")]
        waiting.stop().await;
        accepting.abort_all();
        while accepting.join_next().await.is_some() {}
        if stop == State::Draining {
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            let drained = permits.acquire_many(all);
            let aborted = state.wait_for(|s| *s == State::Stopped);
            let _ = timeout(self.config.grace_period(), async {
                tokio::select! {
                    _ = drained => {}
                    _ = aborted => {}
                }
            })
            .await;
        }
        Ok(())
    }
}

/// A server running on its own thread (see [`Server::spawn`]). Dropping it stops the server
/// at once and waits for the thread.
///
/// Stopping has two words throughout: [`shutdown`](BackgroundServer::shutdown) is graceful
/// (no new connections; transfers in flight get the grace period), and
/// [`abort`](BackgroundServer::abort) is at once.
#[derive(Debug)]
pub struct BackgroundServer {
    addrs: Vec<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    handle: ServerHandle,
    ended: Arc<Ended>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl BackgroundServer {
    /// The first address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Where the metrics are served, if they are on (see [`ServerConfigBuilder::metrics`]).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// A handle to stop the server from anywhere.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// True once the server thread has ended: after a stop, or on its own after an error.
    pub fn is_finished(&self) -> bool {
        self.ended.is_set()
    }

    /// Waits until the server thread has ended or `limit` has passed; true if it has ended.
    pub fn wait_timeout(&self, limit: Duration) -> bool {
        self.ended.wait(limit)
    }

    /// Completes once the server thread has ended (when [`is_finished`] turns true): the
    /// end of a stop, or of an error, awaited on any executor without a thread waiting. The
    /// future borrows nothing and may outlive `self`; [`join`] then returns at once, with
    /// how the server ended.
    ///
    /// [`is_finished`]: BackgroundServer::is_finished
    /// [`join`]: BackgroundServer::join
    pub fn finished(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut ended = self.ended.announced.subscribe();
        async move {
            // Closed, every sender gone, only after the thread's end was announced.
            let _ = ended.wait_for(|ended| *ended).await;
        }
    }

    /// Stops gracefully (transfers in flight may finish within the grace period) and waits.
    pub fn shutdown(mut self) -> Result<()> {
        self.handle.shutdown();
        self.join_thread()
    }

    /// Stops at once, cutting transfers in flight, and waits for the server thread.
    pub fn abort(mut self) -> Result<()> {
        self.handle.abort();
        self.join_thread()
    }

    /// Waits for the server to stop (through a [`ServerHandle`], or on an error) and returns
    /// how it ended.
    pub fn join(mut self) -> Result<()> {
        self.join_thread()
    }

    /// Stops at once without waiting: the server thread ends on its own shortly after. For
    /// callers that must not block (a garbage collector, a signal handler's thread).
    pub fn abort_detached(mut self) {
        self.handle.abort();
        self.thread.take();
    }

    fn join_thread(&mut self) -> Result<()> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(Error::Io {
                    path: None,
                    source: std::io::Error::other("server thread panicked"),
                })
            }),
            None => Ok(()),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        self.handle.abort();
        let _ = self.join_thread();
    }
}

/// Set once a server thread has ended, however it ended, so that it can be waited for with a
/// time limit, or awaited.
#[derive(Debug, Default)]
struct Ended {
    ended: Mutex<bool>,
    changed: Condvar,
    /// The same, for futures.
    announced: watch::Sender<bool>,
}

impl Ended {
    fn set(&self) {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
        self.announced.send_replace(true);
    }

    fn is_set(&self) -> bool {
        *self.ended.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait(&self, limit: Duration) -> bool {
        let ended = self.ended.lock().unwrap_or_else(PoisonError::into_inner);
        let (ended, _) = self
            .changed
            .wait_timeout_while(ended, limit, |ended| !*ended)
            .unwrap_or_else(PoisonError::into_inner);
        *ended
    }
}

/// Sets [`Ended`] when dropped: as the server thread returns or unwinds.
struct SetOnDrop(Arc<Ended>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// Descriptors kept for what is not a connection: the listening sockets, the event loop,
/// the standard streams, a log file, and some for the program the server runs in.
const RESERVED_DESCRIPTORS: u64 = 16;

/// The open-file cache's capacity and the connection limit, within the descriptors the
/// process may have open (`limit`, `None` for no limit): each connection takes two (its
/// socket and its file), the cache one per file it keeps (at most an eighth of what is
/// left), and a few are kept for everything else. The connection limit is the configured
/// one (at least 1, at most `u32::MAX`) unless that is more than the descriptors allow.
fn descriptor_budget(max_connections: usize, limit: Option<u64>) -> (usize, usize) {
    let wanted = max_connections.clamp(1, u32::MAX as usize);
    let Some(limit) = limit else {
        return (CACHE_CAPACITY, wanted);
    };
    let usable = limit.saturating_sub(RESERVED_DESCRIPTORS);
    let cache = usize::try_from(usable / 8).map_or(CACHE_CAPACITY, |c| c.min(CACHE_CAPACITY));
    let for_connections = usable.saturating_sub(cache as u64) / 2;
    let connections = usize::try_from(for_connections).map_or(wanted, |c| c.clamp(1, wanted));
    (cache, connections)
}

/// The directory or object store the configuration's root names.
fn open_source(config: &ServerConfig) -> Result<Source> {
    #[cfg(feature = "object-store")]
    {
        if let Some((store, prefix)) = config.object_store() {
            return Ok(Source::Store(store::Store::with(store.clone(), prefix)));
        }
        if let Some(url) = config.root().to_str().filter(|r| store::is_store_url(r)) {
            return Ok(Source::Store(store::Store::open(url)?));
        }
    }
    #[cfg(not(feature = "object-store"))]
    {
        let named = config.root().to_string_lossy();
        if ["s3://", "file://", "memory://"]
            .iter()
            .any(|s| named.starts_with(s))
        {
            return Err(Error::invalid(
                "root",
                format!("{named}: object-store roots need the `object-store` feature"),
            ));
        }
    }
    let root = Root::new(config.root()).map_err(|e| Error::io(config.root(), e))?;
    Ok(Source::Dir(root))
}

/// Listens on the metrics' address, if they are on; `serving` are the addresses files are
/// served on, which the metrics may not share.
fn listen_metrics(
    config: &ServerConfig,
    serving: &[SocketAddr],
) -> Result<Option<(std::net::TcpListener, SocketAddr)>> {
    let Some(addr) = config.metrics() else {
        return Ok(None);
    };
    if let Some(clash) = serving.iter().find(|&&s| same_port(addr, s)) {
        return Err(Error::invalid(
            "metrics",
            format!("{addr}: files are served on {clash}; the metrics need a port of their own"),
        ));
    }
    let failed = |e: std::io::Error| Error::Bind {
        addr,
        source: std::io::Error::new(e.kind(), format!("metrics endpoint: {e}")),
    };
    let listener = listen(addr).map_err(failed)?;
    let bound = listener.local_addr().map_err(failed)?;
    Ok(Some((listener, bound)))
}

/// Whether listening on `a` would take a port that `b` listens on: the same port (not 0),
/// on the same address or where either takes every address of its family (or `[::]`, of
/// both families).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    let every = |x: SocketAddr, y: SocketAddr| {
        x.ip().is_unspecified() && (x.is_ipv6() || x.is_ipv4() == y.is_ipv4())
    };
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || every(a, b) || every(b, a))
}

fn no_listener() -> Error {
    Error::Io {
        path: None,
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on"),
    }
}

/// Sets on a listening socket opened elsewhere what [`listen`] sets on the server's own.
fn adopt(listener: &std::net::TcpListener) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let socket = socket2::SockRef::from(listener);
    // Handed on to accepted sockets on Linux; set on each accepted one elsewhere anyway.
    let _ = socket.set_tcp_nodelay(true);
    sys::start_with_delayed_acks(&socket);
    Ok(())
}

pub(super) fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // Like the original server: a restart can reuse the port at once (where that is all the
    // option does; not on Windows).
    sys::set_reuse_address(&socket)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // "[::]" means every address, IPv4 ones included, whatever the system default.
        let _ = socket.set_only_v6(false);
    }
    // Responses leave in as few writes as possible, so Nagle's algorithm only delays the
    // last partial segment of a large file. Linux hands the option on to accepted sockets.
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    // Accepted connections start with delayed acknowledgement where the system allows, so
    // the response itself acknowledges the request. A request that arrives in pieces is
    // acknowledged at once instead (see `exchange`).
    sys::start_with_delayed_acks(&socket);
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

async fn accept_loop(listener: Arc<sys::Listener>, ctx: Arc<Ctx>, permits: Arc<Semaphore>) {
    let mut last_warning: Option<Instant> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((sock, peer)) => {
                let connection = connection(sock.into(), peer, ctx.clone(), permit, Instant::now());
                start(connection).await;
            }
            Err(e) => sleep(accept_failed(&e, &mut last_warning)).await,
        }
    }
}

/// After `accept` failed for want of descriptors or memory: says so (at most once a second)
/// and tells how long to wait before trying again, so that a full table does not spin the
/// loop. The server keeps serving.
fn accept_failed(error: &std::io::Error, last_warning: &mut Option<Instant>) -> Duration {
    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        tracing::warn!(error = %error, "accept failed; retrying");
        *last_warning = Some(Instant::now());
    }
    Duration::from_millis(50)
}

/// Closes the cached files whose time is up, every cache lifetime.
async fn sweep_files(ctx: Arc<Ctx>) {
    loop {
        sleep(ctx.files.ttl()).await;
        ctx.files.sweep(Instant::now());
    }
}

/// Runs a connection right here for as long as it needs no waiting, which is all of it for
/// a small file; whatever has to wait (a slow client, a large file) goes on as a task of its
/// own, so the accept loop never waits on a client.
async fn start(connection: impl Future<Output = ()> + Send + 'static) {
    let mut connection = Box::pin(connection);
    let done = std::future::poll_fn(|cx| {
        // A panic ends this connection only, as it would in a task of its own; the accept
        // loop goes on.
        let poll = panic::catch_unwind(AssertUnwindSafe(|| connection.as_mut().poll(cx)));
        Poll::Ready(poll.map_or(true, |p| p.is_ready()))
    })
    .await;
    if !done {
        tokio::spawn(connection);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn the_budget_fits_the_descriptor_limit() {
        // No limit: as configured.
        assert_eq!(descriptor_budget(10_000, None), (CACHE_CAPACITY, 10_000));
        // Plenty: as configured, the whole cache.
        assert_eq!(
            descriptor_budget(10_000, Some(1_048_576)),
            (CACHE_CAPACITY, 10_000)
        );
        // A common default: the cache and two descriptors a connection fit.
        let (cache, connections) = descriptor_budget(10_000, Some(1024));
        assert_eq!((cache, connections), (126, 441));
        assert!(cache as u64 + 2 * connections as u64 + RESERVED_DESCRIPTORS <= 1024);
        // Scarce: still at least one connection, and no cache to hold descriptors.
        assert_eq!(descriptor_budget(10_000, Some(64)), (6, 21));
        assert_eq!(descriptor_budget(10_000, Some(10)), (0, 1));
        assert_eq!(descriptor_budget(10_000, Some(0)), (0, 1));
        // Never more than asked, never zero, never past u32::MAX.
        assert_eq!(descriptor_budget(5, Some(1024)).1, 5);
        assert_eq!(descriptor_budget(0, Some(1024)).1, 1);
        assert_eq!(descriptor_budget(usize::MAX, None).1, u32::MAX as usize);
    }
}

#[cfg(test)]
mod metrics_listener_tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_metrics_may_not_take_a_served_port() {
        assert!(same_port(addr("127.0.0.1:5000"), addr("127.0.0.1:5000")));
        assert!(same_port(addr("0.0.0.0:5000"), addr("127.0.0.1:5000")));
        assert!(same_port(addr("127.0.0.1:5000"), addr("0.0.0.0:5000")));
        assert!(same_port(addr("[::]:5000"), addr("127.0.0.1:5000")));
        assert!(same_port(addr("[::1]:5000"), addr("[::]:5000")));
        assert!(!same_port(addr("127.0.0.1:5001"), addr("127.0.0.1:5000")));
        assert!(!same_port(addr("127.0.0.2:5000"), addr("127.0.0.1:5000")));
        assert!(!same_port(addr("0.0.0.0:5000"), addr("[::1]:5000")));
        // Port 0 is a free port, never one taken.
        assert!(!same_port(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }

    #[test]
    fn binding_fails_on_a_served_port_or_one_taken() {
        let root = tempfile::tempdir().unwrap();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_addr = taken.local_addr().unwrap();
        let config = ServerConfig::builder()
            .root(root.path())
            .metrics(taken_addr)
            .build()
            .unwrap();
        let err = Server::bind(addr("127.0.0.1:0"), config.clone()).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, Error::Bind { addr, .. } if addr == taken_addr),
            "{message}"
        );
        assert!(message.contains(&taken_addr.to_string()), "{message}");
        assert!(message.contains("metrics"), "{message}");
        // The port files are served on.
        let err = Server::from_listeners(vec![taken], config).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    option: "metrics",
                    ..
                }
            ),
            "{err}"
        );
    }
}

#[cfg(test)]
mod listener_tests {
    use super::*;

    #[test]
    fn serves_on_listeners_opened_elsewhere() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"adopted").unwrap();
        let config = || ServerConfig::builder().root(root.path()).build().unwrap();
        assert!(Server::from_listeners(Vec::new(), config()).is_err());
        // A blocking listener, as std makes it: the server makes it non-blocking.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::from_listeners(vec![listener], config()).unwrap();
        assert_eq!(server.local_addrs(), [addr]);
        let server = server.spawn().unwrap();
        let got = crate::fetch_bytes(
            "127.0.0.1",
            addr.port(),
            "a.txt",
            &crate::FetchOptions::new(),
        );
        assert_eq!(got.unwrap(), b"adopted");
        server.abort().unwrap();
    }
}

#[cfg(test)]
mod finished_tests {
    use super::*;

    /// Longer than any stop takes; reached only when something is broken.
    const PATIENCE: Duration = Duration::from_secs(30);

    fn spawned(root: &std::path::Path) -> BackgroundServer {
        let config = ServerConfig::builder().root(root).build().unwrap();
        Server::bind("127.0.0.1:0".parse().unwrap(), config)
            .unwrap()
            .spawn()
            .unwrap()
    }

    #[test]
    fn finished_completes_when_the_server_thread_ends() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.txt"), b"served").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();

        // Pending while the server serves; complete once a stop has ended it.
        let server = spawned(root.path());
        let port = server.local_addr().port();
        let finished = server.finished();
        let mut finished = std::pin::pin!(finished);
        runtime.block_on(async {
            let waited = timeout(Duration::from_millis(100), finished.as_mut()).await;
            assert!(waited.is_err(), "finished before any stop");
        });
        let got = crate::fetch_bytes("127.0.0.1", port, "a.txt", &crate::FetchOptions::new());
        assert_eq!(got.unwrap(), b"served");
        server.handle().shutdown();
        runtime.block_on(async {
            let waited = timeout(PATIENCE, finished.as_mut()).await;
            assert!(waited.is_ok(), "not finished after a shutdown");
        });
        assert!(server.is_finished());
        // Made after the end, it is complete at once; and the server ended well.
        runtime.block_on(async {
            assert!(timeout(PATIENCE, server.finished()).await.is_ok());
        });
        server.join().unwrap();

        // A future outlives its server: dropping the server stops it, which completes it.
        let server = spawned(root.path());
        let finished = server.finished();
        drop(server);
        runtime.block_on(async {
            assert!(timeout(PATIENCE, finished).await.is_ok());
        });
    }
}
