//! The crate's `tracing` events (one per server connection) as Python `logging` records.
//!
//! An event with target `filefetch::server` goes to the logger `filefetch.server` at the
//! matching level, so Python programs configure, filter and format it like any other log.

use std::fmt::{self, Write as _};

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Routes `filefetch` events to Python for the rest of the process (once; a no-op if the
/// process already has a global `tracing` subscriber).
pub(crate) fn install() {
    let subscriber = tracing_subscriber::registry().with(ToPythonLogging);
    let _ = tracing::subscriber::set_global_default(subscriber);
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
        let message = fields.render();
        // Not during interpreter shutdown: a record then is not worth a hang. An exception
        // cannot go further than here; code that must not lose one calls `to_python` itself.
        let _ =
            Python::try_attach(|py| to_python(py, metadata.target(), *metadata.level(), &message));
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
