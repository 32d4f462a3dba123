//! The server: an event-driven (tokio) listener serving many clients at once.
//!
//! Each connection gets one request: the whole FileRequest must arrive within the request
//! deadline counted from accept; the name is checked and opened beneath the root; the
//! response goes out with the header sharing the first write with the data. A connection
//! limit bounds what a flood can cost; past it, new connections wait in the listen backlog.
//! Every connection ends with one log line through `tracing`.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::task::Poll;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, timeout_at};

use crate::cache::{FileCache, CAPACITY as CACHE_CAPACITY};
use crate::confine::{check_name, OpenError, Resolver, Root};
use crate::conn::Sock;
use crate::error::{Error, Result};
use crate::protocol::{DecodeError, RequestHeader, MAX_NAME_LEN, REQUEST_HEADER_LEN};
use crate::send::{send_file, send_not_found, SendError};
use crate::sys;

/// How a server behaves. Build with [`ServerConfig::new`] and the setters.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Directory files are served from (the working directory by default).
    pub root: PathBuf,
    /// Most connections handled at once; more wait in the listen backlog (10,000 default;
    /// taken as at least 1 and at most `u32::MAX`).
    pub max_connections: usize,
    /// The whole FileRequest must arrive within this time from accept (1 s default).
    pub request_timeout: Duration,
    /// A client that reads nothing for this long is dropped (10 s default).
    pub send_timeout: Duration,
    /// On a graceful shutdown, how long transfers in flight may take to finish (10 s default).
    pub grace_period: Duration,
    /// Worker threads; 0 means one per CPU core.
    pub threads: usize,
    /// Use the portable code paths (component walk instead of `openat2`, read/write instead
    /// of `sendfile`) even where the fast ones exist.
    pub portable: bool,
    /// How long a small file (64 KiB or less) stays open for reuse by the next requests of
    /// the same name (1 s default; zero opens every file afresh). The name is looked up again
    /// at every request, so a file deleted, renamed away or replaced is noticed at once, and
    /// sizes are measured each time; only a permission change can take this long to be seen. While open, a file unchanged
    /// for 3 s also has its response kept in memory (8 MiB at most over all files), checked
    /// against the file's size and times at every request; a change that leaves the times
    /// alone (a write through a shared memory mapping) can go unseen for this long. On Windows files are never kept
    /// open between requests (a file held open there cannot be replaced by a rename), so
    /// this setting has no effect.
    pub file_cache: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            root: PathBuf::from("."),
            max_connections: 10_000,
            request_timeout: Duration::from_secs(1),
            send_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(10),
            threads: 0,
            portable: false,
            file_cache: Duration::from_secs(1),
        }
    }
}

impl ServerConfig {
    /// The defaults (see each field).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the root directory.
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = root.into();
        self
    }

    /// Sets the connection limit (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Sets the deadline for the whole request, counted from accept.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Sets the send-stall timeout.
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.send_timeout = t;
        self
    }

    /// Sets the grace period of a graceful shutdown.
    pub fn grace_period(mut self, t: Duration) -> Self {
        self.grace_period = t;
        self
    }

    /// Sets the number of worker threads (0: one per core).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Forces the portable code paths.
    pub fn portable(mut self, portable: bool) -> Self {
        self.portable = portable;
        self
    }

    /// Sets how long small files stay open for reuse (zero: no reuse).
    pub fn file_cache(mut self, t: Duration) -> Self {
        self.file_cache = t;
        self
    }
}

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

struct Ctx {
    root: Root,
    files: FileCache,
    request_timeout: Duration,
    send_timeout: Duration,
    resolver: Resolver,
    zero_copy: bool,
}

/// A bound server, ready to [`run`](Server::run).
pub struct Server {
    listeners: Vec<std::net::TcpListener>,
    addrs: Vec<SocketAddr>,
    config: ServerConfig,
    /// Connections handled at once: the configured limit, or fewer if the process's
    /// descriptor limit allows fewer.
    connection_limit: usize,
    ctx: Arc<Ctx>,
    handle: ServerHandle,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("addrs", &self.addrs)
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
            return Err(Error::Io {
                path: None,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no address to listen on",
                ),
            });
        }
        let root = Root::new(&config.root).map_err(|e| Error::io(&config.root, e))?;
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
        let (cache_capacity, connection_limit) =
            descriptor_budget(config.max_connections, sys::descriptor_limit());
        if connection_limit < config.max_connections {
            tracing::debug!(
                "the open file limit ({}) allows {connection_limit} connections at once",
                sys::descriptor_limit().unwrap_or(0)
            );
        }
        let ctx = Arc::new(Ctx {
            root,
            files: FileCache::new(
                if sys::CAN_REPLACE_OPEN_FILES {
                    config.file_cache
                } else {
                    Duration::ZERO
                },
                cache_capacity,
            ),
            request_timeout: config.request_timeout,
            send_timeout: config.send_timeout,
            resolver: if config.portable {
                Resolver::Portable
            } else {
                Resolver::Native
            },
            zero_copy: !config.portable,
        });
        let (state, _) = watch::channel(State::Running);
        Ok(Server {
            listeners,
            addrs: bound,
            config,
            connection_limit,
            ctx,
            handle: ServerHandle {
                state: Arc::new(state),
            },
        })
    }

    /// The first address the server listens on, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every address the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// How many connections the server handles at once: the configured limit, or fewer if
    /// the process's open file limit allows fewer (each connection takes a socket and a file;
    /// more wait in the listen backlog).
    pub fn connection_limit(&self) -> usize {
        self.connection_limit
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
        let threads = match self.config.threads {
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
        let handle = self.handle();
        let thread = std::thread::Builder::new()
            .name("filefetch-server".into())
            .spawn(move || self.run())
            .map_err(|source| Error::Io { path: None, source })?;
        Ok(BackgroundServer {
            addrs,
            handle,
            thread: Some(thread),
        })
    }

    /// Serves with `acceptors` accept loops per listening socket (one per worker thread).
    async fn serve(self, acceptors: usize) -> Result<()> {
        // More than u32::MAX connections at once is beyond any system; the cap keeps the
        // semaphore (and the drain below, which takes every permit back) within range.
        let limit = self.connection_limit;
        let permits = Arc::new(Semaphore::new(limit));
        let mut state = self.handle.state.subscribe();
        let mut accepting = JoinSet::new();
        for listener in self.listeners {
            let listener = Arc::new(
                sys::Listener::new(listener).map_err(|source| Error::Io { path: None, source })?,
            );
            for _ in 0..acceptors.max(1) {
                accepting.spawn(accept_loop(
                    listener.clone(),
                    self.ctx.clone(),
                    permits.clone(),
                ));
            }
        }
        if !self.ctx.files.ttl().is_zero() {
            accepting.spawn(sweep_files(self.ctx.clone()));
        }
        let stop = match state.wait_for(|s| *s != State::Running).await {
            Ok(s) => *s,
            Err(_) => State::Stopped,
        };
        // Close the listening sockets before waiting for the transfers in flight.
        accepting.abort_all();
        while accepting.join_next().await.is_some() {}
        if stop == State::Draining {
            let all = u32::try_from(limit).unwrap_or(u32::MAX);
            let drained = permits.acquire_many(all);
            let aborted = state.wait_for(|s| *s == State::Stopped);
            let _ = timeout(self.config.grace_period, async {
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
#[derive(Debug)]
pub struct BackgroundServer {
    addrs: Vec<SocketAddr>,
    handle: ServerHandle,
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

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Stops gracefully (transfers in flight may finish within the grace period) and waits.
    pub fn shutdown(mut self) -> Result<()> {
        self.handle.shutdown();
        self.join()
    }

    /// Stops at once and waits for the server thread.
    pub fn stop(mut self) -> Result<()> {
        self.handle.abort();
        self.join()
    }

    fn join(&mut self) -> Result<()> {
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
        let _ = self.join();
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

fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
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
            Ok((sock, peer)) => start(connection(sock.into(), peer, ctx.clone(), permit)).await,
            Err(e) => {
                // Out of descriptors or memory: keep serving, and back off so a full table
                // does not spin the loop.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    last_warning = Some(Instant::now());
                }
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
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

/// How one connection ended.
enum Outcome {
    Sent,
    NotFound(String),
    /// The server could not open the file for want of descriptors (StatusCode 0 was sent).
    Unavailable(std::io::Error),
    BadRequest(DecodeError),
    RequestTimeout,
    RequestCut(usize),
    ClientGone(std::io::Error),
    Stalled,
    Shrank,
    ReadFailed(std::io::Error),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Sent => f.write_str("sent"),
            Outcome::NotFound(why) => write!(f, "not found ({why})"),
            Outcome::Unavailable(e) => write!(
                f,
                "could not open the file: the server is out of file descriptors ({e}); \
                 answered StatusCode 0"
            ),
            Outcome::BadRequest(e) => write!(f, "bad request: {e}; closed without a response"),
            Outcome::RequestTimeout => {
                f.write_str("request did not arrive in time; closed without a response")
            }
            Outcome::RequestCut(n) => write!(
                f,
                "client closed after {n} bytes of the request; closed without a response"
            ),
            Outcome::ClientGone(e) => write!(f, "client went away: {e}"),
            Outcome::Stalled => f.write_str("client stopped reading; dropped"),
            Outcome::Shrank => f.write_str("file shrank while being sent; connection aborted"),
            Outcome::ReadFailed(e) => write!(f, "reading the file failed: {e}; connection aborted"),
        }
    }
}

/// What the log line of a connection reports besides its outcome.
#[derive(Default)]
struct Record {
    name: Option<String>,
    status: Option<u8>,
    bytes: u64,
    /// The client sent bytes beyond its request.
    extra: bool,
}

async fn connection(mut sock: Sock, peer: SocketAddr, ctx: Arc<Ctx>, permit: OwnedSemaphorePermit) {
    let start = Instant::now();
    let mut record = Record::default();
    let outcome = exchange(&mut sock, &ctx, start, &mut record).await;
    match outcome {
        Outcome::Sent | Outcome::NotFound(_) if record.extra => finish(&mut sock).await,
        // Cut short on purpose: a reset tells the client at once that the data is incomplete,
        // and frees the send buffer now rather than after a slow drain to a stalled reader.
        Outcome::Shrank | Outcome::ReadFailed(_) | Outcome::Stalled => {
            if let Some(s) = sock.sock_ref() {
                let _ = s.set_linger(Some(Duration::ZERO));
            }
        }
        _ => {}
    }
    drop(sock);
    drop(permit);
    let name = record.name.as_deref().unwrap_or("-");
    let status = match record.status {
        None => "-",
        Some(0) => "0",
        Some(_) => "1",
    };
    let ms = start.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Outcome::Sent | Outcome::NotFound(_) => tracing::info!(
            peer = %peer, name = ?name, status = %status, bytes = record.bytes, ms = format_args!("{ms:.1}"),
            "{outcome}"
        ),
        _ => tracing::warn!(
            peer = %peer, name = ?name, status = %status, bytes = record.bytes, ms = format_args!("{ms:.1}"),
            "{outcome}"
        ),
    }
}

/// Room for the longest request and then some: bytes beyond the request in the same read
/// show that the client sent more than it should (see [`finish`]).
const REQUEST_BUF: usize = REQUEST_HEADER_LEN + MAX_NAME_LEN + 32;

async fn exchange(sock: &mut Sock, ctx: &Ctx, start: Instant, record: &mut Record) -> Outcome {
    let mut buf = [0u8; REQUEST_BUF];
    // A deadline beyond what an Instant can hold (a configured `Duration::MAX`) is none.
    let deadline = start
        .checked_add(ctx.request_timeout)
        .map_or_else(far_future, tokio::time::Instant::from_std);
    let mut got = 0;
    let mut want = REQUEST_HEADER_LEN;
    let mut header = None;
    let mut yielded = false;
    let mut acked = false;
    // Read the header, then the name, all before one deadline counted from accept.
    while got < want {
        // The request usually arrives with the connection: read it straight away, and wait
        // for readiness (a trip through the event loop) only when it is not there yet.
        let mut read = sock.try_read(&mut buf[got..]);
        if !yielded && matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock) {
            // Accepted a moment before the client's first bytes landed: give them that
            // moment, letting other work run first, before paying for a registration.
            yielded = true;
            tokio::task::yield_now().await;
            read = sock.try_read(&mut buf[got..]);
        }
        let read = match read {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match timeout_at(deadline, sock.read(&mut buf[got..])).await {
                    Err(_) => return Outcome::RequestTimeout,
                    Ok(read) => read,
                }
            }
            read => read,
        };
        match read {
            Ok(0) => return Outcome::RequestCut(got),
            Ok(n) => got += n,
            Err(e) => return Outcome::ClientGone(e),
        }
        if header.is_none() && got >= REQUEST_HEADER_LEN {
            let fixed: [u8; REQUEST_HEADER_LEN] = buf[..REQUEST_HEADER_LEN].try_into().unwrap();
            match RequestHeader::decode(&fixed) {
                Ok(h) => {
                    want += usize::from(h.name_len);
                    header = Some(h);
                }
                Err(e) => return Outcome::BadRequest(e),
            }
        }
        if got < want && !acked {
            // The rest may be held back by the client's Nagle algorithm until what came is
            // acknowledged: do that now rather than when the delayed ACK would.
            sock.ack_now();
            acked = true;
        }
    }
    record.extra = got > want;
    let raw = &buf[REQUEST_HEADER_LEN..want];
    record.name = Some(String::from_utf8_lossy(raw).into_owned());

    let file = match check_name(raw) {
        Err(e) => Err(Outcome::NotFound(e.to_string())),
        Ok(name) => match ctx.files.open(&ctx.root, name, ctx.resolver, start) {
            Ok(found) => Ok(found),
            Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Outcome::NotFound("no such file".to_owned()))
            }
            // Not the file's fault: the server's, and said so in the log.
            Err(OpenError::Io(e)) if sys::out_of_descriptors(&e) => Err(Outcome::Unavailable(e)),
            Err(e) => Err(Outcome::NotFound(e.to_string())),
        },
    };
    let announced = file.and_then(|f| match announceable(f.len) {
        Ok(len) => Ok((f, len)),
        Err(why) => Err(Outcome::NotFound(why)),
    });
    let (found, len) = match announced {
        Ok(found) => found,
        Err(refusal) => {
            record.status = Some(0);
            return match send_not_found(sock, ctx.send_timeout, ctx.zero_copy).await {
                Ok(()) => refusal,
                Err(e) => sent_outcome(e),
            };
        }
    };
    record.status = Some(1);
    match send_file(
        sock,
        &found.file,
        found.response.as_deref(),
        len,
        ctx.send_timeout,
        ctx.zero_copy,
        &mut record.bytes,
    )
    .await
    {
        Ok(()) => Outcome::Sent,
        Err(e) => sent_outcome(e),
    }
}

/// A deadline that never comes (about 30 years on), as tokio uses for the same purpose.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// The size to announce (measured with `fstat` on the open file itself, not by name), if the
/// 32-bit DataLength can carry it.
fn announceable(len: u64) -> std::result::Result<u32, String> {
    u32::try_from(len)
        .map_err(|_| format!("file is {len} bytes, more than the 32-bit DataLength can describe"))
}

fn sent_outcome(e: SendError) -> Outcome {
    match e {
        SendError::Stalled => Outcome::Stalled,
        SendError::Shrank => Outcome::Shrank,
        SendError::File(e) => Outcome::ReadFailed(e),
        SendError::Io(e) => Outcome::ClientGone(e),
    }
}

/// Closes a connection after a complete response when the client sent bytes beyond its
/// request: closing with unread data makes the kernel answer with a reset, which can discard
/// response data the client has not read yet. Half-close, drain what it sends, and wait
/// (briefly) for its close. (Like nginx's lingering close, this is done only when extra bytes
/// were seen; a client that sends more only after its request was answered breaks the
/// protocol and may see a reset.)
async fn finish(sock: &mut Sock) {
    let mut scratch = [0u8; 1024];
    if sock.shutdown().await.is_err() {
        return;
    }
    let _ = timeout(Duration::from_secs(1), async {
        loop {
            let n = match sock.try_read(&mut scratch) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    sock.read(&mut scratch).await
                }
                n => n,
            };
            if !matches!(n, Ok(n) if n > 0) {
                break;
            }
        }
    })
    .await;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use socket2::SockRef;
    use std::io::{Read, Write};

    /// A connection accepted from a [`listen`] socket, its server end as the server holds it
    /// plus a second handle on the same socket for looking at its options.
    fn accepted() -> (Sock, std::net::TcpStream, std::net::TcpStream) {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let (server, _) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < until => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        server.set_nonblocking(true).unwrap();
        let probe = server.try_clone().unwrap();
        (Sock::plain(server), probe, client)
    }

    fn quick_ack(s: &std::net::TcpStream) -> bool {
        SockRef::from(s).tcp_quickack().unwrap()
    }

    /// Waits (5 s at most) until `s` has bytes to read, without reading them.
    fn wait_readable(s: &std::net::TcpStream) {
        let mut fds = [rustix::event::PollFd::new(s, rustix::event::PollFlags::IN)];
        let five = rustix::event::Timespec {
            tv_sec: 5,
            tv_nsec: 0,
        };
        let n = rustix::event::poll(&mut fds, Some(&five)).unwrap();
        assert_eq!(n, 1, "the bytes did not arrive");
    }

    #[test]
    fn accepted_connections_start_with_delayed_acks() {
        // Checked before any data arrives: the mode must come from the listening socket.
        let (_sock, probe, _client) = accepted();
        assert!(!quick_ack(&probe));
    }

    #[test]
    fn a_request_in_pieces_is_acknowledged_at_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"hello").unwrap();
        let ctx = Ctx {
            root: Root::new(dir.path()).unwrap(),
            files: FileCache::new(Duration::ZERO, CACHE_CAPACITY),
            request_timeout: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            resolver: Resolver::Native,
            zero_copy: true,
        };
        let (mut sock, probe, mut client) = accepted();
        assert!(!quick_ack(&probe));
        let request = [&[0x49, 0x7E, 1, 0, 5][..], b"a.txt"].concat();
        // The header alone, as from a client whose Nagle algorithm holds back the name
        // until the header is acknowledged.
        client.write_all(&request[..5]).unwrap();
        wait_readable(&probe);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut record = Record::default();
        let mut exchange = Box::pin(exchange(&mut sock, &ctx, Instant::now(), &mut record));
        let pending = runtime.block_on(std::future::poll_fn(|cx| {
            Poll::Ready(exchange.as_mut().poll(cx).is_pending())
        }));
        assert!(pending, "the exchange cannot end with half a request");
        // The header has been read: it is acknowledged now, and what follows as it comes.
        assert!(quick_ack(&probe));

        client.write_all(&request[5..]).unwrap();
        let outcome = runtime.block_on(async { timeout(Duration::from_secs(5), exchange).await });
        assert!(matches!(outcome, Ok(Outcome::Sent)));
        // The connection closes with the last handle on it.
        drop((sock, probe));
        let mut response = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_to_end(&mut response).unwrap();
        assert_eq!(
            response,
            [&[0x49, 0x7E, 2, 1, 0, 0, 0, 5][..], b"hello"].concat()
        );
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
