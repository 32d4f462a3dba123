//! `fetch` and `fetch_bytes`: Python arguments to [`filefetch::FetchOptions`], the download
//! run with the GIL released, the outcome back as a path, bytes or an exception.

use std::ops::ControlFlow;
use std::path::PathBuf;

use filefetch::FetchOptions;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::args;
use crate::errors;
use crate::interrupt::Raised;

/// Options shared by both functions, with Ctrl-C handling when called on the main thread.
fn options(py: Python<'_>, timeout: f64, raised: &Raised) -> PyResult<FetchOptions> {
    let mut options = FetchOptions::new().idle_timeout(args::seconds(py, "timeout", timeout)?);
    if let Some(check) = raised.signal_check(py)? {
        options = options.interrupt(check);
    }
    Ok(options)
}

/// Download the file `name` from the server at `host`:`port` and return where it landed.
///
/// The file is written to `dest`: a path (str or path-like), an existing directory to put the
/// file in under its own name, or None for the last component of `name` in the current
/// directory. An existing destination is never replaced unless `overwrite` is true. The data
/// goes to a temporary file that is moved into place only once the whole file has arrived, so
/// after any failure nothing is left behind.
///
/// `timeout` is the longest wait, in seconds, for any read or write to make progress.
/// `progress(received, total)`, if given, is called as data arrives (first with received=0);
/// an exception it raises aborts the download and propagates.
///
/// Raises NotFoundError (a FileNotFoundError) when the server has no such file,
/// DestinationExistsError (a FileExistsError), TimedOutError (a TimeoutError), ConnectError or
/// ServerClosedError (ConnectionErrors), ProtocolError or IncompleteTransferError when the
/// response is wrong or cut short, InvalidArgumentError (a ValueError) for bad arguments and
/// LocalError (an OSError) when the local file cannot be written. The GIL is released while
/// the download runs.
#[pyfunction]
#[pyo3(signature = (host, port, name, dest=None, *, overwrite=false, timeout=1.0, progress=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch(
    py: Python<'_>,
    host: String,
    port: i64,
    name: String,
    dest: Option<PathBuf>,
    overwrite: bool,
    timeout: f64,
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
    let mut options = options(py, timeout, &raised)?.overwrite(overwrite);
    if let Some(dest) = dest {
        options = options.output(dest);
    }
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
    let result =
        py.detach(|| filefetch::fetch_with_progress(&host, port, &name, &options, on_progress));
    match result {
        Ok(fetched) => Ok(fetched.path),
        Err(e) => Err(raised.take().unwrap_or_else(|| errors::to_py(py, e))),
    }
}

/// Download the file `name` from the server at `host`:`port` and return its contents.
///
/// `timeout` is the longest wait, in seconds, for any read or write to make progress. Raises
/// the same exceptions as fetch (except those about the destination). The GIL is released
/// while the download runs.
#[pyfunction]
#[pyo3(signature = (host, port, name, *, timeout=1.0))]
pub(crate) fn fetch_bytes<'py>(
    py: Python<'py>,
    host: String,
    port: i64,
    name: String,
    timeout: f64,
) -> PyResult<Bound<'py, PyBytes>> {
    let port = args::remote_port(py, port)?;
    let raised = Raised::default();
    let options = options(py, timeout, &raised)?;
    let result = py.detach(|| filefetch::fetch_bytes(&host, port, &name, &options));
    match result {
        Ok(data) => Ok(PyBytes::new(py, &data)),
        Err(e) => Err(raised.take().unwrap_or_else(|| errors::to_py(py, e))),
    }
}
