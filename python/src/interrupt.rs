//! Python exceptions raised while the GIL is released: from a progress callback, or from
//! `PyErr_CheckSignals` (Ctrl-C), kept until the blocking call returns and then re-raised.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// How often a blocking call re-attaches to Python to look for a pending signal.
pub(crate) const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// The first Python exception raised while Rust code ran; shared with the closures that
/// catch it.
#[derive(Clone, Default)]
pub(crate) struct Raised(Arc<Mutex<Option<PyErr>>>);

impl Raised {
    /// Keeps `err` unless an earlier exception is already kept.
    pub(crate) fn store(&self, err: PyErr) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.get_or_insert(err);
    }

    /// The kept exception, if any.
    pub(crate) fn take(&self) -> Option<PyErr> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    /// A check for [`filefetch::FetchOptionsBuilder::interrupt`] that runs Python's signal
    /// handlers (at most every [`SIGNAL_POLL`]) and stops the fetch when one raises, keeping
    /// the exception. `None` off the main thread, where Python never runs signal handlers.
    pub(crate) fn signal_check(
        &self,
        py: Python<'_>,
    ) -> PyResult<Option<impl Fn() -> bool + Send + Sync + 'static>> {
        if !on_main_thread(py)? {
            return Ok(None);
        }
        let raised = self.clone();
        let last = Mutex::new(Instant::now());
        Ok(Some(move || {
            {
                let mut last = last.lock().unwrap_or_else(PoisonError::into_inner);
                if last.elapsed() < SIGNAL_POLL {
                    return false;
                }
                *last = Instant::now();
            }
            Python::try_attach(|py| match py.check_signals() {
                Ok(()) => false,
                Err(e) => {
                    raised.store(e);
                    true
                }
            })
            .unwrap_or(false)
        }))
    }
}

/// True on the thread Python delivers signals to.
pub(crate) fn on_main_thread(py: Python<'_>) -> PyResult<bool> {
    let threading = py.import("threading")?;
    let main = threading.call_method0("main_thread")?;
    let current = threading.call_method0("current_thread")?;
    Ok(main.is(&current))
}
