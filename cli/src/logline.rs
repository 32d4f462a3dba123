//! The log line format of `serve`: the same text as `tracing_subscriber`'s default ("full")
//! format without colours, written with less work, since the server writes one line per
//! connection.
//!
//! The date and time down to the second are formatted once per second per thread rather than
//! for every line, and the level and target go out as plain strings instead of through the
//! styling machinery that colours them on a terminal. Fields are written as the default field
//! formatter writes them without colours (`name=value`, the value in its `Debug` form, the
//! message first and with terminal escape characters escaped), but without the styling
//! wrapper around each name. Lines inside a span, and every line when colours are on, are
//! handed to the default format.
//!
//! The line of each connection skips `tracing` altogether: [`AccessLines`] writes it into
//! the log from the server's [`AccessEntry`], the same text as this format writes for the
//! event, with far fewer steps (through `tracing`, a connection's line cost about 4 % of the
//! server's CPU time per small request).

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use filefetch::server::{access_enabled, AccessEntry, AccessLog, ACCESS_TARGET};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{DefaultVisitor, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::logbuf::LogBuf;

/// `YYYY-MM-DDTHH:MM:SS`.
const SECONDS_LEN: usize = 19;

/// The default format's text, produced with fewer steps (see the module documentation).
#[derive(Debug, Default)]
pub struct LineFormat {
    full: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for LineFormat
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
        if writer.has_ansi_escapes() || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        writer.write_str(level(meta.level()))?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = PlainFields::new(writer.by_ref());
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// An event's fields as `DefaultFields` writes them when colours are off.
struct PlainFields<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl<'a> PlainFields<'a> {
    fn new(writer: Writer<'a>) -> PlainFields<'a> {
        PlainFields {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

impl Visit for PlainFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // Rare in this log (an error with its sources): the default visitor writes it.
        if self.result.is_err() {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        default.record_error(field, value);
        self.result = default.finish();
        self.is_empty = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // What the `log` crate's records carry, written elsewhere by the default format.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let first = std::mem::replace(&mut self.is_empty, false);
        self.result = (|| {
            if !first {
                self.writer.write_char(' ')?;
            }
            if name == "message" {
                return if self.writer.sanitizes_ansi_escapes() {
                    write!(Escaping(&mut self.writer), "{value:?}")
                } else {
                    write!(self.writer, "{value:?}")
                };
            }
            self.writer
                .write_str(name.strip_prefix("r#").unwrap_or(name))?;
            self.writer.write_char('=')?;
            write!(self.writer, "{value:?}")
        })();
    }
}

/// Writes each connection's line into the log as [`LineFormat`] writes the event that
/// [`AccessEntry::trace`] logs, without colours: for a log that is not a terminal. The
/// lines the `tracing` filters leave out (as `RUST_LOG` sets them, once for the process)
/// are left out here too.
#[derive(Debug)]
pub struct AccessLines {
    log: LogBuf,
    /// The levels of connection lines logged, as the filters in force when made say.
    info: bool,
    warn: bool,
}

impl AccessLines {
    pub fn new(log: LogBuf) -> AccessLines {
        AccessLines {
            log,
            info: access_enabled(Level::INFO),
            warn: access_enabled(Level::WARN),
        }
    }
}

thread_local! {
    /// The line being written on this thread, its allocation kept from line to line.
    static ACCESS_LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl AccessLog for AccessLines {
    fn log(&self, entry: &AccessEntry<'_>) {
        let wanted = match entry.level {
            Level::INFO => self.info,
            Level::WARN => self.warn,
            level => access_enabled(level),
        };
        if !wanted {
            return;
        }
        ACCESS_LINE.with_borrow_mut(|line| {
            line.clear();
            // Writing to a String fails only if a Display implementation does; the line
            // then goes out as far as it got, as the event's would.
            let _ = write_access_line(line, entry, SystemTime::now());
            let _ = self.log.make_writer().write_all(line.as_bytes());
        });
    }
}

/// The text [`LineFormat`] writes for the event of `entry`, logged at `now`.
fn write_access_line(out: &mut String, entry: &AccessEntry<'_>, now: SystemTime) -> fmt::Result {
    write_timestamp(out, now)?;
    out.push_str(level(&entry.level));
    out.push_str(ACCESS_TARGET);
    out.push_str(": ");
    write!(Escaping(out), "{}", entry.message)?;
    out.push_str(" peer=");
    push_addr(out, entry.client);
    if let Some(via) = entry.via {
        out.push_str(" via=");
        push_addr(out, via);
    }
    out.push_str(" name=");
    push_debug_str(out, entry.name.unwrap_or("-"));
    out.push_str(" status=");
    out.push_str(entry.status_text());
    out.push_str(" bytes=");
    out.push_str(itoa::Buffer::new().format(entry.bytes));
    write!(out, " ms={}", entry.ms())?;
    out.push_str(" outcome=");
    out.push_str(entry.outcome);
    out.push('\n');
    Ok(())
}

/// An address as its `Display` writes it; IPv4 without the formatting machinery.
fn push_addr(out: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                out.push_str(digits.format(octet));
            }
            out.push(':');
            out.push_str(digits.format(v4.port()));
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{addr}");
        }
    }
}

/// A string as its `Debug` form writes it: quoted, and escaped where it needs to be
/// (printable ASCII other than `"` and `\` needs none).
fn push_debug_str(out: &mut String, s: &str) {
    if s.bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// Writes through to the inner writer with the characters a terminal could take for the
/// start of a control sequence escaped, as the default format escapes the message.
struct Escaping<'a, W>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut from = 0;
        for (at, ch) in s.char_indices() {
            let escaped = match ch {
                '\x1b' => "\\x1b",
                '\x07' => "\\x07",
                '\x08' => "\\x08",
                '\x0c' => "\\x0c",
                '\x7f' => "\\x7f",
                // C1 control characters, written below.
                '\u{80}'..='\u{9f}' => "",
                _ => continue,
            };
            self.0.write_str(&s[from..at])?;
            if escaped.is_empty() {
                write!(self.0, "\\u{{{:x}}}", ch as u32)?;
            } else {
                self.0.write_str(escaped)?;
            }
            from = at + ch.len_utf8();
        }
        self.0.write_str(&s[from..])
    }
}

/// The level as the default format pads it, between the spaces around it.
fn level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => " TRACE ",
        Level::DEBUG => " DEBUG ",
        Level::INFO => "  INFO ",
        Level::WARN => "  WARN ",
        Level::ERROR => " ERROR ",
    }
}

thread_local! {
    /// The second last formatted on this thread, and its text.
    static LAST_SECOND: Cell<(u64, [u8; SECONDS_LEN])> = const { Cell::new((u64::MAX, [0; SECONDS_LEN])) };
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC, as the default format writes it.
pub fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let text = LAST_SECOND.with(|last| {
        let (cached, text) = last.get();
        if cached == secs {
            return text;
        }
        let text = format_seconds(secs);
        last.set((secs, text));
        text
    });
    // Only ASCII digits and separators were written.
    w.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)?;
    let mut fraction = *b".000000Z";
    let mut micros = since.subsec_micros();
    for digit in fraction[1..7].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    w.write_str(std::str::from_utf8(&fraction).map_err(|_| fmt::Error)?)
}

/// The date and time of `secs` after the Unix epoch, to the second.
fn format_seconds(secs: u64) -> [u8; SECONDS_LEN] {
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    let mut out = [0u8; SECONDS_LEN];
    let mut put = |at: usize, value: u64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, rest / 3600, 2);
    put(14, rest / 60 % 60, 2);
    put(17, rest % 60, 2);
    for (at, sep) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')] {
        out[at] = sep;
    }
    out
}

/// Year, month and day of the proleptic Gregorian calendar for a count of days since
/// 1970-01-01 (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    fn stamp(secs: u64, micros: u32) -> String {
        let mut s = String::new();
        let at = UNIX_EPOCH + Duration::new(secs, micros * 1000);
        write_timestamp(&mut s, at).unwrap();
        s
    }

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        assert_eq!(stamp(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(951_782_399, 999_999), "2000-02-28T23:59:59.999999Z");
        assert_eq!(stamp(951_782_400, 1), "2000-02-29T00:00:00.000001Z");
        assert_eq!(stamp(1_709_251_199, 0), "2024-02-29T23:59:59.000000Z");
        assert_eq!(stamp(4_102_444_800, 42), "2100-01-01T00:00:00.000042Z");
        assert_eq!(stamp(1_795_641_911, 585_447), "2026-11-25T21:25:11.585447Z");
        // The cached second is replaced when the second changes, also going backwards.
        assert_eq!(stamp(1_795_641_910, 0), "2026-11-25T21:25:10.000000Z");
    }

    #[test]
    fn every_day_of_four_centuries_follows_the_one_before() {
        let (mut y, mut m, mut d) = civil_from_days(0);
        assert_eq!((y, m, d), (1970, 1, 1));
        for days in 1..146_097 {
            let leap = |y: u64| y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            (y, m, d) = if d < month_len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
        }
    }

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

    /// The kinds of line the server logs, and a few it does not.
    fn log_some_lines() {
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let name = "dir/a \"quoted\"\tname\u{7}";
        tracing::info!(peer = %peer, name = ?name, status = %"1", bytes = 1024u64, ms = format_args!("{:.1}", 0.25), "sent");
        tracing::warn!(peer = %peer, name = ?"-", status = %"-", bytes = 0u64, ms = format_args!("{:.1}", 1000.0), "request did not arrive in time; closed without a response");
        let e = io::Error::other("too many open files");
        tracing::warn!(error = %e, "accept failed; retrying");
        tracing::error!(
            r#type = "raw",
            flag = true,
            n = -3i64,
            x = 1.5f64,
            "odd {} fields",
            3
        );
        tracing::warn!(
            "escapes \x1b[31m, \x07\x08\x0c\x7f and \u{9b}\u{85} in {}",
            "the message\x1b"
        );
        let outer = io::Error::other(e);
        tracing::warn!(error = &outer as &(dyn std::error::Error + 'static), kind = ?outer.kind(), "with a source");
        tracing::debug!("filtered out");
        let span = tracing::info_span!("inside", id = 7);
        let _entered = span.enter();
        tracing::info!(k = "v", "in a span");
    }

    fn render<F>(format: F) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        render_with(format, log_some_lines)
    }

    /// What `log` logs, in `format` without colours, from `info` up.
    fn render_with<F>(format: F, log: impl FnOnce()) -> String
    where
        F: FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let out = Capture::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(Level::INFO)
            .with_writer(move || writer.clone())
            .event_format(format)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    /// Each line without its timestamp, which differs between two renderings.
    fn without_times(text: &str) -> Vec<String> {
        text.lines()
            .map(|line| {
                let (time, rest) = line.split_at(27);
                assert!(time.ends_with('Z'), "{line}");
                rest.to_owned()
            })
            .collect()
    }

    #[test]
    fn lines_match_the_default_format() {
        let ours = render(LineFormat::default());
        let default = render(Format::<Full>::default());
        assert_eq!(ours.lines().count(), 7, "{ours}");
        assert_eq!(without_times(&ours), without_times(&default));
        assert!(ours.contains("  INFO filefetch::logline::tests: sent peer=127.0.0.1:40000 "));
    }

    /// `make()` under a subscriber that logs from `max` up.
    fn with_max_level<T>(max: Level, make: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(max)
            .with_writer(io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, make)
    }

    #[test]
    fn access_lines_follow_the_filters_in_force_when_made() {
        for (max, infos, warnings) in [
            (Level::TRACE, 11, 3),
            (Level::INFO, 11, 3),
            (Level::WARN, 0, 3),
            (Level::ERROR, 0, 0),
        ] {
            let out = Capture::default();
            let lines = with_max_level(max, || {
                AccessLines::new(LogBuf::new(Box::new(out.clone()), None))
            });
            // Logged outside the subscriber: what counts is the filter when the log was made.
            entries().iter().for_each(|entry| lines.log(entry));
            let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
            let count = |level: &str| text.lines().filter(|l| l.contains(level)).count();
            assert_eq!(
                (count("  INFO "), count("  WARN ")),
                (infos, warnings),
                "{max}"
            );
        }
    }

    /// Entries of every kind the server logs, with names and messages that need escaping.
    fn entries() -> Vec<AccessEntry<'static>> {
        let v4 = "192.0.2.7:40000".parse().unwrap();
        let mut all = Vec::new();
        let names = [
            None,
            Some(""),
            Some("a.txt"),
            Some("dir/with space/~tilde's"),
            Some("quote\" and back\\slash"),
            Some("tab\tnew\nline\r\u{7}\u{1b}[31m"),
            Some("caf\u{e9} \u{85}\u{9b} \u{fffd}\u{200b}"),
        ];
        for (i, name) in names.into_iter().enumerate() {
            all.push(AccessEntry {
                level: Level::INFO,
                client: v4,
                via: None,
                name,
                status: Some(1),
                bytes: 1024 << i,
                duration: Duration::from_micros(37 * i as u64),
                outcome: "sent",
                message: &"sent",
            });
        }
        for (client, via) in [
            ("[2001:db8::1]:1", None),
            ("[::ffff:10.0.0.1]:65535", Some("127.0.0.1:0")),
            ("0.0.0.0:0", Some("[::1]:443")),
            ("255.255.255.255:8080", Some("10.20.30.40:5")),
        ] {
            all.push(AccessEntry {
                level: Level::INFO,
                client: client.parse().unwrap(),
                via: via.map(|v| v.parse().unwrap()),
                name: Some("x"),
                status: Some(0),
                bytes: 0,
                duration: Duration::from_millis(1500),
                outcome: "not_found",
                message: &"not found (no such file)",
            });
        }
        for (status, message) in [
            (
                None,
                "request did not arrive in time; closed without a response",
            ),
            (Some(1), "client went away: Broken pipe (os error 32)"),
            (
                None,
                "bad request: \x1b[2Jname \u{9b}\x07\x08\x0c\x7f; closed",
            ),
        ] {
            all.push(AccessEntry {
                level: Level::WARN,
                client: v4,
                via: None,
                name: None,
                status,
                bytes: u64::MAX,
                duration: Duration::MAX,
                outcome: "request_timeout",
                message: Box::leak(Box::new(message)),
            });
        }
        all
    }

    #[test]
    fn access_lines_match_the_event_in_the_default_format() {
        let entries = entries();
        let log_all = || entries.iter().for_each(AccessEntry::trace);
        let mut ours = String::new();
        for entry in &entries {
            write_access_line(&mut ours, entry, SystemTime::now()).unwrap();
        }
        for theirs in [
            render_with(Format::<Full>::default(), log_all),
            render_with(LineFormat::default(), log_all),
        ] {
            assert_eq!(theirs.lines().count(), entries.len(), "{theirs}");
            assert_eq!(without_times(&ours), without_times(&theirs));
        }
        assert!(ours.contains(
            "  INFO filefetch::server: sent peer=192.0.2.7:40000 name=\"a.txt\" status=1 \
             bytes=4096 ms=0.1 outcome=sent\n"
        ));
    }

    #[test]
    fn access_lines_go_into_the_log_whole_with_the_time() {
        let out = Capture::default();
        let lines = with_max_level(Level::INFO, || {
            AccessLines::new(LogBuf::new(Box::new(out.clone()), None))
        });
        let before = SystemTime::now();
        for entry in entries() {
            lines.log(&entry);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut expected = String::new();
        for entry in entries() {
            write_access_line(&mut expected, &entry, before).unwrap();
        }
        assert_eq!(without_times(&text), without_times(&expected));
        // Each line's time is when it was logged: not before the first was.
        let first = text.lines().next().unwrap();
        let mut stamp = String::new();
        write_timestamp(&mut stamp, before).unwrap();
        assert!(
            first[..27] >= stamp[..],
            "{first} was logged before {stamp}"
        );
    }
}
