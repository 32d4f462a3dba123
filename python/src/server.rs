//! `serve`, `Server` and its asyncio twin `AsyncServer`: core's [`BackgroundServer`] driven from Python. Every wait for the
//! server thread runs with the GIL released, in slices short enough that Ctrl-C (or any
//! signal handler that raises) is noticed at once. Stopping has core's two words: `shutdown`
//! is graceful (no new connections; the transfers in flight get the grace period), abort is
//! at once (Python's `close()`).
//!
//! `AsyncServer` is a `Server` whose waits for the server thread are futures on [`aio`]'s
//! runtime instead of blocking calls.
//!
//! Lock order: the GIL is never waited for while the lock of a [`Server`] is held (every
//! wait for the server thread holds the lock only with the GIL released), so a `close()`
//! from another thread cannot deadlock with a waiting `serve_forever()`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use filefetch::{config, BackgroundServer, ServerConfig, ServerHandle};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use tracing::Level;

use crate::aio;
use crate::args::{self, Hosts, Int, Seconds};
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
}

impl Settings {
    /// The configuration, checked by core's builder.
    fn config(self, py: Python<'_>) -> PyResult<ServerConfig> {
        let builder = ServerConfig::builder()
            .root(self.root)
            .max_connections(args::unsigned(py, "max_connections", self.max_connections)?)
            .request_timeout(args::duration(py, "request_timeout", self.request_timeout)?)
            .send_timeout(args::duration(py, "send_timeout", self.send_timeout)?)
            .grace_period(args::duration(py, "grace_period", self.grace_period)?)
            .threads(args::unsigned(py, "threads", self.threads)?)
            .file_cache(args::duration(py, "file_cache", self.file_cache)?)
            .portable(self.portable);
        args::built(py, builder.build())
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
/// Blocks with the GIL released. The first time a signal handler raises (KeyboardInterrupt
/// on Ctrl-C), the server stops accepting connections and the transfers in flight get
/// `grace_period` seconds to finish (0: none); if a handler raises again meanwhile, the
/// server stops at once. Either way the exception then propagates. Raises LocalError (an
/// OSError) when the port cannot be bound or `root` is not a readable directory, and
/// InvalidArgumentError (a ValueError) for bad arguments.
#[pyfunction]
#[pyo3(signature = (
    port, root=PathBuf::from("."), *, host=Hosts::of("0.0.0.0"),
    max_connections=Int::of(config::MAX_CONNECTIONS),
    request_timeout=Seconds::of(config::REQUEST_TIMEOUT),
    send_timeout=Seconds::of(config::SEND_TIMEOUT),
    grace_period=Seconds::of(config::GRACE_PERIOD), threads=Int::of(config::THREADS),
    file_cache=Seconds::of(config::FILE_CACHE), portable=false,
), text_signature = "(port, root='.', *, host='0.0.0.0', max_connections=10000, \
    request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0, \
    portable=False)")]
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

/// A file server running in the background, for tests and embedding.
///
/// Serves the files under `root` on `host`:`port` (by default 127.0.0.1, on any free port;
/// see `.port`) from threads of its own, so the caller carries on at once. `host` may be a
/// sequence of addresses to listen on them all (see `.addresses`). The other arguments are as
/// for serve. shutdown() stops it gracefully: no new connections, and the transfers in flight
/// get `grace_period` seconds to finish. close() stops it at once (the core's abort), cutting
/// them, and so does leaving a `with` block; garbage collection stops it at once too, without
/// waiting for its threads.
#[pyclass(frozen, module = "filefetch", name = "Server")]
pub(crate) struct Server {
    addrs: Vec<std::net::SocketAddr>,
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

impl Server {
    fn running(&self) -> MutexGuard<'_, Option<BackgroundServer>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
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
}

impl Drop for Server {
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

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        port=Int::of(0), root=PathBuf::from("."), *, host=Hosts::of("127.0.0.1"),
        max_connections=Int::of(config::MAX_CONNECTIONS),
        request_timeout=Seconds::of(config::REQUEST_TIMEOUT),
        send_timeout=Seconds::of(config::SEND_TIMEOUT),
        grace_period=Seconds::of(config::GRACE_PERIOD), threads=Int::of(config::THREADS),
        file_cache=Seconds::of(config::FILE_CACHE), portable=false,
    ), text_signature = "(port=0, root='.', *, host='127.0.0.1', max_connections=10000, \
        request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0, \
        portable=False)")]
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
        };
        let server = start(py, &host, port, settings)?;
        Ok(Server {
            addrs: server.local_addrs().to_vec(),
            handle: server.handle(),
            running: Mutex::new(Some(server)),
        })
    }

    /// The port the server listens on (the real one when 0 was asked for).
    #[getter]
    fn port(&self) -> u16 {
        self.addrs[0].port()
    }

    /// The (host, port) the server listens on, as socket.getsockname() gives it; the first
    /// of `addresses` when it listens on several.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let addr = self.addrs[0];
        (addr.ip().to_string(), addr.port()).into_pyobject(py)
    }

    /// Every (host, port) the server listens on.
    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let addrs = self.addrs.iter().map(|a| (a.ip().to_string(), a.port()));
        PyList::new(py, addrs)
    }

    /// True once the server has stopped and its threads have ended: after close(), or once
    /// shutdown() has returned.
    #[getter]
    fn closed(&self, py: Python<'_>) -> bool {
        py.detach(|| self.running().is_none())
    }

    /// Stop serving at once (the core's abort: transfers in flight are cut) and wait for the
    /// server's threads. Calling it again does nothing. From another thread, it cuts a
    /// shutdown() short.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        // First the signal, which needs no lock: a wait holding the lock then ends at once.
        self.handle.abort();
        match py.detach(|| self.running().take()) {
            Some(server) => finish(py, server, Stop::Abort),
            None => Ok(()),
        }
    }

    /// Stop gracefully: stop accepting connections at once, let the transfers in flight
    /// finish within `grace_period` seconds (those still running then are cut), and wait for
    /// the server's threads.
    ///
    /// Waits with the GIL released. If a signal handler raises meanwhile (KeyboardInterrupt
    /// on Ctrl-C), the server stops at once and the exception propagates. Calling it again,
    /// or after close(), does nothing.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        self.handle.shutdown();
        let result = self.wait_stopped(py);
        if result.is_err() {
            // Interrupted: stop at once. (After an error of the server itself, it is
            // stopped already and this does nothing.)
            let _ = self.close(py);
        }
        result
    }

    /// Block until the server has stopped (close() or shutdown() from another thread) or a
    /// signal handler raises, as KeyboardInterrupt does on Ctrl-C; the exception propagates
    /// and the server keeps running until closed.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        self.wait_stopped(py)
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
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) { " closed" } else { "" };
        format!("<filefetch.Server {}{state}>", self.addrs[0])
    }
}

/// A file server running in the background, for asyncio programs: Server's twin.
///
/// Takes Server's arguments, with the same defaults, and binds at once (raising as Server
/// does). The server runs on threads of its own, as Server's does; what is awaited is its
/// stopping, which never blocks the event loop. `async with` returns the server and, at the
/// end of the block, stops it at once (as aclose() does). `await shutdown()` stops it
/// gracefully: no new connections, and the transfers in flight get `grace_period` seconds
/// to finish; cancelling it stops the server at once. close() stops it at once and waits for
/// its threads without awaiting (they end within milliseconds of the stop); aclose() does the
/// same as a coroutine. Garbage collection stops it at once.
#[pyclass(frozen, module = "filefetch", name = "AsyncServer")]
pub(crate) struct AsyncServer(Server);

/// What a wait for the server to stop does when its coroutine is cancelled.
#[derive(Clone, Copy)]
enum OnCancel {
    /// Stops the server at once, and goes on waiting (a few milliseconds).
    Abort,
    /// Stops waiting; the server goes on.
    Leave,
}

/// How often a wait for the server to stop looks whether its thread has ended (core offers
/// no future to await it).
const STOPPED_POLL: std::time::Duration = std::time::Duration::from_millis(10);

impl AsyncServer {
    /// Completes once the server thread has ended, then joins it (unless another call took
    /// it) on a blocking thread, so that the event loop is never held up. `stop` is set when
    /// the coroutine awaiting this is cancelled.
    async fn stopped(
        server: Py<AsyncServer>,
        stop: Arc<aio::Stop>,
        on_cancel: OnCancel,
    ) -> PyResult<()> {
        let mut cancelled = false;
        loop {
            let ended = {
                let mut running = server.get().0.running();
                match running.as_ref() {
                    None => return Ok(()),
                    Some(s) if s.is_finished() => running.take(),
                    Some(_) => None,
                }
            };
            if let Some(ended) = ended {
                let joined = tokio::task::spawn_blocking(move || {
                    aio::with_python(|py| finish(py, ended, Stop::Join))
                });
                return joined
                    .await
                    .map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
            }
            tokio::select! {
                () = tokio::time::sleep(STOPPED_POLL) => {}
                () = stop.stopped(), if !cancelled => match on_cancel {
                    OnCancel::Abort => {
                        server.get().0.handle.abort();
                        cancelled = true;
                    }
                    OnCancel::Leave => return Ok(()),
                },
            }
        }
    }

    /// The coroutine `AsyncServer.<method>`: `first` (a stop signal to the server, or none),
    /// then the wait; its result is `result`.
    fn wait<'py, T>(
        slf: &Bound<'py, Self>,
        method: &str,
        first: impl FnOnce(&ServerHandle) + Send + 'static,
        on_cancel: OnCancel,
        result: T,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        T: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let server = slf.clone().unbind();
        let stop = Arc::new(aio::Stop::default());
        let fut = {
            let stop = stop.clone();
            async move {
                first(&server.get().0.handle);
                AsyncServer::stopped(server, stop, on_cancel).await?;
                Ok(result)
            }
        };
        aio::coroutine(slf.py(), &format!("AsyncServer.{method}"), fut, stop)
    }
}

#[pymethods]
impl AsyncServer {
    #[new]
    #[pyo3(signature = (
        port=Int::of(0), root=PathBuf::from("."), *, host=Hosts::of("127.0.0.1"),
        max_connections=Int::of(config::MAX_CONNECTIONS),
        request_timeout=Seconds::of(config::REQUEST_TIMEOUT),
        send_timeout=Seconds::of(config::SEND_TIMEOUT),
        grace_period=Seconds::of(config::GRACE_PERIOD), threads=Int::of(config::THREADS),
        file_cache=Seconds::of(config::FILE_CACHE), portable=false,
    ), text_signature = "(port=0, root='.', *, host='127.0.0.1', max_connections=10000, \
        request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0, \
        portable=False)")]
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
    ) -> PyResult<Self> {
        Server::new(
            py,
            port,
            root,
            host,
            max_connections,
            request_timeout,
            send_timeout,
            grace_period,
            threads,
            file_cache,
            portable,
        )
        .map(AsyncServer)
    }

    /// The port the server listens on (the real one when 0 was asked for).
    #[getter]
    fn port(&self) -> u16 {
        self.0.port()
    }

    /// The (host, port) the server listens on, as socket.getsockname() gives it; the first
    /// of `addresses` when it listens on several.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        self.0.address(py)
    }

    /// Every (host, port) the server listens on.
    #[getter]
    fn addresses<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.0.addresses(py)
    }

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
        AsyncServer::wait(slf, "aclose", ServerHandle::abort, OnCancel::Abort, ())
    }

    /// Stop gracefully: stop accepting connections at once, let the transfers in flight
    /// finish within `grace_period` seconds (those still running then are cut); completes
    /// once the server's threads have ended. Cancelling it stops the server at once (and
    /// CancelledError propagates once it has stopped). Calling it again, or after close(),
    /// does nothing.
    fn shutdown<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        AsyncServer::wait(slf, "shutdown", ServerHandle::shutdown, OnCancel::Abort, ())
    }

    /// Complete once the server has stopped (close(), aclose() or shutdown(), from another
    /// task or thread). Cancelling it leaves the server running.
    fn serve_forever<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        AsyncServer::wait(slf, "serve_forever", |_| {}, OnCancel::Leave, ())
    }

    fn __aenter__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let server = slf.clone().unbind();
        let stop = Arc::new(aio::Stop::default());
        let fut = async move { Ok(server) };
        aio::coroutine(slf.py(), "AsyncServer.__aenter__", fut, stop)
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
        AsyncServer::wait(
            slf,
            "__aexit__",
            ServerHandle::abort,
            OnCancel::Abort,
            false,
        )
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let state = if self.closed(py) { " closed" } else { "" };
        format!("<filefetch.AsyncServer {}{state}>", self.0.addrs[0])
    }
}
