//! `filefetch serve --log-format json`: one JSON object a line, for programs that collect
//! logs.
//!
//! Every object starts with `time` (RFC 3339, UTC, to the microsecond), `level` (`error`,
//! `warn`, `info`, `debug` or `trace`), `target` and `message`, and goes on with the event's
//! own fields (and `spans`, the names of the spans it is in, from the outermost, if any).
//! The line each connection logs (target `filefetch::server`) has its fields as a program
//! wants them: `peer`, `via` (only when a PROXY header named the client) and `name` (the
//! name requested, unescaped; `-` when no request was read) as strings, `status` as `1`, `0`
//! or `null` (no response was sent), `bytes` as a number, `duration` as a number of
//! milliseconds, and `outcome` as one word (`sent`, `not_found`, `refused`...).
//!
//! Lines that are not events (the addresses listened on, the count of lines dropped, the
//! notice of a stop, an error that ends the command) are written by [`Line`] in the same
//! form.

use std::error::Error;
use std::fmt;
use std::time::SystemTime;

use serde_json::{Number, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::logline::write_timestamp;

/// The target of the line each connection logs.
const CONNECTION_TARGET: &str = "filefetch::server";

/// The keys every object has; an event's field of the same name is written as
/// `field.NAME` instead, so that no object has a key twice.
const RESERVED: [&str; 5] = ["time", "level", "target", "message", "spans"];

/// Formats each event as one JSON object on a line of its own.
#[derive(Debug, Default)]
pub struct JsonFormat;

impl<S, N> FormatEvent<S, N> for JsonFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Line::new(*meta.level(), meta.target(), &fields.message);
        if let Some(scope) = ctx.event_scope() {
            let spans = scope.from_root().map(|span| Value::from(span.name()));
            line = line.key_value("spans", Value::Array(spans.collect()));
        }
        let connection = meta.target() == CONNECTION_TARGET;
        for (name, value) in fields.others {
            let (name, value) = if connection {
                connection_field(name, value)
            } else {
                (name, value)
            };
            line = line.field(name, value);
        }
        writer.write_str(&line.finish())
    }
}

/// One JSON object, built key by key in the order given and ended by a newline.
#[derive(Debug)]
pub struct Line {
    text: String,
}

impl Line {
    /// An object with the keys every line has, `time` being now.
    pub fn new(level: Level, target: &str, message: &str) -> Line {
        let mut text = String::with_capacity(256);
        text.push_str("{\"time\":\"");
        // Writing to a String cannot fail.
        let _ = write_timestamp(&mut text, SystemTime::now());
        text.push('"');
        let line = Line { text };
        line.key_value("level", level_name(level))
            .key_value("target", target)
            .key_value("message", message)
    }

    /// Adds an event's field (renamed `field.NAME` if its name is one of the keys every
    /// line has).
    pub fn field(self, name: &str, value: impl Into<Value>) -> Line {
        if RESERVED.contains(&name) {
            self.key_value(&format!("field.{name}"), value)
        } else {
            self.key_value(name, value)
        }
    }

    fn key_value(mut self, key: &str, value: impl Into<Value>) -> Line {
        self.text.push(',');
        self.text.push_str(&Value::from(key).to_string());
        self.text.push(':');
        self.text.push_str(&value.into().to_string());
        self
    }

    /// The object's text, with the newline that ends it.
    pub fn finish(mut self) -> String {
        self.text.push_str("}\n");
        self.text
    }
}

/// The line written when the log dropped lines for want of room (see `logbuf`).
pub fn dropped_line(out: &mut Vec<u8>, dropped: u64) {
    let line = Line::new(
        Level::WARN,
        "filefetch",
        &format!("{dropped} log lines dropped: the output did not keep up"),
    )
    .field("dropped", dropped)
    .finish();
    out.extend_from_slice(line.as_bytes());
}

/// The level as the objects write it.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// A field of a connection's line, named and typed as the module documentation says. The
/// event carries them as the text format shows them (`name` quoted and escaped, `status` as
/// `1`, `0` or `-`, `ms` with one decimal).
fn connection_field(name: &'static str, value: Value) -> (&'static str, Value) {
    let Value::String(text) = &value else {
        return (name, value);
    };
    match name {
        "name" => match unquote(text) {
            Some(name) => ("name", Value::String(name)),
            None => ("name", value),
        },
        "status" => match text.as_str() {
            "1" => ("status", Value::from(1)),
            "0" => ("status", Value::from(0)),
            "-" => ("status", Value::Null),
            _ => ("status", value),
        },
        "ms" => match text.parse().ok().and_then(Number::from_f64) {
            Some(ms) => ("duration", Value::Number(ms)),
            None => ("duration", value),
        },
        _ => (name, value),
    }
}

/// The text of a string written with `{:?}`, Rust's escapes undone (`\"`, `\\`, `\'`, `\n`,
/// `\r`, `\t`, `\0` and `\u{HEX}`, the ones `str::escape_debug` writes); `None` if `quoted`
/// is not such a string.
fn unquote(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '\\' => match chars.next()? {
                '\\' => '\\',
                '"' => '"',
                '\'' => '\'',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                '0' => '\0',
                'u' => {
                    if chars.next()? != '{' {
                        return None;
                    }
                    let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                _ => return None,
            },
            // Escaped in a debug string: one bare is not the end of such a string.
            '"' => return None,
            c => c,
        };
        out.push(c);
    }
    Some(out)
}

/// An event's message and its other fields, in order, as JSON values.
#[derive(Default)]
struct Fields {
    message: String,
    others: Vec<(&'static str, Value)>,
}

impl Fields {
    fn value(&mut self, field: &Field, value: Value) {
        self.others.push((field.name(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.value(field, Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else {
            self.value(field, Value::from(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.value(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.value(field, Value::from(value));
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        let value =
            i64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.value(field, value);
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        let value =
            u64::try_from(value).map_or_else(|_| Value::from(value.to_string()), Value::from);
        self.value(field, value);
    }

    /// A number, or `null` for an infinity or a NaN (which JSON cannot write).
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.value(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.value(field, Value::from(value));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn Error + 'static)) {
        self.value(field, Value::from(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The objects `log` writes, one per line.
    fn objects(log: impl FnOnce()) -> Vec<serde_json::Map<String, Value>> {
        lines(log)
            .iter()
            .map(|line| match serde_json::from_str(line) {
                Ok(Value::Object(object)) => object,
                other => panic!("not an object: {line} ({other:?})"),
            })
            .collect()
    }

    /// The lines `log` writes.
    fn lines(log: impl FnOnce()) -> Vec<String> {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::INFO)
            .with_writer(move || writer.clone())
            .event_format(JsonFormat)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{text}");
        text.lines().map(str::to_owned).collect()
    }

    /// A connection's line, as `core/src/server/exchange.rs` logs it.
    fn log_connections() {
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let via: Option<std::net::SocketAddr> = Some("[::1]:5000".parse().unwrap());
        tracing::info!(target: "filefetch::server", peer = %peer, via = via.map(tracing::field::display), name = ?NAME, status = %"1", bytes = 1024u64, ms = format_args!("{:.1}", 0.25), outcome = %"sent", "sent");
        tracing::warn!(target: "filefetch::server", peer = %peer, via = None::<tracing::field::DisplayValue<&str>>, name = ?"-", status = %"-", bytes = 0u64, ms = format_args!("{:.1}", 1000.0), outcome = %"request_timeout", "request did not arrive in time; closed without a response");
    }

    /// A name with characters that `{:?}` escapes.
    const NAME: &str = "dir/a \"quoted\"\\\tname\u{7}\u{301}é'";

    #[test]
    fn keys_come_in_order() {
        let lines = lines(log_connections);
        let keys = [
            "time", "level", "target", "message", "peer", "via", "name", "status", "bytes",
            "duration", "outcome",
        ];
        let at: Vec<usize> = keys
            .iter()
            .map(|key| {
                lines[0]
                    .find(&format!("\"{key}\":"))
                    .unwrap_or_else(|| panic!("{key}"))
            })
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{}", lines[0]);
        assert!(lines[0].starts_with("{\"time\":\""), "{}", lines[0]);
    }

    #[test]
    fn a_connection_has_typed_fields() {
        let got = objects(log_connections);
        assert_eq!(got.len(), 2);
        let sent = &got[0];
        assert_eq!(sent.len(), 11, "{sent:?}");
        assert_eq!(sent["level"], "info");
        assert_eq!(sent["target"], "filefetch::server");
        assert_eq!(sent["message"], "sent");
        assert_eq!(sent["peer"], "127.0.0.1:40000");
        assert_eq!(sent["via"], "[::1]:5000");
        assert_eq!(sent["name"], NAME);
        assert_eq!(sent["status"], 1);
        assert_eq!(sent["bytes"], 1024);
        assert_eq!(sent["duration"], 0.2);
        assert_eq!(sent["outcome"], "sent");
        let time = sent["time"].as_str().unwrap();
        assert_eq!(time.len(), "2026-11-25T21:25:11.585447Z".len(), "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{time}");

        let late = &got[1];
        assert_eq!(late["level"], "warn");
        assert!(!late.contains_key("via"));
        assert_eq!(late["name"], "-");
        assert_eq!(late["status"], Value::Null);
        assert_eq!(late["duration"], 1000.0);
        assert_eq!(late["outcome"], "request_timeout");
    }

    /// Other events keep their fields as recorded, typed where `tracing` says the type.
    #[test]
    fn other_events_keep_their_fields() {
        let got = objects(|| {
            let e = io::Error::other("too many open files");
            tracing::warn!(error = %e, "accept failed; retrying");
            tracing::error!(
                r#type = "raw",
                flag = true,
                n = -3i64,
                x = 1.5f64,
                nan = f64::NAN,
                big = u128::MAX,
                name = ?"kept \"quoted\"",
                time = 7u64,
                "odd {} fields",
                3
            );
            tracing::debug!("filtered out");
            let span = tracing::info_span!("outer");
            let _outer = span.enter();
            let span = tracing::info_span!("inner", id = 7);
            let _inner = span.enter();
            tracing::info!(k = "v", "in spans");
        });
        assert_eq!(got.len(), 3);
        assert_eq!(got[0]["message"], "accept failed; retrying");
        assert_eq!(got[0]["error"], "too many open files");
        let odd = &got[1];
        assert_eq!(odd["level"], "error");
        assert_eq!(odd["message"], "odd 3 fields");
        assert_eq!(odd["type"], "raw");
        assert_eq!(odd["flag"], true);
        assert_eq!(odd["n"], -3);
        assert_eq!(odd["x"], 1.5);
        assert_eq!(odd["nan"], Value::Null);
        assert_eq!(odd["big"], u128::MAX.to_string());
        assert_eq!(odd["name"], "\"kept \\\"quoted\\\"\"");
        assert_eq!(odd["field.time"], 7);
        assert!(odd["time"].is_string());
        assert_eq!(
            got[2].get("spans"),
            Some(&serde_json::json!(["outer", "inner"])),
            "{:?}",
            got[2]
        );
        assert_eq!(got[2]["k"], "v");
    }

    #[test]
    fn debug_strings_are_unquoted_exactly() {
        for text in [
            "",
            "-",
            "plain.txt",
            "a \"b\" \\c\\ 'd'",
            "\n\r\t\0\u{1}\u{7f}\u{200b}\u{301}",
            "日本語/ファイル",
        ] {
            assert_eq!(
                unquote(&format!("{text:?}")).as_deref(),
                Some(text),
                "{text:?}"
            );
        }
        for bad in [
            "",
            "x",
            "\"",
            "\"a\"b\"",
            "\"\\q\"",
            "\"\\u{zz}\"",
            "\"\\",
            "'a'",
        ] {
            assert_eq!(unquote(bad), None, "{bad}");
        }
    }

    #[test]
    fn lines_outside_events_are_objects_too() {
        let mut out = Vec::new();
        dropped_line(&mut out, 12);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let object: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(object["level"], "warn");
        assert_eq!(object["dropped"], 12);
        assert_eq!(
            object["message"],
            "12 log lines dropped: the output did not keep up"
        );
    }
}
