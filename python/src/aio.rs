//! What the asyncio functions and `AsyncServer` share: the tokio runtime that drives them
//! (pyo3-async-runtimes' runtime, configured here), and the coroutine through which a future
//! of that runtime is awaited, cancelled, and its outcome handed to the event loop.
//!
//! The runtime is small: [`WORKERS`] worker threads and at most [`BLOCKING_THREADS`] more.
//! A transfer is core's asynchronous fetch, a future on the workers like any other: no thread
//! of its own, no slot to wait for, however many run at once. What must block runs on the
//! runtime's bounded blocking pool: core's file operations (`tokio::fs`), the hand-over of
//! each outcome (which waits for the GIL), and progress callbacks (see `progress`). The
//! workers themselves never wait for the GIL.
//!
//! What a caller awaits is a coroutine of `filefetch._aio` (`settle`). It spawns the Rust
//! future as a task of the runtime when first awaited. When its asyncio task is cancelled,
//! the coroutine stops the future as [`OnCancel`] says, and waits for the future's task to
//! end before `CancelledError` propagates. A transfer's task is aborted: the runtime drops
//! its future, and with it the connection and the temporary file, before the task counts as
//! ended, so by the time `CancelledError` propagates nothing of the transfer is left.
//!
//! The outcome reaches the event loop through `call_soon_threadsafe`, called from a blocking
//! thread of the runtime, which lets go of the GIL inside that call and must take it back
//! after. The coroutine returns only once that thread has let go of Python for good
//! ([`Handoff`]): otherwise the program could end meanwhile, and a thread taking the GIL of
//! a finalized interpreter crashes the process as it exits (pyo3-async-runtimes' own
//! `future_into_py` hands over the same way without waiting, which is why it is not used).

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use filefetch::Error;
use pyo3::exceptions::PySystemError;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyTuple, PyWeakrefMethods, PyWeakrefReference};
use pyo3::IntoPyObjectExt;
use tokio::task::{AbortHandle, JoinError};

use crate::errors;

/// The runtime's worker threads, on which every future runs.
const WORKERS: usize = 2;

/// The most threads the runtime starts besides its workers, for what blocks: file
/// operations, hand-overs, progress callbacks. More such work waits its turn.
const BLOCKING_THREADS: usize = 4;

/// The Python module with the coroutine that awaits a future of the runtime.
const GLUE_MODULE: &str = "filefetch._aio";

/// Sets up the runtime pyo3-async-runtimes builds when first used: [`WORKERS`] workers and a
/// blocking pool of at most [`BLOCKING_THREADS`].
pub(crate) fn configure() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(WORKERS)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("filefetch-async")
        .enable_all();
    pyo3_async_runtimes::tokio::init(builder);
}

/// What a future of the runtime ends with: made into the coroutine's result (or exception)
/// by the thread that hands it over, with the GIL, so that the future itself never needs it.
pub(crate) type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// An outcome that is `value`.
pub(crate) fn ready<T>(value: T) -> Outcome
where
    T: for<'py> IntoPyObject<'py> + Send + 'static,
{
    Box::new(move |py| value.into_py_any(py))
}

/// What cancelling the coroutine does to its future, which the coroutine then waits for.
pub(crate) enum OnCancel {
    /// Drops it: its task is aborted.
    Drop,
    /// Calls this, after which the future ends on its own (soon).
    Call(Box<dyn Fn() + Send + Sync>),
}

/// A coroutine whose result is `fut`'s outcome, run as a task of the runtime from its first
/// await, named `name` (in its repr and in "never awaited" warnings). Cancelling it stops
/// `fut` as `on_cancel` says and waits for its task to end, then for `after`, before
/// `CancelledError` propagates. `after` also runs once `fut` has completed, before its
/// outcome is handed over: whatever `fut` started that may outlive it ends there.
pub(crate) fn coroutine<'py>(
    py: Python<'py>,
    name: &str,
    fut: impl Future<Output = Outcome> + Send + 'static,
    on_cancel: OnCancel,
    after: impl Future<Output = ()> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>> {
    let task = Arc::new(OnceLock::<AbortHandle>::new());
    let parts = Mutex::new(Some((fut, after)));
    let started = task.clone();
    let start = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
        let parts = parts.lock().unwrap_or_else(PoisonError::into_inner).take();
        let (fut, after) =
            parts.ok_or_else(|| PySystemError::new_err("coroutine started twice"))?;
        spawn(args.py(), fut, after, &started).map(Bound::unbind)
    })?;
    let stop = PyCFunction::new_closure(py, None, None, move |_args, _kwargs| match &on_cancel {
        OnCancel::Drop => {
            if let Some(task) = task.get() {
                task.abort();
            }
        }
        OnCancel::Call(stop) => stop(),
    })?;
    let coroutine = glue(py, "settle")?.call1((start, stop))?;
    let short = name.rsplit('.').next().unwrap_or(name);
    coroutine.setattr("__name__", short)?;
    coroutine.setattr("__qualname__", name)?;
    Ok(coroutine)
}

/// Spawns `fut` on the runtime (its abort handle into `task`), and a task that waits for it
/// and `after`, then hands its outcome over. Returns an asyncio future of the running loop
/// that gets the outcome, and the [`Handoff`] to release once done with it.
fn spawn<'py>(
    py: Python<'py>,
    fut: impl Future<Output = Outcome> + Send + 'static,
    after: impl Future<Output = ()> + Send + 'static,
    task: &OnceLock<AbortHandle>,
) -> PyResult<Bound<'py, PyTuple>> {
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let shared = Arc::new(Shared::default());
    let handoff = Bound::new(py, Handoff(shared.clone()))?;
    // Only a weak reference: were the future kept alive from here, so would be the coroutine
    // awaiting it, and a coroutine whose loop was discarded could never be closed.
    let future_ref = PyWeakrefReference::new(&future)?.unbind();
    let event_loop_ref = event_loop.unbind();
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    // A task of its own: the one aborted on cancellation, and a panic in `fut` still
    // reaches the coroutine.
    let running = runtime.spawn(fut);
    let _ = task.set(running.abort_handle());
    runtime.spawn(async move {
        // An aborted task ends once its future has been dropped.
        let outcome = running.await.unwrap_or_else(ended_early);
        after.await;
        // Handing over takes the GIL: a blocking thread waits for it, not a worker.
        tokio::task::spawn_blocking(move || {
            hand_over(&shared, event_loop_ref, future_ref, outcome)
        });
    });
    PyTuple::new(py, [future, handoff.into_any()])
}

/// The outcome of a task that was aborted (the coroutine, cancelled, lets
/// `CancelledError` propagate instead) or panicked (raised as pyo3 raises a panic).
fn ended_early(e: JoinError) -> Outcome {
    if e.is_cancelled() {
        return Box::new(|py| Err(errors::to_py(py, Error::Interrupted)));
    }
    let message = e.to_string();
    Box::new(move |_| Err(PanicException::new_err(message)))
}

/// Sets `future`'s outcome from a thread of the runtime, through the loop's
/// `call_soon_threadsafe`, unless the coroutine has ended or the future is gone.
fn hand_over(
    shared: &Shared,
    event_loop: Py<PyAny>,
    future: Py<PyWeakrefReference>,
    outcome: Outcome,
) {
    if !shared.begin() {
        // Abandoned: whatever Python objects the outcome holds are released later, by
        // pyo3, without this thread taking the GIL.
        return;
    }
    let _ = Python::try_attach(move |py| -> PyResult<()> {
        let Some(future) = future.bind(py).upgrade() else {
            return Ok(()); // collected, and its coroutine with it
        };
        let (ok, value) = match outcome(py) {
            Ok(value) => (true, value),
            Err(e) => (false, e.into_value(py).into_any()),
        };
        let complete = glue(py, "complete")?;
        // Fails only when the loop is closed: nobody waits for the outcome then.
        event_loop.call_method1(py, "call_soon_threadsafe", (complete, future, ok, value))?;
        Ok(())
    });
    shared.end();
}

/// Where a future's hand-over is: see [`Handoff`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The future runs.
    #[default]
    Pending,
    /// A thread of the runtime is handing the outcome over, in Python.
    HandingOver,
    /// The hand-over is done and its thread is out of Python.
    Over,
    /// The coroutine ended first, closed without being resumed (as when its event loop is
    /// discarded): the outcome is not handed over.
    Abandoned,
}

#[derive(Default)]
struct Shared {
    phase: Mutex<Phase>,
    changed: Condvar,
}

impl Shared {
    fn phase(&self) -> MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the hand-over, unless the coroutine has ended.
    fn begin(&self) -> bool {
        let mut phase = self.phase();
        if *phase != Phase::Pending {
            return false;
        }
        *phase = Phase::HandingOver;
        true
    }

    fn end(&self) {
        *self.phase() = Phase::Over;
        self.changed.notify_all();
    }
}

/// The coroutine's side of a hand-over. Its `release()`, called as the coroutine ends, waits
/// (with the GIL released) until the thread handing the outcome over is out of Python.
#[pyclass(frozen, module = "filefetch._aio")]
struct Handoff(Arc<Shared>);

#[pymethods]
impl Handoff {
    fn release(&self, py: Python<'_>) {
        let shared = &self.0;
        py.detach(|| {
            let mut phase = shared.phase();
            // The thread handing over needs the GIL, released here, for a moment.
            while *phase == Phase::HandingOver {
                phase = shared
                    .changed
                    .wait(phase)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if *phase == Phase::Pending {
                *phase = Phase::Abandoned;
            }
        });
    }
}

/// `filefetch._aio.<name>`.
fn glue<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import(GLUE_MODULE).map(Bound::unbind))?;
    module.bind(py).getattr(name)
}
