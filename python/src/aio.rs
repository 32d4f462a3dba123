//! What the asyncio functions and `AsyncServer` share: the tokio runtime that drives them
//! (pyo3-async-runtimes' runtime, configured here), the slots that bound the threads
//! transfers take, the stop signal that cancelling a task sends to its transfer, and the
//! hand-over of a future's outcome to the event loop.
//!
//! Core's client is blocking, so a transfer runs on one of the runtime's blocking threads,
//! and at most [`TRANSFERS_AT_ONCE`] do at a time; more wait for a slot without a thread.
//!
//! What a caller awaits is a coroutine of `filefetch._aio` (`settle`). It starts the Rust
//! future when first awaited. When its task is cancelled, a transfer is told to stop
//! (through the fetch's interrupt check, read every 50 ms) and waited for, so that by the
//! time `CancelledError` propagates the temporary file is gone; any other future is dropped.
//!
//! The outcome reaches the event loop through `call_soon_threadsafe`, called from a thread
//! of the runtime, which lets go of the GIL inside that call and must take it back after.
//! The coroutine returns only once that thread has let go of Python for good ([`Handoff`]):
//! otherwise the program could end meanwhile, and a thread taking the GIL of a finalized
//! interpreter crashes the process as it exits (pyo3-async-runtimes' own `future_into_py`
//! hands over the same way without waiting, which is why it is not used).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use filefetch::Error;
use pyo3::exceptions::{PyRuntimeError, PySystemError};
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyTuple, PyWeakrefMethods, PyWeakrefReference};
use pyo3::BoundObject;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinError;

use crate::errors;

/// The transfers that run at once, each on a blocking thread; the others wait for a slot.
pub(crate) const TRANSFERS_AT_ONCE: usize = 16;

/// The runtime's blocking threads: one per slot, and a few to hand outcomes to event loops
/// (which waits for the GIL, so it is kept off the runtime's worker).
const BLOCKING_THREADS: usize = TRANSFERS_AT_ONCE + 4;

/// The Python module with the coroutine that awaits a future of the runtime.
const GLUE_MODULE: &str = "filefetch._aio";

static SLOTS: Semaphore = Semaphore::const_new(TRANSFERS_AT_ONCE);

/// Sets up the runtime pyo3-async-runtimes builds when first used: one worker thread (the
/// futures only wait) and a bounded blocking pool.
pub(crate) fn configure() {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(1)
        .max_blocking_threads(BLOCKING_THREADS)
        .thread_name("filefetch-async")
        .enable_all();
    pyo3_async_runtimes::tokio::init(builder);
}

/// The stop signal of one transfer: set when its task is cancelled (or its future dropped).
#[derive(Default)]
pub(crate) struct Stop {
    set: AtomicBool,
    changed: Notify,
}

impl Stop {
    pub(crate) fn set(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// The fetch's interrupt check: true once the signal is set.
    pub(crate) fn check(self: &Arc<Self>) -> impl Fn() -> bool + Send + Sync + 'static {
        let stop = self.clone();
        move || stop.is_set()
    }

    /// Completes once the signal is set.
    pub(crate) async fn stopped(&self) {
        let changed = self.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if !self.is_set() {
            changed.await;
        }
    }
}

/// Sets the stop signal when dropped: a transfer whose future is dropped stops too.
struct StopOnDrop(Arc<Stop>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.set();
    }
}

/// The awaitable for a transfer, the coroutine `name`: `job` runs on a blocking thread once
/// the coroutine is awaited and a slot is free, and its result is the coroutine's. `job` must
/// heed `stop` (through its fetch's interrupt check).
pub(crate) fn transfer<'py, T>(
    py: Python<'py>,
    name: &str,
    stop: Arc<Stop>,
    job: impl FnOnce() -> PyResult<T> + Send + 'static,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    coroutine(py, name, run(stop.clone(), job), stop)
}

/// Waits for a slot, then runs `job` on a blocking thread, which keeps the slot until `job`
/// has returned. A stop while waiting ends the wait with `InterruptedTransferError`.
async fn run<T: Send + 'static>(
    stop: Arc<Stop>,
    job: impl FnOnce() -> PyResult<T> + Send + 'static,
) -> PyResult<T> {
    let _stop_on_drop = StopOnDrop(stop.clone());
    let slot = tokio::select! {
        slot = SLOTS.acquire() => slot.map_err(|_| PyRuntimeError::new_err("no transfer slots"))?,
        () = stop.stopped() => return with_python(|py| Err(errors::to_py(py, Error::Interrupted))),
    };
    let ran = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        job()
    })
    .await;
    ran.unwrap_or_else(|e| Err(panicked(e)))
}

/// A task that panicked (or, never here, was aborted), as pyo3 reports a panic.
fn panicked(e: JoinError) -> PyErr {
    PanicException::new_err(e.to_string())
}

/// A coroutine whose result is `fut`'s, run on the runtime from its first await, named
/// `name` (in its repr and in "never awaited" warnings). Cancelling it sets `stop`, which
/// `fut` must heed, and waits for `fut` to end before `CancelledError` propagates: no thread
/// works on for a coroutine that has ended.
pub(crate) fn coroutine<'py, T>(
    py: Python<'py>,
    name: &str,
    fut: impl Future<Output = PyResult<T>> + Send + 'static,
    stop: Arc<Stop>,
) -> PyResult<Bound<'py, PyAny>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let fut = Mutex::new(Some(fut));
    let start = PyCFunction::new_closure(py, None, None, move |args, _kwargs| {
        let fut = fut.lock().unwrap_or_else(PoisonError::into_inner).take();
        let fut = fut.ok_or_else(|| PySystemError::new_err("coroutine started twice"))?;
        spawn(args.py(), fut).map(Bound::unbind)
    })?;
    let stop = PyCFunction::new_closure(py, None, None, move |_args, _kwargs| stop.set())?;
    let coroutine = glue(py, "settle")?.call1((start, stop))?;
    let short = name.rsplit('.').next().unwrap_or(name);
    coroutine.setattr("__name__", short)?;
    coroutine.setattr("__qualname__", name)?;
    Ok(coroutine)
}

/// Runs `fut` on the runtime; returns an asyncio future of the running loop that gets its
/// outcome, and the [`Handoff`] to release once done with it.
fn spawn<'py, T>(
    py: Python<'py>,
    fut: impl Future<Output = PyResult<T>> + Send + 'static,
) -> PyResult<Bound<'py, PyTuple>>
where
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let event_loop = py.import("asyncio")?.call_method0("get_running_loop")?;
    let future = event_loop.call_method0("create_future")?;
    let shared = Arc::new(Shared::default());
    let handoff = Bound::new(py, Handoff(shared.clone()))?;
    // Only a weak reference: were the future kept alive from here, so would be the coroutine
    // awaiting it, and a coroutine whose loop was discarded could never be closed.
    let future_ref = PyWeakrefReference::new(&future)?.unbind();
    let event_loop_ref = event_loop.unbind();
    let runtime = pyo3_async_runtimes::tokio::get_runtime();
    runtime.spawn(async move {
        // A task of its own, so that a panic in `fut` still reaches the coroutine.
        let outcome = runtime
            .spawn(fut)
            .await
            .unwrap_or_else(|e| Err(panicked(e)));
        // Handing over takes the GIL: a blocking thread waits for it, not the worker.
        tokio::task::spawn_blocking(move || {
            hand_over(&shared, event_loop_ref, future_ref, outcome)
        });
    });
    PyTuple::new(py, [future, handoff.into_any()])
}

/// Sets `future`'s outcome from a thread of the runtime, through the loop's
/// `call_soon_threadsafe`, unless the coroutine has ended or the future is gone.
fn hand_over<T>(
    shared: &Shared,
    event_loop: Py<PyAny>,
    future: Py<PyWeakrefReference>,
    outcome: PyResult<T>,
) where
    T: for<'py> IntoPyObject<'py>,
{
    if !shared.begin() {
        // Abandoned: whatever Python objects the outcome holds are released later, by
        // pyo3, without this thread taking the GIL.
        return;
    }
    let _ = Python::try_attach(move |py| -> PyResult<()> {
        let Some(future) = future.bind(py).upgrade() else {
            return Ok(()); // collected, and its coroutine with it
        };
        let (ok, value) = match outcome.and_then(|v| v.into_pyobject(py).map_err(Into::into)) {
            Ok(value) => (true, value.into_any().unbind()),
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

/// `f` attached to Python, from a thread of the runtime; an error if the interpreter is
/// exiting.
pub(crate) fn with_python<T>(f: impl FnOnce(Python<'_>) -> PyResult<T>) -> PyResult<T> {
    Python::try_attach(f)
        .unwrap_or_else(|| Err(PyRuntimeError::new_err("the interpreter is exiting")))
}

/// `filefetch._aio.<name>`.
fn glue<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import(GLUE_MODULE).map(Bound::unbind))?;
    module.bind(py).getattr(name)
}
