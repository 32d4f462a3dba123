//! `fetch` and `fetch_bytes`: Python arguments to [`filefetch::FetchOptions`], the download
//! run with the GIL released, the outcome back as a path, bytes or an exception.

use std::ops::ControlFlow;
use std::path::PathBuf;

use filefetch::{config, Fetch, FetchOptions};
use pyo3::exceptions::{PyMemoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

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
}

impl Limits {
    /// The options, checked by core's builder, with Ctrl-C handling when called on the main
    /// thread; `more` adds what only `fetch` sets.
    fn options(
        self,
        py: Python<'_>,
        raised: &Raised,
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
        if let Some(check) = raised.signal_check(py)? {
            builder = builder.interrupt(check);
        }
        args::built(py, more(builder).build())
    }
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
    max_size=None, progress=None,
), text_signature = "(host, port, name, dest=None, *, overwrite=False, timeout=1.0, \
    connect_timeout=5.0, max_time=None, speed_limit=0, speed_time=30.0, max_size=None, \
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
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<PathBuf> {
    let port = args::remote_port(py, port)?;
    if let Some(cb) = &progress {
        if !cb.is_callable() {
            return Err(PyTypeError::new_err("progress must be callable"));
        }
    }
    let progress = progress.map(Bound::unbind);
    let raised = Raised::default();
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
    };
    let options = limits.options(py, &raised, |mut builder| {
        builder = builder.overwrite(overwrite);
        if let Some(dest) = dest {
            builder = builder.output(dest);
        }
        builder
    })?;
    let on_progress = {
        let raised = raised.clone();
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
    };
    let result = py.detach(|| {
        Fetch::new(&host, port, &name)
            .options(&options)
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
    max_size=None,
), text_signature = "(host, port, name, *, timeout=1.0, connect_timeout=5.0, max_time=None, \
    speed_limit=0, speed_time=30.0, max_size=None)")]
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
    };
    let options = limits.options(py, &raised, |builder| builder)?;
    let opened = py.detach(|| Fetch::new(&host, port, &name).options(&options).open());
    let response = opened.map_err(|e| failure(py, &raised, e))?;
    let len = usize::try_from(response.len())
        .map_err(|_| PyMemoryError::new_err("the file is larger than this system can address"))?;
    // The bytes object is made at its final size and the data received into it.
    PyBytes::new_with(py, len, |buf| {
        py.detach(|| response.read_into(buf))
            .map_err(|e| failure(py, &raised, e))
    })
}
