//! `serve` and `Server`: a [`filefetch::Server`] run on a thread of its own, waited for with
//! the GIL released in short slices so that Ctrl-C (or any signal handler that raises) is
//! noticed at once. Both stop either gracefully (no new connections; the transfers in flight
//! get the grace period to finish) or at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use filefetch::{ServerConfig, ServerHandle};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use tracing::Level;

use crate::args;
use crate::errors;
use crate::interrupt::SIGNAL_POLL;
use crate::log;

/// The settings `serve` and `Server` share, from Python arguments.
#[allow(clippy::too_many_arguments)]
fn config(
    py: Python<'_>,
    root: PathBuf,
    max_connections: i64,
    request_timeout: f64,
    send_timeout: f64,
    grace_period: f64,
    threads: i64,
    file_cache: f64,
) -> PyResult<ServerConfig> {
    let max_connections = match usize::try_from(max_connections) {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(errors::invalid_argument(
                py,
                format!("max_connections must be at least 1, not {max_connections}"),
            ))
        }
    };
    Ok(ServerConfig::new()
        .root(root)
        .max_connections(max_connections)
        .request_timeout(args::seconds(py, "request_timeout", request_timeout)?)
        .send_timeout(args::seconds(py, "send_timeout", send_timeout)?)
        .grace_period(args::seconds_or_zero(py, "grace_period", grace_period)?)
        .threads(args::count(py, "threads", threads)?)
        .file_cache(args::seconds_or_zero(py, "file_cache", file_cache)?))
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Set once a server thread has ended, however it ended, so that it can be waited for with a
/// time limit (and without holding the lock of a [`Server`]).
#[derive(Default)]
struct Ended {
    ended: Mutex<bool>,
    changed: Condvar,
}

impl Ended {
    fn set(&self) {
        *lock(&self.ended) = true;
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        *lock(&self.ended)
    }

    /// Returns once the thread has ended, or after `limit`.
    fn wait(&self, limit: Duration) {
        let ended = lock(&self.ended);
        let _ = self
            .changed
            .wait_timeout_while(ended, limit, |ended| !*ended);
    }
}

/// Sets [`Ended`] when dropped: as the server thread returns or unwinds.
struct SetOnDrop(Arc<Ended>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// A server running on its own thread. Dropping it stops the server without waiting.
struct Running {
    addrs: Vec<SocketAddr>,
    handle: ServerHandle,
    ended: Arc<Ended>,
    thread: Option<JoinHandle<filefetch::Result<()>>>,
}

impl Running {
    fn start(py: Python<'_>, host: &str, port: u16, config: ServerConfig) -> PyResult<Running> {
        let addrs = args::listen_addrs(py, host, port)?;
        let server = py
            .detach(|| filefetch::Server::bind_all(&addrs, config))
            .map_err(|e| errors::to_py(py, e))?;
        let addrs = server.local_addrs().to_vec();
        let handle = server.handle();
        let ended = Arc::new(Ended::default());
        let on_exit = SetOnDrop(ended.clone());
        let thread = std::thread::Builder::new()
            .name("filefetch-server".into())
            .spawn(move || {
                let _on_exit = on_exit;
                server.run()
            })
            .map_err(|source| errors::to_py(py, filefetch::Error::Io { path: None, source }))?;
        Ok(Running {
            addrs,
            handle,
            ended,
            thread: Some(thread),
        })
    }

    /// True once the server thread has ended (after a stop, or on its own after an error).
    fn finished(&self) -> bool {
        self.ended.is_set()
    }

    /// Waits, with the GIL released, until the server thread has ended or for `limit`.
    fn wait(&self, py: Python<'_>, limit: Duration) {
        py.detach(|| self.ended.wait(limit));
    }

    /// Stops the server at once and waits for its thread.
    fn stop(self, py: Python<'_>) -> PyResult<()> {
        self.handle.abort();
        self.join(py)
    }

    /// Waits for the server thread, with the GIL released, and returns what it returned.
    fn join(mut self, py: Python<'_>) -> PyResult<()> {
        let thread = self.thread.take();
        let result = py.detach(|| match thread.map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(filefetch::Error::Io {
                path: None,
                source: std::io::Error::other("server thread panicked"),
            }),
        });
        result.map_err(|e| errors::to_py(py, e))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Joining here could wait on a server thread that waits for the GIL.
        self.handle.abort();
    }
}

/// Serve the files under `root` on `port` until interrupted (Ctrl-C).
///
/// Listens on `host` ("0.0.0.0": every IPv4 address; "::" every address; "" as "0.0.0.0"), on
/// any free port if `port` is 0. Clients are served concurrently; names are confined to
/// `root`. At most `max_connections` are handled at once; a request must arrive within
/// `request_timeout` seconds of connecting; a client that reads nothing for `send_timeout`
/// seconds is dropped. `threads` worker threads serve (0: one per CPU core). A small file
/// (64 KiB or less) stays open for `file_cache` seconds for reuse by later requests of the
/// same name (0: every request opens it afresh); its size is measured at every request and a
/// file deleted or replaced is seen at once, while a rename away or a permission change can
/// take that long to be seen. Each connection is logged on the "filefetch.server" logger.
///
/// Blocks with the GIL released. The first time a signal handler raises (KeyboardInterrupt
/// on Ctrl-C), the server stops accepting connections and the transfers in flight get
/// `grace_period` seconds to finish (0: none); if a handler raises again meanwhile, the
/// server stops at once. Either way the exception then propagates. Raises LocalError (an
/// OSError) when the port cannot be bound or `root` is not a readable directory, and
/// InvalidArgumentError (a ValueError) for bad arguments.
#[pyfunction]
#[pyo3(signature = (
    port, root=PathBuf::from("."), *, host="0.0.0.0".to_owned(), max_connections=10_000,
    request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0,
), text_signature = "(port, root='.', *, host='0.0.0.0', max_connections=10000, \
    request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve(
    py: Python<'_>,
    port: i64,
    root: PathBuf,
    host: String,
    max_connections: i64,
    request_timeout: f64,
    send_timeout: f64,
    grace_period: f64,
    threads: i64,
    file_cache: f64,
) -> PyResult<()> {
    let port = args::local_port(py, port)?;
    let config = config(
        py,
        root,
        max_connections,
        request_timeout,
        send_timeout,
        grace_period,
        threads,
        file_cache,
    )?;
    let shown_root = config.root.canonicalize().unwrap_or(config.root.clone());
    let running = Running::start(py, &host, port, config)?;
    let listening: Vec<String> = running.addrs.iter().map(ToString::to_string).collect();
    let serving = format!(
        "serving {} on {}",
        shown_root.display(),
        listening.join(", ")
    );
    // Like the command: the first interrupt is a graceful shutdown, the second stops at once.
    // The line is logged from here, not through `tracing`, so that an interrupt raised while
    // this thread writes it (in the logging module's Python code) is not lost.
    let mut interrupted = log::to_python(py, "filefetch::server", Level::INFO, &serving).err();
    if interrupted.is_some() {
        running.handle.shutdown();
    }
    loop {
        if running.finished() {
            // Only an error ends the server on its own, unless it was shut down.
            let result = running.join(py);
            return match interrupted {
                Some(interrupt) => Err(interrupt),
                None => result,
            };
        }
        running.wait(py, SIGNAL_POLL);
        if let Err(interrupt) = py.check_signals() {
            match interrupted.take() {
                None => {
                    running.handle.shutdown();
                    interrupted = Some(interrupt);
                }
                Some(first) => {
                    // The exception that propagates is the latest, raised while the first
                    // was being handled.
                    let _ = running.stop(py);
                    interrupt.set_context(py, Some(first));
                    return Err(interrupt);
                }
            }
        }
    }
}

/// A file server running in the background, for tests and embedding.
///
/// Serves the files under `root` on `host`:`port` (any free port if `port` is 0; see `.port`)
/// from threads of its own, so the caller carries on at once. The other arguments are as for
/// serve. shutdown() stops it gracefully: no new connections, and the transfers in flight get
/// `grace_period` seconds to finish. close() stops it at once, cutting them, and so does
/// leaving a `with` block or garbage collection.
#[pyclass(frozen, module = "filefetch", name = "Server")]
pub(crate) struct Server {
    addrs: Vec<SocketAddr>,
    running: Mutex<Option<Running>>,
}

impl Server {
    fn running(&self) -> MutexGuard<'_, Option<Running>> {
        lock(&self.running)
    }

    /// Waits, with the GIL released, until the server thread has ended (then takes and joins
    /// it, unless another call did) or a signal handler raises.
    fn wait_stopped(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let ended = {
                let mut running = self.running();
                match running.as_ref() {
                    None => return Ok(()),
                    Some(r) if r.finished() => {
                        let finished = running.take();
                        drop(running);
                        return finished.map_or(Ok(()), |r| r.join(py));
                    }
                    Some(r) => r.ended.clone(),
                }
            };
            // Not under the lock: close() from another thread must not wait for this.
            py.detach(|| ended.wait(SIGNAL_POLL));
            py.check_signals()?;
        }
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        port=0, root=PathBuf::from("."), *, host="127.0.0.1".to_owned(), max_connections=10_000,
        request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0,
    ), text_signature = "(port=0, root='.', *, host='127.0.0.1', max_connections=10000, \
        request_timeout=1.0, send_timeout=10.0, grace_period=10.0, threads=0, file_cache=1.0)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        port: i64,
        root: PathBuf,
        host: String,
        max_connections: i64,
        request_timeout: f64,
        send_timeout: f64,
        grace_period: f64,
        threads: i64,
        file_cache: f64,
    ) -> PyResult<Self> {
        let port = args::local_port(py, port)?;
        let config = config(
            py,
            root,
            max_connections,
            request_timeout,
            send_timeout,
            grace_period,
            threads,
            file_cache,
        )?;
        let running = Running::start(py, &host, port, config)?;
        Ok(Server {
            addrs: running.addrs.clone(),
            running: Mutex::new(Some(running)),
        })
    }

    /// The port the server listens on (the real one when 0 was asked for).
    #[getter]
    fn port(&self) -> u16 {
        self.addrs[0].port()
    }

    /// The (host, port) the server listens on, as socket.getsockname() gives it.
    #[getter]
    fn address<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let addr = self.addrs[0];
        (addr.ip().to_string(), addr.port()).into_pyobject(py)
    }

    /// True once the server has stopped and its threads have ended: after close(), or once
    /// shutdown() has returned.
    #[getter]
    fn closed(&self) -> bool {
        self.running().is_none()
    }

    /// Stop serving at once (transfers in flight are cut) and wait for the server's threads.
    /// Calling it again does nothing. From another thread, it cuts a shutdown() short.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let running = self.running().take();
        match running {
            Some(running) => running.stop(py),
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
        if let Some(running) = self.running().as_ref() {
            running.handle.shutdown();
        }
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

    fn __repr__(&self) -> String {
        let state = if self.closed() { " closed" } else { "" };
        format!("<filefetch.Server {}{state}>", self.addrs[0])
    }
}
