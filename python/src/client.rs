//! `fetch` and `fetch_bytes`, and their asyncio forms `afetch` and `afetch_bytes`: Python
//! arguments to a [`filefetch::Fetch`] with its options, digest and progress callback (one
//! [`prepare`] step for all four), then the download run, blocking with the GIL released or
//! as core's asynchronous fetch on [`aio`]'s runtime, and the outcome back as a path, bytes
//! or an exception.
//!
//! Each blocking function and its asyncio form take the same parameters, declared once by
//! [`to_file_function!`] or [`to_bytes_function!`]; they differ only in how they run.

use std::future::Future;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use filefetch::{config, Fetch, FetchOptions, FetchOptionsBuilder, Response, Sha256Digest};
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::IntoPyObjectExt;

use crate::aio::{self, OnCancel, Outcome};
use crate::args::{self, Int, Seconds};
use crate::errors;
use crate::interrupt::Raised;
use crate::progress::Relay;

/// The keywords every fetch function takes about time, rate, size and retries, as Python
/// gave them.
pub(crate) struct Limits {
    pub(crate) timeout: Seconds,
    pub(crate) connect_timeout: Seconds,
    pub(crate) max_time: Option<Seconds>,
    pub(crate) speed_limit: Int,
    pub(crate) speed_time: Seconds,
    pub(crate) max_size: Option<Int>,
    pub(crate) retries: Int,
    pub(crate) retry_delay: Seconds,
    pub(crate) sha256: Option<String>,
}

impl Limits {
    /// The SHA-256 digest the data must have, if one was given (64 hex digits).
    fn digest(&self, py: Python<'_>) -> PyResult<Option<Sha256Digest>> {
        self.sha256
            .as_deref()
            .map(|hex| args::built(py, hex.parse::<Sha256Digest>()))
            .transpose()
    }

    /// The options, checked by core's builder, with `interrupt` as the fetch's interrupt
    /// check; `more` adds what only `fetch` sets.
    pub(crate) fn options(
        self,
        py: Python<'_>,
        interrupt: Option<impl Fn() -> bool + Send + Sync + 'static>,
        more: impl FnOnce(FetchOptionsBuilder) -> FetchOptionsBuilder,
    ) -> PyResult<FetchOptions> {
        let mut builder = FetchOptions::builder()
            .idle_timeout(args::duration(py, "timeout", self.timeout)?)
            .connect_timeout(args::duration(py, "connect_timeout", self.connect_timeout)?)
            .min_rate(
                args::unsigned(py, "speed_limit", self.speed_limit)?,
                args::duration(py, "speed_time", self.speed_time)?,
            )
            .retries(args::unsigned(py, "retries", self.retries)?)
            .retry_delay(args::duration(py, "retry_delay", self.retry_delay)?);
        if let Some(limit) = self.max_time {
            builder = builder.max_time(args::duration(py, "max_time", limit)?);
        }
        if let Some(limit) = self.max_size {
            builder = builder.max_size(args::unsigned(py, "max_size", limit)?);
        }
        if let Some(check) = interrupt {
            builder = builder.interrupt(check);
        }
        args::built(py, more(builder).build())
    }
}

/// What `fetch` sets beyond the limits: the destination and whether to replace it.
pub(crate) fn destination(
    dest: Option<PathBuf>,
    overwrite: bool,
) -> impl FnOnce(FetchOptionsBuilder) -> FetchOptionsBuilder {
    move |mut builder| {
        builder = builder.overwrite(overwrite);
        if let Some(dest) = dest {
            builder = builder.output(dest);
        }
        builder
    }
}

/// The `progress` argument, checked to be callable.
pub(crate) fn progress_arg(progress: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    if let Some(cb) = &progress {
        if !cb.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
    }
    Ok(progress.map(Bound::unbind))
}

/// Where a prepared fetch will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runs {
    /// On the calling thread, blocking with the GIL released; on the main thread, Python's
    /// signal handlers run meanwhile (through the fetch's interrupt check), so that Ctrl-C
    /// stops it.
    Here,
    /// On [`aio`]'s runtime, stopped by dropping its future.
    OnRuntime,
}

/// A fetch as a Python call asked for it, its arguments checked: core's fetch with its
/// options and digest, the progress callback (not attached yet: how depends on where the
/// fetch runs), and where an exception raised by Python code meanwhile is kept.
struct Prepared {
    fetch: Fetch<'static>,
    progress: Option<Py<PyAny>>,
    raised: Raised,
}

/// The step every fetch function starts with: the arguments checked (in the same order for
/// all: the port, `progress`, `sha256`, then the options), the fetch set up to run as `runs`
/// says. `dest` adds `fetch`'s destination options.
#[allow(clippy::too_many_arguments)]
fn prepare(
    py: Python<'_>,
    runs: Runs,
    host: String,
    port: Int,
    name: String,
    limits: Limits,
    dest: impl FnOnce(FetchOptionsBuilder) -> FetchOptionsBuilder,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<Prepared> {
    let port = args::remote_port(py, port)?;
    let progress = progress_arg(progress)?;
    let raised = Raised::default();
    let interrupt = match runs {
        Runs::Here => raised.signal_check(py)?,
        Runs::OnRuntime => None,
    };
    let digest = limits.digest(py)?;
    let options = limits.options(py, interrupt, dest)?;
    let mut fetch = Fetch::new_owned(host, port, name).options_owned(options);
    if let Some(digest) = digest {
        fetch = fetch.expect_sha256(digest);
    }
    Ok(Prepared {
        fetch,
        progress,
        raised,
    })
}

impl Prepared {
    /// The fetch with its progress callback called on the thread the fetch runs on
    /// (attaching to Python for each call); an exception it raises stops the fetch and is
    /// kept in `raised`.
    fn blocking(self) -> (Fetch<'static>, Raised) {
        let Prepared {
            fetch,
            progress,
            raised,
        } = self;
        let fetch = match progress {
            None => fetch,
            Some(cb) => {
                let raised = raised.clone();
                fetch.progress(move |received: u64, total: u64| {
                    Python::attach(|py| match cb.call1(py, (received, total)) {
                        Ok(_) => ControlFlow::Continue(()),
                        Err(e) => {
                            raised.store(e);
                            ControlFlow::Break(())
                        }
                    })
                })
            }
        };
        (fetch, raised)
    }

    /// The fetch with its progress callback relayed off the runtime's workers (see
    /// `progress`), and what must end before the coroutine does: the relay, if any.
    fn on_runtime(self) -> (Fetch<'static>, Raised, Option<Arc<Relay>>) {
        let Prepared {
            fetch,
            progress,
            raised,
        } = self;
        match progress {
            None => (fetch, raised, None),
            Some(cb) => {
                let relay = Relay::new(cb, raised.clone());
                (fetch.progress(relay.report()), raised, Some(relay))
            }
        }
    }

    /// `fetch`: into a file, on this thread with the GIL released.
    fn fetch(self, py: Python<'_>) -> PyResult<PathBuf> {
        let (fetch, raised) = self.blocking();
        match py.detach(move || fetch.to_file()) {
            Ok(fetched) => Ok(fetched.path),
            Err(e) => Err(failure(py, &raised, e)),
        }
    }

    /// `fetch_bytes`: into a new bytes object, on this thread with the GIL released.
    fn fetch_bytes(self, py: Python<'_>) -> PyResult<Bound<'_, PyBytes>> {
        let (fetch, raised) = self.blocking();
        let response = py
            .detach(move || fetch.open())
            .map_err(|e| failure(py, &raised, e))?;
        read_bytes(py, response, &raised)
    }

    /// `afetch`: into a file, as a coroutine running core's asynchronous fetch.
    fn afetch(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let (fetch, raised, relay) = self.on_runtime();
        transfer(py, "afetch", relay, async move {
            let fetched = fetch.to_file_async().await;
            Box::new(move |py: Python<'_>| match fetched {
                Ok(fetched) => fetched.path.into_py_any(py),
                Err(e) => Err(failure(py, &raised, e)),
            }) as Outcome
        })
    }

    /// `afetch_bytes`: into memory, then a new bytes object, as a coroutine running core's
    /// asynchronous fetch.
    fn afetch_bytes(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let (fetch, raised, relay) = self.on_runtime();
        transfer(py, "afetch_bytes", relay, async move {
            let data = fetch.to_vec_async().await;
            Box::new(move |py: Python<'_>| match data {
                Ok(data) => copy_bytes(py, &data).map(|b| b.into_any().unbind()),
                Err(e) => Err(failure(py, &raised, e)),
            }) as Outcome
        })
    }
}

/// The coroutine `name` for a transfer: cancelling it drops (aborts) the transfer; once the
/// transfer has ended either way, the relay of its progress callback ends, before the
/// outcome is handed over (which raises the exception a callback raised, if any).
fn transfer<'py>(
    py: Python<'py>,
    name: &str,
    relay: Option<Arc<Relay>>,
    fut: impl Future<Output = Outcome> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    let after = async move {
        if let Some(relay) = relay {
            relay.finish().await;
        }
    };
    aio::coroutine(py, name, fut, OnCancel::Drop, after)
}

/// The file's data as a new bytes object, received straight into it (its memory, the size
/// the server announced, is taken first), with the GIL released while it arrives.
fn read_bytes<'py>(
    py: Python<'py>,
    response: Response<'_>,
    raised: &Raised,
) -> PyResult<Bound<'py, PyBytes>> {
    let len = usize::try_from(response.len())
        .map_err(|_| PyMemoryError::new_err("the file is larger than this system can address"))?;
    PyBytes::new_with(py, len, |buf| {
        py.detach(|| response.read_into(buf))
            .map_err(|e| failure(py, raised, e))
    })
}

/// Data this large is copied into a bytes object with the GIL released.
const COPY_DETACHED: usize = 1 << 20;

/// `data` as a new bytes object; a large copy is made with the GIL released.
fn copy_bytes<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    if data.len() < COPY_DETACHED {
        return Ok(PyBytes::new(py, data));
    }
    PyBytes::new_with(py, data.len(), |buf| {
        py.detach(|| buf.copy_from_slice(data));
        Ok(())
    })
}

/// The exception for a failed fetch: the one a Python callback or signal handler raised, if
/// any (that is what stopped it), else the library's error as its class.
fn failure(py: Python<'_>, raised: &Raised, e: filefetch::Error) -> PyErr {
    raised.take().unwrap_or_else(|| errors::to_py(py, e))
}

/// Declares a function with `fetch`'s parameters and defaults (`fetch`, `afetch`): the
/// arguments are prepared to run as `$runs` says, then `$run` runs the [`Prepared`] fetch.
macro_rules! to_file_function {
    ($(#[$doc:meta])* fn $name:ident -> $ret:ty = $run:path, $runs:expr;) => {
        $(#[$doc])*
        #[pyfunction]
        #[pyo3(signature = (
            host, port, name, dest=None, *, overwrite=false,
            timeout=Seconds::of(config::IDLE_TIMEOUT),
            connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
            max_time=None, speed_limit=Int::of(0),
            speed_time=Seconds::of(config::MIN_RATE_WINDOW),
            max_size=None, retries=Int::of(config::RETRIES as usize),
            retry_delay=Seconds::of(config::RETRY_DELAY), sha256=None, progress=None,
        ), text_signature = "(host, port, name, dest=None, *, overwrite=False, timeout=1.0, \
            connect_timeout=5.0, max_time=None, speed_limit=0, speed_time=30.0, \
            max_size=None, retries=0, retry_delay=0.25, sha256=None, progress=None)")]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<'py>(
            py: Python<'py>,
            host: String,
            port: Int,
            name: String,
            dest: Option<PathBuf>,
            overwrite: bool,
            timeout: Seconds,
            connect_timeout: Seconds,
            max_time: Option<Seconds>,
            speed_limit: Int,
            speed_time: Seconds,
            max_size: Option<Int>,
            retries: Int,
            retry_delay: Seconds,
            sha256: Option<String>,
            progress: Option<Bound<'py, PyAny>>,
        ) -> PyResult<$ret> {
            let limits = Limits {
                timeout,
                connect_timeout,
                max_time,
                speed_limit,
                speed_time,
                max_size,
                retries,
                retry_delay,
                sha256,
            };
            let dest = destination(dest, overwrite);
            $run(prepare(py, $runs, host, port, name, limits, dest, progress)?, py)
        }
    };
}

/// Declares a function with `fetch_bytes`'s parameters and defaults (`fetch_bytes`,
/// `afetch_bytes`), as [`to_file_function!`] does.
macro_rules! to_bytes_function {
    ($(#[$doc:meta])* fn $name:ident -> $ret:ty = $run:path, $runs:expr;) => {
        $(#[$doc])*
        #[pyfunction]
        #[pyo3(signature = (
            host, port, name, *,
            timeout=Seconds::of(config::IDLE_TIMEOUT),
            connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
            max_time=None, speed_limit=Int::of(0),
            speed_time=Seconds::of(config::MIN_RATE_WINDOW),
            max_size=None, retries=Int::of(config::RETRIES as usize),
            retry_delay=Seconds::of(config::RETRY_DELAY), sha256=None,
        ), text_signature = "(host, port, name, *, timeout=1.0, connect_timeout=5.0, \
            max_time=None, speed_limit=0, speed_time=30.0, max_size=None, retries=0, \
            retry_delay=0.25, sha256=None)")]
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name<'py>(
            py: Python<'py>,
            host: String,
            port: Int,
            name: String,
            timeout: Seconds,
            connect_timeout: Seconds,
            max_time: Option<Seconds>,
            speed_limit: Int,
            speed_time: Seconds,
            max_size: Option<Int>,
            retries: Int,
            retry_delay: Seconds,
            sha256: Option<String>,
        ) -> PyResult<$ret> {
            let limits = Limits {
                timeout,
                connect_timeout,
                max_time,
                speed_limit,
                speed_time,
                max_size,
                retries,
                retry_delay,
                sha256,
            };
            let no_dest = |builder| builder;
            $run(prepare(py, $runs, host, port, name, limits, no_dest, None)?, py)
        }
    };
}

to_file_function! {
    /// Download the file `name` from the server at `host`:`port` and return where it landed.
    ///
    /// The file is written to `dest`: a path (str or path-like), an existing directory to put the
    /// file in under its own name, or None for the last component of `name` in the current
    /// directory. An existing destination is never replaced unless `overwrite` is true. The data
    /// goes to a temporary file that is moved into place only once the whole file has arrived, so
    /// after any failure nothing is left behind.
    ///
    /// Limits, in seconds and bytes: `timeout` is the longest wait for any read or write to make
    /// progress; `connect_timeout` the longest for a connection to each address of the host;
    /// `max_time` the longest the whole fetch may take (None: no limit); `speed_limit` and
    /// `speed_time` give up when fewer than `speed_limit` bytes a second arrive over
    /// `speed_time` seconds (curl's options of those names; 0: off); `max_size` refuses a file
    /// larger than that many bytes before any of it is read (None: no limit). A value out of
    /// range raises InvalidArgumentError naming it.
    ///
    /// `retries` more attempts (0 to 100; none by default) are made when one fails in a way the
    /// next may not: the host unreachable, the connection closed before the response or cut
    /// short, a timeout other than `max_time`. The server's answers (no such file, a malformed
    /// response), a file too large and a checksum mismatch are never retried. Each attempt
    /// starts afresh and keeps nothing of the one before; the first wait is `retry_delay`
    /// seconds and each later one doubles, up to 10 s, shortened by up to a quarter at random.
    /// `max_time` bounds all the attempts and waits together, and the exception raised is the
    /// last attempt's. `progress` starts again from 0 on each attempt.
    ///
    /// `sha256`, 64 hexadecimal digits, is the SHA-256 digest the data must have: data with
    /// another digest raises ChecksumMismatchError and nothing is kept (an existing destination
    /// is kept as it was, even with `overwrite`).
    ///
    /// `progress(received, total)`, if given, is called as data arrives (first with received=0);
    /// an exception it raises aborts the download and propagates.
    ///
    /// Raises NotFoundError (a FileNotFoundError) when the server has no such file,
    /// DestinationExistsError (a FileExistsError), TimedOutError (a TimeoutError) when a timeout
    /// or limit expires, ConnectError (a ConnectionError) when the host cannot be reached,
    /// ProtocolError for a malformed response (ServerClosedError, also a ConnectionError, when
    /// the server closed without one), IncompleteTransferError when the data is cut short,
    /// TooLargeError above `max_size`, InvalidArgumentError (a ValueError) for bad arguments and
    /// LocalError (an OSError) when the local file cannot be written. The GIL is released while
    /// the download runs.
    fn fetch -> PathBuf = Prepared::fetch, Runs::Here;
}

to_bytes_function! {
    /// Download the file `name` from the server at `host`:`port` and return its contents.
    ///
    /// The limits, retries and digest are those of fetch, by the same names. The data is read
    /// straight into the returned bytes object, with no copy: its memory, the size the server
    /// announces, is taken when the response header arrives, so `max_size` also bounds what a
    /// server can make this call allocate. Raises the same exceptions as fetch (except those
    /// about the destination). The GIL is released while the download runs.
    fn fetch_bytes -> Bound<'py, PyBytes> = Prepared::fetch_bytes, Runs::Here;
}

to_file_function! {
    /// Download the file `name` from the server at `host`:`port`, in asyncio; returns where it
    /// landed.
    ///
    /// The asyncio form of fetch: the same arguments and defaults, the same result and
    /// exceptions, and the same guarantees (nothing replaced unless `overwrite`, the file moved
    /// into place only once whole, nothing left behind after a failure). Arguments are checked
    /// when it is called (InvalidArgumentError, TypeError); the transfer starts when the result
    /// is awaited. Cancelling the awaiting task (or a wait_for timeout) stops the transfer at
    /// once: its temporary file is gone before CancelledError propagates.
    ///
    /// The transfer runs on the module's own event-driven runtime (a few threads in all,
    /// however many transfers run at once), not in the event loop, and its time limits start
    /// when it is awaited. `progress(received, total)` is called on a thread of that runtime,
    /// one call at a time: updates that arrive during a call are merged into the next one, but
    /// the first of each attempt (received=0) and the last (received=total) are always made,
    /// the last before the file is moved into place. It should return promptly: while it
    /// runs, it holds one of those few threads. An exception it raises aborts the download
    /// and propagates.
    fn afetch -> Bound<'py, PyAny> = Prepared::afetch, Runs::OnRuntime;
}

to_bytes_function! {
    /// Download the file `name` from the server at `host`:`port`, in asyncio; returns its
    /// contents.
    ///
    /// The asyncio form of fetch_bytes: the same arguments and defaults, the same result and
    /// exceptions. Arguments are checked when it is called; the transfer starts when the result
    /// is awaited, on the module's own runtime (as for afetch). The data arrives into memory
    /// taken as it comes (at most `max_size` bytes, when set) and is copied into the returned
    /// bytes object once complete. Cancelling the awaiting task stops the transfer at once.
    fn afetch_bytes -> Bound<'py, PyAny> = Prepared::afetch_bytes, Runs::OnRuntime;
}
