//! `serve` and `Server`: a [`filefetch::Server`] run on a thread of its own, waited for with
//! the GIL released in short slices so that Ctrl-C (or any signal handler that raises) is
//! noticed at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use filefetch::{ServerConfig, ServerHandle};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::args;
use crate::errors;
use crate::interrupt::SIGNAL_POLL;

/// The settings `serve` and `Server` share, from Python arguments.
fn config(
    py: Python<'_>,
    root: PathBuf,
    max_connections: i64,
    request_timeout: f64,
    send_timeout: f64,
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
        .threads(args::count(py, "threads", threads)?)
        .file_cache(args::seconds_or_zero(py, "file_cache", file_cache)?))
}

/// A server running on its own thread. Dropping it stops the server without waiting.
struct Running {
    addrs: Vec<SocketAddr>,
    handle: ServerHandle,
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
        let thread = std::thread::Builder::new()
            .name("filefetch-server".into())
            .spawn(move || server.run())
            .map_err(|source| errors::to_py(py, filefetch::Error::Io { path: None, source }))?;
        Ok(Running {
            addrs,
            handle,
            thread: Some(thread),
        })
    }

    /// True once the server thread has ended (after a stop, or on its own after an error).
    fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the server at once and waits for its thread, with the GIL released.
    fn stop(mut self, py: Python<'_>) -> PyResult<()> {
        self.handle.abort();
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
/// Blocks with the GIL released; a signal handler that raises (KeyboardInterrupt on Ctrl-C)
/// stops the server and the exception propagates. Raises LocalError (an OSError) when the
/// port cannot be bound or `root` is not a readable directory, and InvalidArgumentError (a
/// ValueError) for bad arguments.
#[pyfunction]
#[pyo3(signature = (
    port, root=PathBuf::from("."), *, host="0.0.0.0".to_owned(), max_connections=10_000,
    request_timeout=1.0, send_timeout=10.0, threads=0, file_cache=1.0,
), text_signature = "(port, root='.', *, host='0.0.0.0', max_connections=10000, \
    request_timeout=1.0, send_timeout=10.0, threads=0, file_cache=1.0)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve(
    py: Python<'_>,
    port: i64,
    root: PathBuf,
    host: String,
    max_connections: i64,
    request_timeout: f64,
    send_timeout: f64,
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
        threads,
        file_cache,
    )?;
    let shown_root = config.root.canonicalize().unwrap_or(config.root.clone());
    let running = Running::start(py, &host, port, config)?;
    let listening: Vec<String> = running.addrs.iter().map(ToString::to_string).collect();
    tracing::info!(
        target: "filefetch::server",
        "serving {} on {}",
        shown_root.display(),
        listening.join(", ")
    );
    loop {
        if running.finished() {
            // Only an error ends the server on its own.
            return running.stop(py);
        }
        py.detach(|| std::thread::sleep(SIGNAL_POLL));
        if let Err(interrupt) = py.check_signals() {
            running.stop(py)?;
            return Err(interrupt);
        }
    }
}

/// A file server running in the background, for tests and embedding.
///
/// Serves the files under `root` on `host`:`port` (any free port if `port` is 0; see `.port`)
/// from threads of its own, so the caller carries on at once. The other arguments are as for
/// serve. Use it as a context manager, or call close(), to stop it; a server that is garbage
/// collected stops too.
#[pyclass(frozen, module = "filefetch", name = "Server")]
pub(crate) struct Server {
    addrs: Vec<SocketAddr>,
    running: Mutex<Option<Running>>,
}

impl Server {
    fn running(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[pymethods]
impl Server {
    #[new]
    #[pyo3(signature = (
        port=0, root=PathBuf::from("."), *, host="127.0.0.1".to_owned(), max_connections=10_000,
        request_timeout=1.0, send_timeout=10.0, threads=0, file_cache=1.0,
    ), text_signature = "(port=0, root='.', *, host='127.0.0.1', max_connections=10000, \
        request_timeout=1.0, send_timeout=10.0, threads=0, file_cache=1.0)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        port: i64,
        root: PathBuf,
        host: String,
        max_connections: i64,
        request_timeout: f64,
        send_timeout: f64,
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

    /// True once close() has been called.
    #[getter]
    fn closed(&self) -> bool {
        self.running().is_none()
    }

    /// Stop serving at once (transfers in flight are cut) and wait for the server's threads.
    /// Calling it again does nothing.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let running = self.running().take();
        match running {
            Some(running) => running.stop(py),
            None => Ok(()),
        }
    }

    /// Block until the server is closed (from another thread) or a signal handler raises,
    /// as KeyboardInterrupt does on Ctrl-C; the exception propagates and the server keeps
    /// running until closed.
    fn serve_forever(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            {
                let mut running = self.running();
                match running.as_ref() {
                    None => return Ok(()),
                    Some(r) if r.finished() => {
                        let ended = running.take();
                        drop(running);
                        return ended.map_or(Ok(()), |r| r.stop(py));
                    }
                    Some(_) => {}
                }
            }
            py.detach(|| std::thread::sleep(SIGNAL_POLL));
            py.check_signals()?;
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the server; exceptions propagate.
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
