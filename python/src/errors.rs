//! [`filefetch::Error`] to Python exceptions: each variant becomes an instance of a class of
//! `filefetch._errors` (all rooted at `filefetch.Error`) carrying the crate's message and,
//! where the builtin base has them, `errno` and `filename`.

use std::ffi::OsStr;
use std::io;

use filefetch::Error;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyString, PyTuple};

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "filefetch._errors";

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import(ERRORS_MODULE).map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

/// An instance of `filefetch.<name>` built from `args`, with `attrs` set on it.
fn exception<'py>(
    py: Python<'py>,
    name: &str,
    args: Bound<'py, PyTuple>,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let value = class(py, name)?.call1(args)?;
        for (attr, v) in attrs {
            value.setattr(*attr, v)?;
        }
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

fn with_message(py: Python<'_>, name: &str, message: String) -> PyErr {
    with_attrs(py, name, message, &[])
}

fn with_attrs<'py>(
    py: Python<'py>,
    name: &str,
    message: String,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyErr {
    match PyTuple::new(py, [message]) {
        Ok(args) => exception(py, name, args, attrs),
        Err(e) => e,
    }
}

/// `filefetch.InvalidArgumentError` (a `ValueError`) with `message`.
pub(crate) fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    with_message(py, "InvalidArgumentError", message)
}

/// `errno` (and `strerror`) of an OS error, for the `OSError` attributes.
fn os_attrs<'py>(py: Python<'py>, e: &io::Error) -> Vec<(&'static str, Bound<'py, PyAny>)> {
    let mut attrs = Vec::new();
    if let Some(code) = os_code(e) {
        attrs.push(("errno", PyInt::new(py, code).into_any()));
        let text = io::Error::from_raw_os_error(code).to_string();
        // "Permission denied (os error 13)" -> "Permission denied", like Python's strerror.
        let text = text
            .split(" (os error")
            .next()
            .unwrap_or_default()
            .to_owned();
        attrs.push(("strerror", PyString::new(py, &text).into_any()));
    }
    attrs
}

/// The OS error code of `e`. An error that wraps a system error to add a path hides the code;
/// then the usual code for its kind stands in, for the kinds a local file operation meets.
fn os_code(e: &io::Error) -> Option<i32> {
    if let Some(code) = e.raw_os_error() {
        return Some(code);
    }
    use io::ErrorKind as K;
    Some(match e.kind() {
        K::NotFound => libc::ENOENT,
        K::PermissionDenied => libc::EACCES,
        K::AlreadyExists => libc::EEXIST,
        K::NotADirectory => libc::ENOTDIR,
        K::IsADirectory => libc::EISDIR,
        K::ReadOnlyFilesystem => libc::EROFS,
        K::StorageFull => libc::ENOSPC,
        _ => return None,
    })
}

fn filename<'py>(py: Python<'py>, path: &OsStr) -> Option<(&'static str, Bound<'py, PyAny>)> {
    path.into_pyobject(py)
        .ok()
        .map(|v| ("filename", v.into_any()))
}

/// The Python exception for `error`.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    match &error {
        Error::NotFound { name } => {
            let attrs: Vec<_> = filename(py, OsStr::new(name)).into_iter().collect();
            with_attrs(py, "NotFoundError", message, &attrs)
        }
        Error::DestinationExists { path } => {
            let attrs: Vec<_> = filename(py, path.as_os_str()).into_iter().collect();
            with_attrs(py, "DestinationExistsError", message, &attrs)
        }
        Error::Timeout { .. } => with_message(py, "TimedOutError", message),
        Error::ServerClosed => with_message(py, "ServerClosedError", message),
        Error::Resolve { .. } => with_message(py, "ConnectError", message),
        Error::Connect { source, .. } => {
            with_attrs(py, "ConnectError", message, &os_attrs(py, source))
        }
        Error::MalformedResponse(_) | Error::TruncatedHeader { .. } | Error::ExcessData { .. } => {
            with_message(py, "ProtocolError", message)
        }
        Error::Incomplete { received, expected } => {
            match (message, *received, *expected).into_pyobject(py) {
                Ok(args) => exception(py, "IncompleteTransferError", args, &[]),
                Err(e) => e,
            }
        }
        Error::InvalidName { .. } => invalid_argument(py, message),
        Error::Bind { source, .. } => with_attrs(py, "LocalError", message, &os_attrs(py, source)),
        Error::Io { path, source } => {
            let mut attrs = os_attrs(py, source);
            attrs.extend(path.as_ref().and_then(|p| filename(py, p.as_os_str())));
            with_attrs(py, "LocalError", message, &attrs)
        }
        // Aborted and Interrupted normally carry a Python exception of their own (from the
        // progress callback or the signal check), raised instead of this one.
        _ => with_message(py, "Error", message),
    }
}
