//! The line each connection logs: by default a `tracing` event (target
//! `filefetch::server`), or handed to an [`AccessLog`] the program supplies, which writes it
//! without `tracing`'s generic field machinery. The `filefetch` command's text log does so:
//! through `tracing`, formatting each connection's line cost about 4 % of the server's CPU
//! time per small request.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::Level;

/// The target of the line each connection logs.
pub const ACCESS_TARGET: &str = "filefetch::server";

/// Where the line of each connection goes instead of a `tracing` event (see
/// [`Server::access_log`](super::Server::access_log)).
///
/// Every connection is handed to [`log`](AccessLog::log): the filters set on `tracing`
/// apply to the event, not here. A log that is to follow them asks [`access_enabled`] for
/// each level once, when it is made (or for each entry, if the filters can change).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
/// use filefetch::server::{AccessEntry, AccessLog};
/// use filefetch::{Server, ServerConfig};
///
/// /// Counts the bytes sent, and logs the other endings as the server would.
/// #[derive(Default)]
/// struct Sent(AtomicU64);
///
/// impl AccessLog for Sent {
///     fn log(&self, entry: &AccessEntry<'_>) {
///         match entry.outcome {
///             "sent" => drop(self.0.fetch_add(entry.bytes, Ordering::Relaxed)),
///             _ => entry.trace(),
///         }
///     }
/// }
///
/// let config = ServerConfig::builder().root(".").build()?;
/// let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)?
///     .access_log(Arc::new(Sent::default()));
/// # drop(server);
/// # Ok::<(), filefetch::Error>(())
/// ```
pub trait AccessLog: Send + Sync + 'static {
    /// Logs one connection, once it is closed. Called on the thread that served it, which
    /// serves others next: this must not wait (buffer the line, as a log of any volume
    /// does).
    fn log(&self, entry: &AccessEntry<'_>);
}

/// What the line of one connection says. [`AccessEntry::trace`] logs it as the `tracing`
/// event the server logs when no [`AccessLog`] is set, with these fields in this order:
///
/// `peer` ([`client`](AccessEntry::client)), `via` (only when set), `name` (in its `Debug`
/// form: quoted and escaped; `"-"` when no request was read), `status` (`1`, `0` or `-`),
/// `bytes`, `ms` (the duration in milliseconds with one decimal) and `outcome` (one word),
/// after the message.
#[derive(Clone, Copy)]
pub struct AccessEntry<'a> {
    /// `INFO` for a file sent or a name not found, `WARN` for every other ending.
    pub level: Level,
    /// Whom the connection was for: the peer, or the client a PROXY header named.
    pub client: SocketAddr,
    /// The peer (the load balancer) when a PROXY header named the client.
    pub via: Option<SocketAddr>,
    /// The name requested (invalid UTF-8 replaced), if a request was read.
    pub name: Option<&'a str>,
    /// The StatusCode sent (1: found, 0: not found or refused), if a response was sent.
    pub status: Option<u8>,
    /// The file's bytes sent (the response header not counted).
    pub bytes: u64,
    /// From the connection's accept to its close.
    pub duration: Duration,
    /// How the connection ended, in one word for programs that read the log (`sent`,
    /// `not_found`, `request_timeout`...).
    pub outcome: &'static str,
    /// How the connection ended, in words for people.
    pub message: &'a (dyn fmt::Display + Sync),
}

impl fmt::Debug for AccessEntry<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessEntry")
            .field("level", &self.level)
            .field("client", &self.client)
            .field("via", &self.via)
            .field("name", &self.name)
            .field("status", &self.status)
            .field("bytes", &self.bytes)
            .field("duration", &self.duration)
            .field("outcome", &self.outcome)
            .field("message", &format_args!("{}", self.message))
            .finish()
    }
}

/// Expands `$then` with `$l` bound to the constant [`Level`] equal to `$level`: `tracing`'s
/// macros take a constant level.
macro_rules! with_level {
    ($level:expr, $l:ident => $then:expr) => {
        match $level {
            Level::ERROR => {
                const $l: Level = Level::ERROR;
                $then
            }
            Level::WARN => {
                const $l: Level = Level::WARN;
                $then
            }
            Level::INFO => {
                const $l: Level = Level::INFO;
                $then
            }
            Level::DEBUG => {
                const $l: Level = Level::DEBUG;
                $then
            }
            Level::TRACE => {
                const $l: Level = Level::TRACE;
                $then
            }
        }
    };
}

/// Whether the `tracing` subscriber in force would log a connection's event of `level`
/// (target [`ACCESS_TARGET`]).
pub fn access_enabled(level: Level) -> bool {
    with_level!(level, L => tracing::enabled!(target: ACCESS_TARGET, L))
}

impl AccessEntry<'_> {
    /// The `status` field's text: `1` (found), `0` (not found or refused) or `-` (no
    /// response sent).
    pub fn status_text(&self) -> &'static str {
        match self.status {
            None => "-",
            Some(0) => "0",
            Some(_) => "1",
        }
    }

    /// The `ms` field: the duration in milliseconds, rounded to the nearest tenth and
    /// written with one decimal (`0.3`, `1000.0`).
    pub fn ms(&self) -> impl fmt::Display {
        Millis(self.duration)
    }

    /// Logs the entry as the `tracing` event the server logs for a connection when no
    /// [`AccessLog`] is set.
    pub fn trace(&self) {
        let name = self.name.unwrap_or("-");
        let status = self.status_text();
        let ms = self.ms();
        let via = self.via.map(tracing::field::display);
        with_level!(self.level, L => tracing::event!(
            target: ACCESS_TARGET,
            L,
            peer = %self.client, via, name = ?name, status = %status, bytes = self.bytes, ms = %ms, outcome = %self.outcome,
            "{}", self.message
        ));
    }
}

/// A duration in milliseconds with one decimal ("0.3", "1000.0"), rounded to the nearest
/// tenth, written without floating point.
struct Millis(Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenths = (self.0.as_nanos() + 50_000) / 100_000;
        // Written from the end: the tenth, the point, then the whole milliseconds (at
        // most 23 digits, for the longest Duration).
        let mut text = [0u8; 32];
        let mut at = text.len() - 2;
        text[at] = b'.';
        text[at + 1] = b'0' + (tenths % 10) as u8;
        let mut whole = tenths / 10;
        loop {
            at -= 1;
            text[at] = b'0' + (whole % 10) as u8;
            whole /= 10;
            if whole == 0 {
                break;
            }
        }
        // Only ASCII digits and a point were written.
        f.write_str(std::str::from_utf8(&text[at..]).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(duration: Duration, status: Option<u8>) -> AccessEntry<'static> {
        AccessEntry {
            level: Level::INFO,
            client: "127.0.0.1:9".parse().unwrap(),
            via: None,
            name: None,
            status,
            bytes: 0,
            duration,
            outcome: "sent",
            message: &"sent",
        }
    }

    #[test]
    fn milliseconds_round_to_the_nearest_tenth() {
        for (nanos, text) in [
            (0, "0.0"),
            (49_999, "0.0"),
            (50_000, "0.1"),
            (250_000, "0.3"),
            (1_249_999, "1.2"),
            (1_250_000, "1.3"),
            (999_950_000, "1000.0"),
            (u64::MAX, "18446744073709.6"),
        ] {
            let e = entry(Duration::from_nanos(nanos), None);
            assert_eq!(e.ms().to_string(), text, "{nanos} ns");
        }
        // The longest duration there is, without overflowing.
        let longest = entry(Duration::MAX, None).ms().to_string();
        assert_eq!(longest, "18446744073709551616000.0");
    }

    #[test]
    fn the_status_is_one_zero_or_a_dash() {
        let text = |s| entry(Duration::ZERO, s).status_text();
        assert_eq!(
            [text(None), text(Some(0)), text(Some(1)), text(Some(7))],
            ["-", "0", "1", "1"]
        );
    }
}
