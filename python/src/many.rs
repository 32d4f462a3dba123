//! `fetch_many`: core's [`FetchMany`] from Python, a list of files from one server, several
//! at a time, each into its own file.
//!
//! The files are fetched on threads of their own while the calling thread, with the GIL
//! released, waits for them in slices of [`SIGNAL_POLL`] and runs Python's signal handlers
//! in between (as `fetch` does on its own thread). The first handler that raises
//! (KeyboardInterrupt on Ctrl-C) stops every fetch through the options' interrupt check:
//! those under way stop within 50 ms and leave nothing behind, those not started are not
//! started, and the exception propagates once they have all stopped.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;

use filefetch::config::JOBS;
use filefetch::{config, Error, FetchMany, Fetched, Sha256Digest};
use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyString};

use crate::args::{self, Int, Seconds};
use crate::client::{destination, progress_arg, Limits};
use crate::errors;
use crate::interrupt::{on_main_thread, Raised, SIGNAL_POLL};

/// The Python class of each file's outcome.
fn result_class(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CLASS
        .get_or_try_init(py, || {
            py.import("filefetch._many")?
                .getattr("FetchResult")
                .map(Bound::unbind)
        })
        .map(|class| class.bind(py))
}

/// The `names` argument: any iterable of `str`, but not a `str` itself (whose characters
/// would each be taken for a name).
fn names_arg(names: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if names.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "names must be an iterable of names, not a str",
        ));
    }
    names
        .try_iter()?
        .map(|name| name?.extract::<String>())
        .collect()
}

/// The digest each name's data must have, from the `sha256` mapping of names to 64
/// hexadecimal digits, which must have one for every name (checked before anything is
/// fetched, as the command checks its checksum list).
fn digests(
    py: Python<'_>,
    names: &[String],
    sha256: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<Option<Sha256Digest>>> {
    let Some(digests) = sha256 else {
        return Ok(vec![None; names.len()]);
    };
    if digests.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "sha256 must be a mapping of names to digests, not a str",
        ));
    }
    names
        .iter()
        .map(|name| {
            let hex: String = match digests.get_item(name) {
                Ok(hex) => hex.extract()?,
                Err(e) if e.is_instance_of::<PyKeyError>(py) => {
                    return Err(errors::to_py(
                        py,
                        Error::InvalidOption {
                            option: "sha256",
                            problem: format!("no digest for {name:?}"),
                        },
                    ))
                }
                Err(e) => return Err(e),
            };
            args::built(py, hex.parse::<Sha256Digest>()).map(Some)
        })
        .collect()
}

/// Download the files `names` from the server at `host`:`port`, `jobs` at a time, and
/// return each one's outcome, in the order of `names`.
///
/// Each file is fetched over its own connection as fetch fetches one, with the same
/// keywords (limits, retries and `max_size` apply to each file on its own), into `dest`: an
/// existing directory, or None for the current directory (with a single name, `dest` may
/// also be a file path, as for fetch). Each lands whole under the last component of its
/// name or not at all, never over an existing file unless `overwrite` is true, and one
/// file's failure leaves the others alone. Two names with the same last component are
/// decided in the order given: the first is fetched, each later one fails with
/// DestinationExistsError without connecting, so no file of the list replaces another.
/// `jobs` is from 1 to 64 (4 by default).
///
/// Returns a list of FetchResult, one per name in the order given: `name`, and either
/// `path` and `size` (bytes) of the file that landed, or `error`, the exception fetch would
/// have raised for it (NotFoundError, TimedOutError...); `ok` tells which. Raises, before
/// connecting, only when the call itself is wrong: InvalidArgumentError for a value out of
/// range (`jobs` too), several names with a `dest` that is not a directory, or a name
/// missing from `sha256`; TypeError for `names` given as a str.
///
/// `sha256`, if given, maps each name to the SHA-256 digest its data must have (64
/// hexadecimal digits); every name must have one. A file whose data differs fails with
/// ChecksumMismatchError and nothing of it is kept. `compute_sha256` computes each file's
/// digest as its data arrives (on the buffered receive path, not Linux's `splice`), without
/// checking it. Either way, the digest of a file that landed is its FetchResult's `sha256`
/// (64 lowercase hexadecimal digits; None when no digest was computed).
/// `progress(name, received, total)` is
/// called as each file's data arrives, from the threads that fetch (several at once); an
/// exception it raises stops that file, and becomes its `error`.
///
/// Blocks with the GIL released. The first time a signal handler raises (KeyboardInterrupt
/// on Ctrl-C), the fetches under way stop within a fraction of a second, leaving nothing of
/// theirs behind, the files not started are not fetched, and the exception propagates;
/// files that had already landed stay.
#[pyfunction]
#[pyo3(signature = (
    host, port, names, dest=None, *, jobs=Int::of(JOBS), overwrite=false,
    timeout=Seconds::of(config::IDLE_TIMEOUT), connect_timeout=Seconds::of(config::CONNECT_TIMEOUT),
    max_time=None, speed_limit=Int::of(0), speed_time=Seconds::of(config::MIN_RATE_WINDOW),
    max_size=None, retries=Int::of(config::RETRIES as usize),
    retry_delay=Seconds::of(config::RETRY_DELAY), sha256=None, compute_sha256=false,
    progress=None,
), text_signature = "(host, port, names, dest=None, *, jobs=4, overwrite=False, timeout=1.0, \
    connect_timeout=5.0, max_time=None, speed_limit=0, speed_time=30.0, max_size=None, \
    retries=0, retry_delay=0.25, sha256=None, compute_sha256=False, progress=None)")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn fetch_many<'py>(
    py: Python<'py>,
    host: String,
    port: Int,
    names: Bound<'py, PyAny>,
    dest: Option<PathBuf>,
    jobs: Int,
    overwrite: bool,
    timeout: Seconds,
    connect_timeout: Seconds,
    max_time: Option<Seconds>,
    speed_limit: Int,
    speed_time: Seconds,
    max_size: Option<Int>,
    retries: Int,
    retry_delay: Seconds,
    sha256: Option<Bound<'py, PyAny>>,
    compute_sha256: bool,
    progress: Option<Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyList>> {
    let port = args::remote_port(py, port)?;
    let names = names_arg(&names)?;
    let digests = digests(py, &names, sha256.as_ref())?;
    let jobs: usize = args::unsigned(py, "jobs", jobs)?;
    let progress = progress_arg(progress)?;
    let limits = Limits {
        timeout,
        connect_timeout,
        max_time,
        speed_limit,
        speed_time,
        max_size,
        retries,
        retry_delay,
        sha256: None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let check = {
        let stop = stop.clone();
        move || stop.load(Ordering::SeqCst)
    };
    let place = destination(dest, overwrite);
    let options = limits.options(py, Some(check), move |builder| {
        place(builder).sha256(compute_sha256)
    })?;
    // The exception each file's progress callback raised, if any: that file's error.
    let raised: Vec<Raised> = names.iter().map(|_| Raised::default()).collect();
    let watch_signals = on_main_thread(py)?;

    let mut many = FetchMany::new(&host, port).options(&options).jobs(jobs);
    for (name, digest) in names.iter().zip(&digests) {
        many = match digest {
            Some(digest) => many.file_with_sha256(name.as_str(), *digest),
            None => many.file(name.as_str()),
        };
    }
    if let Some(callback) = &progress {
        let (names, raised) = (&names, &raised);
        many = many.progress(move |index, received, total| {
            Python::attach(|py| {
                match callback.call1(py, (names[index].as_str(), received, total)) {
                    Ok(_) => ControlFlow::Continue(()),
                    Err(e) => {
                        raised[index].store(e);
                        ControlFlow::Break(())
                    }
                }
            })
        });
    }

    let mut interrupted: Option<PyErr> = None;
    let outcome = py.detach(|| {
        std::thread::scope(|scope| {
            let (done, finished) = mpsc::channel();
            scope.spawn(move || {
                let _ = done.send(many.run());
            });
            loop {
                match finished.recv_timeout(SIGNAL_POLL) {
                    Ok(outcome) => return Some(outcome),
                    Err(RecvTimeoutError::Timeout) => {
                        if !watch_signals || interrupted.is_some() {
                            continue;
                        }
                        if let Some(Err(e)) = Python::try_attach(|py| py.check_signals()) {
                            interrupted = Some(e);
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    // The thread panicked: the scope raises its panic as it ends.
                    Err(RecvTimeoutError::Disconnected) => return None,
                }
            }
        })
    });
    if let Some(interrupt) = interrupted {
        return Err(interrupt);
    }
    let outcome = outcome.ok_or_else(|| PyRuntimeError::new_err("fetch_many stopped"))?;
    let results = outcome.map_err(|e| errors::to_py(py, e))?;
    let class = result_class(py)?;
    let list = PyList::empty(py);
    for (index, (name, result)) in results.into_iter().enumerate() {
        let item = match result {
            Ok(Fetched {
                path,
                bytes,
                sha256,
                ..
            }) => {
                let digest = sha256.map(|digest| digest.to_string());
                class.call1((name, path, bytes, py.None(), digest))?
            }
            Err(e) => {
                let error = raised[index].take().unwrap_or_else(|| errors::to_py(py, e));
                class.call1((name, py.None(), py.None(), error.into_value(py), py.None()))?
            }
        };
        list.append(item)?;
    }
    Ok(list)
}
