//! The crate's `tracing` events (one per server connection) as Python `logging` records.
//!
//! An event with target `filefetch::server` goes to the logger `filefetch.server` at the
//! matching level, so Python programs configure, filter and format it like any other log.
//!
//! Serving never waits for the log: an event becomes a record in a bounded queue
//! ([`CAPACITY`]), and one thread of its own, "filefetch-log", hands the records to `logging`
//! in order. When the handlers fall behind and the queue is full, further records are dropped
//! and counted, and the count is logged once the queue has drained. A server that stops waits
//! for the records queued until then ([`flush`], for [`FLUSH_LIMIT`] at most).

use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{self, ThreadId};
use std::time::Duration;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// The records the queue holds: a burst of this many connections is logged in full however
/// slow the handlers, in a few hundred KiB at most.
const CAPACITY: usize = 1024;

/// The most records handed to `logging` in one hold of the GIL.
const BATCH: usize = 64;

/// How long a stopping server waits for the records queued before it: long enough for any
/// working handler, short enough that a wedged one cannot hang the stop.
const FLUSH_LIMIT: Duration = Duration::from_secs(3);

/// The delivering thread's name, in the OS and in `logging` (`%(threadName)s`).
const THREAD_NAME: &str = "filefetch-log";

/// Routes `filefetch` events to Python for the rest of the process (once; a no-op if the
/// process already has a global `tracing` subscriber), and stops delivering at interpreter
/// exit.
pub(crate) fn install(py: Python<'_>) -> PyResult<()> {
    let subscriber = tracing_subscriber::registry().with(ToPythonLogging);
    let _ = tracing::subscriber::set_global_default(subscriber);
    let stop = wrap_pyfunction!(stop_delivering, py)?;
    py.import("atexit")?.call_method1("register", (stop,))?;
    Ok(())
}

/// Registered with `atexit`: from then on the delivering thread leaves Python alone, so that
/// it does not attach to an interpreter being finalized.
#[pyfunction]
fn stop_delivering() {
    EXITING.store(true, Ordering::Relaxed);
}

/// Waits, with the GIL released, until the records queued so far have been handed to
/// `logging` (and the count of those dropped logged, if the queue drained), or for
/// [`FLUSH_LIMIT`]. Called as a server stops, and before the "serving" line so that records
/// of earlier events come before it.
pub(crate) fn flush(py: Python<'_>) {
    if THREAD.get() == Some(&thread::current().id()) {
        // A handler that stops a server would wait for itself.
        return;
    }
    let queued = STATS.queued.load(Ordering::Relaxed);
    py.detach(|| {
        let delivered = lock(&STATS.delivered);
        let _ = STATS
            .progress
            .wait_timeout_while(delivered, FLUSH_LIMIT, |delivered| *delivered < queued);
    });
}

/// An event on its way to `logging`.
struct Record {
    target: &'static str,
    level: Level,
    message: String,
}

/// Counts of records, since the process started.
struct Stats {
    /// Taken by the queue.
    queued: AtomicU64,
    /// Turned away by a full queue, and not logged as such yet.
    dropped: AtomicU64,
    /// Held to count a record as dropped, and to take that count on seeing the queue empty.
    drops: Mutex<()>,
    /// Taken from the queue and handed to `logging` (or given up on, when Python could not
    /// be attached to or is exiting).
    delivered: Mutex<u64>,
    /// Notified as `delivered` grows.
    progress: Condvar,
}

static STATS: Stats = Stats {
    queued: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    drops: Mutex::new(()),
    delivered: Mutex::new(0),
    progress: Condvar::new(),
};

/// Set at interpreter exit (see [`stop_delivering`]).
static EXITING: AtomicBool = AtomicBool::new(false);

/// The queue's sending end, once the delivering thread runs (`None` if it could not start).
static QUEUE: OnceLock<Option<SyncSender<Record>>> = OnceLock::new();

/// The delivering thread.
static THREAD: OnceLock<ThreadId> = OnceLock::new();

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The queue, started with the first event.
fn queue() -> Option<&'static SyncSender<Record>> {
    QUEUE
        .get_or_init(|| {
            let (sender, receiver) = mpsc::sync_channel(CAPACITY);
            let thread = thread::Builder::new()
                .name(THREAD_NAME.into())
                .spawn(move || deliver(&receiver))
                .ok()?;
            let _ = THREAD.set(thread.thread().id());
            Some(sender)
        })
        .as_ref()
}

/// The delivering thread: waits for records without the GIL, then hands them to `logging`
/// a batch at a time. Runs for the rest of the process (the sending end is never dropped);
/// like any thread Python did not start, it does not hold up the interpreter's exit.
fn deliver(receiver: &Receiver<Record>) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(record) => record,
            None => match receiver.recv() {
                Ok(record) => record,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if !EXITING.load(Ordering::Relaxed) {
            // Not during interpreter shutdown: records then are not worth a hang. A handler's
            // exception is the logging module's to report; it cannot go further than here.
            let _ = Python::try_attach(|py| {
                name_thread(py);
                for record in &batch {
                    if EXITING.load(Ordering::Relaxed) {
                        return;
                    }
                    let _ = to_python(py, record.target, record.level, &record.message);
                }
                // Drained (for now): time to say what the queue had no room for.
                let dropped = {
                    let _drops = lock(&STATS.drops);
                    next = receiver.try_recv().ok();
                    match next {
                        None => STATS.dropped.swap(0, Ordering::Relaxed),
                        Some(_) => 0,
                    }
                };
                if dropped > 0 {
                    let message = format!(
                        "{dropped} log records dropped: the logging handlers did not keep up"
                    );
                    let _ = to_python(py, "filefetch::server", Level::WARN, &message);
                }
            });
        }
        let mut delivered = lock(&STATS.delivered);
        *delivered += batch.len() as u64;
        STATS.progress.notify_all();
    }
}

/// Gives this thread its name in Python too: a thread Python did not start is otherwise
/// "Dummy-N" in `threading` and in the records' `threadName`.
fn name_thread(py: Python<'_>) {
    let rename = || -> PyResult<()> {
        let current = py.import("threading")?.call_method0("current_thread")?;
        if current.getattr("name")?.extract::<String>()? != THREAD_NAME {
            current.setattr("name", THREAD_NAME)?;
        }
        Ok(())
    };
    let _ = rename();
}

struct ToPythonLogging;

impl<S: Subscriber> Layer<S> for ToPythonLogging {
    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target().starts_with("filefetch")
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let record = Record {
            target: metadata.target(),
            level: *metadata.level(),
            message: fields.render(),
        };
        // Never waits for the handlers: a full queue (they are behind) drops the record.
        let Some(queue) = queue() else {
            return;
        };
        let sent = match queue.try_send(record) {
            Err(TrySendError::Full(record)) => {
                // Tried again and counted under the lock the delivering thread takes to see
                // the queue empty and take the count: a record dropped is reported when the
                // queue next drains, not at the drain after (which may never come).
                let _drops = lock(&STATS.drops);
                let sent = queue.try_send(record).is_ok();
                if !sent {
                    STATS.dropped.fetch_add(1, Ordering::Relaxed);
                }
                sent
            }
            sent => sent.is_ok(),
        };
        if sent {
            STATS.queued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Logs `message` as an event of `target` (`filefetch::server`) at `level` would be: on the
/// logger `filefetch.server`, at the matching level. What the logging call raises (such as
/// KeyboardInterrupt, when Ctrl-C lands while the main thread writes the record) is returned.
pub(crate) fn to_python(py: Python<'_>, target: &str, level: Level, message: &str) -> PyResult<()> {
    let level: u8 = match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    };
    py.import("logging")?
        .call_method1("getLogger", (target.replace("::", "."),))?
        .call_method1("log", (level, message))?;
    Ok(())
}

/// An event's fields, in order, as text.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.others.push((field.name(), format!("{value:?}")));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.others.push((field.name(), value.to_owned()));
        }
    }
}

impl Fields {
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.others.iter().position(|(n, _)| *n == name)?;
        Some(self.others.remove(i).1)
    }

    /// `127.0.0.1:50000 "a.txt": sent (status=1, bytes=12, ms=0.3)`.
    fn render(mut self) -> String {
        let mut out = String::new();
        if let Some(peer) = self.take("peer") {
            out.push_str(&peer);
            out.push(' ');
        }
        if let Some(name) = self.take("name") {
            out.push_str(&name);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if !self.others.is_empty() {
            let rest: Vec<String> = self
                .others
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = write!(out, " ({})", rest.join(", "));
        }
        out
    }
}
