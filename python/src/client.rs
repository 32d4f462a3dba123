//! `fetch` and `fetch_bytes`, and their asyncio forms `afetch` and `afetch_bytes`: Python
//! arguments to [`filefetch::FetchOptions`], the download run with the GIL released (on the
//! caller's thread, or on one of [`aio`]'s), the outcome back as a path, bytes or an
//! exception.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use filefetch::{config, Fetch, FetchOptions, Response, Sha256Digest};
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::aio::{self, Stop};
use crate::args::{self, Int, Seconds};
use crate::errors;
use crate::interrupt::Raised;

/// The keywords both functions take about time, rate and size, as Python gave them.
struct Limits {
    timeout: Seconds,
    connect_timeout: Seconds,
    max_time: Option<Seconds>,
    speed_limit: Int,
    speed_time: Seconds,
    max_size: Option<Int>,
    sha256: Option<String>,
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
    fn options(
        self,
        py: Python<'_>,
        interrupt: Option<impl Fn() -> bool + Send + Sync + 'static>,
        more: impl FnOnce(filefetch::FetchOptionsBuilder) -> filefetch::FetchOptionsBuilder,
    ) -> PyResult<FetchOptions> {
        let mut builder = FetchOptions::builder()
            .idle_timeout(args::duration(py, "timeout", self.timeout)?)
            .connect_timeout(args::duration(py, "connect_timeout", self.connect_timeout)?)
            .min_rate(
                args::unsigned(py, "speed_limit", self.speed_limit)?,
                args::duration(py, "speed_time", self.speed_time)?,
            );
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

/// `fetch` with the digest its data must have, if any.
fn with_digest(fetch: Fetch<'_>, digest: Option<Sha256Digest>) -> Fetch<'_> {
    match digest {
        Some(digest) => fetch.expect_sha256(digest),
        None => fetch,
    }
}

/// What `fetch` sets beyond the limits: the destination and whether to replace it.
fn destination(
    dest: Option<PathBuf>,
    overwrite: bool,
) -> impl FnOnce(filefetch::FetchOptionsBuilder) -> filefetch::FetchOptionsBuilder {
    move |mut builder| {
        builder = builder.overwrite(overwrite);
        if let Some(dest) = dest {
            builder = builder.output(dest);
        }
        builder
    }
}

/// The `progress` argument, checked to be callable.
fn progress_arg(progress: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    if let Some(cb) = &progress {
        if !cb.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
    }
    Ok(progress.map(Bound::unbind))
}

/// The fetch's progress callback: calls the Python one, if any (attaching to Python from
/// whatever thread the fetch runs on), and stops the fetch when it raises, keeping the
/// exception in `raised`.
fn on_progress(
    progress: Option<Py<PyAny>>,
    raised: Raised,
) -> impl FnMut(u64, u64) -> ControlFlow<()> + Send {
    move |received: u64, total: u64| match &progress {
        None => ControlFlow::Continue(()),
        Some(cb) => Python::attach(|py| match cb.call1(py, (received, total)) {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => {
                raised.store(e);
                ControlFlow::Break(())
            }
        }),
    }
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

/// The exception for a failed fetch: the one a Python callback or signal handler raised, if
/// any (that is what stopped it), else the library's error as its class.
fn failure(py: Python<'_>, raised: &Raised, e: filefetch::Error) -> PyErr {
    raised.take().unwrap_or_else(|| errors::to_py(py, e))
}

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
#[pyfunction]
#[pyo3(signature = (
    host, port, name, dest=None, *, overwrite=false,
    timeout=Seconds::of(config::IDLE_TIMEOUT), connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
    max_time=None, speed_limit=Int::of(0), speed_time=Seconds::of(config::MIN_RATE_WINDOW),
    max_size=None, sha256=None, progress=None,
), text_signature = "(host, port, name, dest=None, *, overwrite=False, timeout=1.0, \
    connect_timeout=5.0, max_time=None, speed_limit=0, speed_time=30.0, max_size=None, sha256=None, \
    progress=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch(
    py: Python<'_>,
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
    sha256: Option<String>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PathBuf> {
    let port = args::remote_port(py, port)?;
    let progress = progress_arg(progress)?;
    let raised = Raised::default();
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
        sha256,
    };
    let interrupt = raised.signal_check(py)?;
    let digest = limits.digest(py)?;
    let options = limits.options(py, interrupt, destination(dest, overwrite))?;
    let on_progress = on_progress(progress, raised.clone());
    let result = py.detach(|| {
        with_digest(Fetch::new(&host, port, &name).options(&options), digest)
            .progress(on_progress)
            .to_file()
    });
    match result {
        Ok(fetched) => Ok(fetched.path),
        Err(e) => Err(failure(py, &raised, e)),
    }
}

/// Download the file `name` from the server at `host`:`port` and return its contents.
///
/// The limits are those of fetch, by the same names. The data is read straight into the
/// returned bytes object, with no copy: its memory, the size the server announces, is taken
/// when the response header arrives, so `max_size` also bounds what a server can make this
/// call allocate. Raises the same exceptions as fetch (except those about the destination).
/// The GIL is released while the download runs.
#[pyfunction]
#[pyo3(signature = (
    host, port, name, *,
    timeout=Seconds::of(config::IDLE_TIMEOUT), connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
    max_time=None, speed_limit=Int::of(0), speed_time=Seconds::of(config::MIN_RATE_WINDOW),
    max_size=None, sha256=None,
), text_signature = "(host, port, name, *, timeout=1.0, connect_timeout=5.0, max_time=None, \
    speed_limit=0, speed_time=30.0, max_size=None, sha256=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_bytes<'py>(
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
    sha256: Option<String>,
) -> PyResult<Bound<'py, PyBytes>> {
    let port = args::remote_port(py, port)?;
    let raised = Raised::default();
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
        sha256,
    };
    let interrupt = raised.signal_check(py)?;
    let digest = limits.digest(py)?;
    let options = limits.options(py, interrupt, |builder| builder)?;
    let opened =
        py.detach(|| with_digest(Fetch::new(&host, port, &name).options(&options), digest).open());
    let response = opened.map_err(|e| failure(py, &raised, e))?;
    read_bytes(py, response, &raised)
}

/// Download the file `name` from the server at `host`:`port`, in asyncio; returns where it
/// landed.
///
/// The asyncio form of fetch: the same arguments and defaults, the same result and
/// exceptions, and the same guarantees (nothing replaced unless `overwrite`, the file moved
/// into place only once whole, nothing left behind after a failure). Arguments are checked
/// when it is called (InvalidArgumentError, TypeError); the transfer starts when the result
/// is awaited. Cancelling the awaiting task stops the transfer within 50 ms and removes its
/// temporary file before CancelledError propagates.
///
/// The transfer runs on a thread of the module's own runtime, not in the event loop: at
/// most 16 run at once in a process, and further calls wait for one to end (their time
/// limits start when they do). `progress(received, total)` is called on that thread; an
/// exception it raises aborts the download and propagates.
#[pyfunction]
#[pyo3(signature = (
    host, port, name, dest=None, *, overwrite=false,
    timeout=Seconds::of(config::IDLE_TIMEOUT), connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
    max_time=None, speed_limit=Int::of(0), speed_time=Seconds::of(config::MIN_RATE_WINDOW),
    max_size=None, sha256=None, progress=None,
), text_signature = "(host, port, name, dest=None, *, overwrite=False, timeout=1.0, \
    connect_timeout=5.0, max_time=None, speed_limit=0, speed_time=30.0, max_size=None, sha256=None, \
    progress=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn afetch<'py>(
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
    sha256: Option<String>,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let port = args::remote_port(py, port)?;
    let progress = progress_arg(progress)?;
    let raised = Raised::default();
    let stop = Arc::new(Stop::default());
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
        sha256,
    };
    let digest = limits.digest(py)?;
    let options = limits.options(py, Some(stop.check()), destination(dest, overwrite))?;
    let on_progress = on_progress(progress, raised.clone());
    aio::transfer(py, "afetch", stop, move || {
        let result = with_digest(Fetch::new(&host, port, &name).options(&options), digest)
            .progress(on_progress)
            .to_file();
        match result {
            Ok(fetched) => Ok(fetched.path),
            Err(e) => aio::with_python(|py| Err(failure(py, &raised, e))),
        }
    })
}

/// Download the file `name` from the server at `host`:`port`, in asyncio; returns its
/// contents.
///
/// The asyncio form of fetch_bytes: the same arguments and defaults, the same result and
/// exceptions. Arguments are checked when it is called; the transfer starts when the result
/// is awaited, on a thread of the module's own runtime (at most 16 at once, as for afetch).
/// Cancelling the awaiting task stops the transfer within 50 ms.
#[pyfunction]
#[pyo3(signature = (
    host, port, name, *,
    timeout=Seconds::of(config::IDLE_TIMEOUT), connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
    max_time=None, speed_limit=Int::of(0), speed_time=Seconds::of(config::MIN_RATE_WINDOW),
    max_size=None, sha256=None,
), text_signature = "(host, port, name, *, timeout=1.0, connect_timeout=5.0, max_time=None, \
    speed_limit=0, speed_time=30.0, max_size=None, sha256=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn afetch_bytes<'py>(
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
    sha256: Option<String>,
) -> PyResult<Bound<'py, PyAny>> {
    let port = args::remote_port(py, port)?;
    let raised = Raised::default();
    let stop = Arc::new(Stop::default());
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
        sha256,
    };
    let digest = limits.digest(py)?;
    let options = limits.options(py, Some(stop.check()), |builder| builder)?;
    aio::transfer(py, "afetch_bytes", stop, move || {
        let opened = with_digest(Fetch::new(&host, port, &name).options(&options), digest).open();
        aio::with_python(|py| {
            let response = opened.map_err(|e| failure(py, &raised, e))?;
            read_bytes(py, response, &raised).map(Bound::unbind)
        })
    })
}
