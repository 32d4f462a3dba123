//! [`filefetch::Error`] to Python exceptions. The class is chosen by the error's
//! [`ErrorKind`] alone, in one exhaustive match (the Python column of the README's error
//! table); the instance carries the crate's message and, where the variant has them, the
//! numbers of the class (`received`/`expected`, `size`/`limit`) and the `OSError` attributes
//! `errno`, `strerror` and `filename`.

use std::ffi::OsStr;
use std::io;

use filefetch::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyInt, PyString, PyTuple};

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "filefetch._errors";

/// Attributes set on an exception after it is built.
type Attrs<'py> = Vec<(&'static str, Bound<'py, PyAny>)>;

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import(ERRORS_MODULE).map(Bound::unbind))?;
    module.bind(py).getattr(name)
}

/// An instance of `filefetch.<name>` built from `args`, with `attrs` set on it.
fn exception<'py>(
    py: Python<'py>,
    name: &str,
    args: PyResult<Bound<'py, PyTuple>>,
    attrs: Attrs<'py>,
) -> PyErr {
    let build = || -> PyResult<PyErr> {
        let value = class(py, name)?.call1(args?)?;
        for (attr, v) in attrs {
            value.setattr(attr, v)?;
        }
        Ok(PyErr::from_value(value))
    };
    build().unwrap_or_else(|e| e)
}

/// `filefetch.<name>(message)` with `attrs` set on it.
fn with_message<'py>(py: Python<'py>, name: &str, message: String, attrs: Attrs<'py>) -> PyErr {
    exception(py, name, PyTuple::new(py, [message]), attrs)
}

/// `filefetch.<name>(message, a, b)`, for the classes that carry two numbers.
fn with_numbers(py: Python<'_>, name: &str, message: String, a: u64, b: u64) -> PyErr {
    exception(py, name, (message, a, b).into_pyobject(py), Vec::new())
}

/// `filefetch.InvalidArgumentError` (a `ValueError`) with `message`.
pub(crate) fn invalid_argument(py: Python<'_>, message: String) -> PyErr {
    with_message(py, "InvalidArgumentError", message, Vec::new())
}

/// `errno` (and `strerror`) of an OS error, for the `OSError` attributes.
fn os_attrs<'py>(py: Python<'py>, e: &io::Error) -> Attrs<'py> {
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

/// The `filename` attribute, when there is a path.
fn filename<'py>(py: Python<'py>, path: Option<&OsStr>) -> Attrs<'py> {
    path.and_then(|p| p.into_pyobject(py).ok())
        .map(|v| ("filename", v.into_any()))
        .into_iter()
        .collect()
}

/// The Python exception for `error`: one class per [`ErrorKind`], in one exhaustive match
/// (a new kind does not compile until it has a class). Within an arm, the variant's data
/// (a path, a system error, two numbers) is taken where that variant carries it.
///
/// Aborted and Interrupted normally come with a Python exception of their own (the progress
/// callback's, the signal handler's), which the caller raises instead of this one; without
/// one they are `AbortedError` and `InterruptedTransferError`.
pub(crate) fn to_py(py: Python<'_>, error: Error) -> PyErr {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::NotFound => {
            let name = if let Error::NotFound { name } = &error {
                Some(OsStr::new(name.as_str()))
            } else {
                None
            };
            with_message(py, "NotFoundError", message, filename(py, name))
        }
        ErrorKind::DestinationExists => {
            let path = if let Error::DestinationExists { path } = &error {
                Some(path.as_os_str())
            } else {
                None
            };
            with_message(py, "DestinationExistsError", message, filename(py, path))
        }
        ErrorKind::TimedOut => with_message(py, "TimedOutError", message, Vec::new()),
        ErrorKind::Unreachable => {
            let attrs = if let Error::Connect { source, .. } = &error {
                os_attrs(py, source)
            } else {
                Vec::new() // Resolve: the resolver's error has no errno worth showing
            };
            with_message(py, "ConnectError", message, attrs)
        }
        ErrorKind::Protocol => {
            // A close before any response is the one protocol error a caller may want to
            // tell apart: the original server.py answers a missing file that way.
            let name = if matches!(error, Error::ServerClosed) {
                "ServerClosedError"
            } else {
                "ProtocolError"
            };
            with_message(py, name, message, Vec::new())
        }
        ErrorKind::Incomplete => {
            let (received, expected) = if let Error::Incomplete { received, expected } = error {
                (received, expected)
            } else {
                (0, 0)
            };
            with_numbers(py, "IncompleteTransferError", message, received, expected)
        }
        ErrorKind::TooLarge => {
            let (size, limit) = if let Error::TooLarge { size, limit } = error {
                (size, limit)
            } else {
                (0, 0)
            };
            with_numbers(py, "TooLargeError", message, size, limit)
        }
        ErrorKind::ChecksumMismatch => {
            let attrs = if let Error::ChecksumMismatch { expected, actual } = &error {
                vec![
                    (
                        "expected",
                        PyString::new(py, &expected.to_string()).into_any(),
                    ),
                    ("actual", PyString::new(py, &actual.to_string()).into_any()),
                ]
            } else {
                Vec::new()
            };
            with_message(py, "ChecksumMismatchError", message, attrs)
        }
        ErrorKind::InvalidArgument => invalid_argument(py, message),
        ErrorKind::Local => {
            let mut attrs = Vec::new();
            if let Error::Bind { source, .. } = &error {
                attrs = os_attrs(py, source);
            }
            if let Error::Io { path, source } = &error {
                attrs = os_attrs(py, source);
                attrs.extend(filename(py, path.as_deref().map(|p| p.as_os_str())));
            }
            with_message(py, "LocalError", message, attrs)
        }
        ErrorKind::Aborted => with_message(py, "AbortedError", message, Vec::new()),
        ErrorKind::Interrupted => with_message(py, "InterruptedTransferError", message, Vec::new()),
    }
}
