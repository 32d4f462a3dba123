//! What client and server settings have in common: every default as a named constant, the
//! range each kind of value must be in, and the one conversion of a user's number of seconds
//! (the command line's and Python's unit) into a checked [`Duration`].
//!
//! The builders of [`FetchOptions`](crate::FetchOptions) and
//! [`ServerConfig`](crate::ServerConfig) check every value with these rules, so no skin
//! re-checks a range and no configured value can make arithmetic on it overflow.

use std::time::Duration;

use crate::error::{Error, Result};

/// The client's idle timeout: the protocol's rule that a read gives up after 1 s without data.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection attempt to one address may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The window a minimum transfer rate is measured over when none is given (curl's
/// `--speed-time` default).
pub const MIN_RATE_WINDOW: Duration = Duration::from_secs(30);
/// Further attempts a failed fetch makes: none unless asked for.
pub const RETRIES: u32 = 0;
/// The wait before the first retry; each later wait doubles, up to [`RETRY_DELAY_CAP`].
pub const RETRY_DELAY: Duration = Duration::from_millis(250);
/// The longest wait between attempts (unless the first wait asked for is longer).
pub const RETRY_DELAY_CAP: Duration = Duration::from_secs(10);
/// The most retries a fetch can be asked for.
pub const MAX_RETRIES: u32 = 100;

/// Connections a server handles at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long a client has, from connecting, to send its whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a client may read nothing before the server drops it.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long transfers in flight may take to finish after a graceful shutdown.
pub const GRACE_PERIOD: Duration = Duration::from_secs(10);
/// How long a small file stays open for reuse by later requests of the same name.
pub const FILE_CACHE: Duration = Duration::from_secs(1);
/// Server worker threads: 0 means one per CPU core.
pub const THREADS: usize = 0;
/// Files fetched at once by default.
pub const JOBS: usize = 4;
/// The most files that can be fetched at once.
pub const MAX_JOBS: usize = 64;
/// Connections at once from one client address: 0, no limit.
pub const MAX_PER_ADDRESS: usize = 0;
/// Bytes a second one connection may send: 0, no limit.
pub const RATE_LIMIT: u64 = 0;
/// Bytes a second the whole server may send: 0, no limit.
pub const TOTAL_RATE_LIMIT: u64 = 0;

/// The longest duration any setting accepts: one year. Deadlines are counted from "now", so a
/// bound keeps every sum within what the clocks can hold on any system.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The most connections a server can be asked to handle at once.
pub const MAX_CONNECTIONS_LIMIT: usize = u32::MAX as usize;
/// The most worker threads a server can be asked for.
pub const MAX_THREADS: usize = 1024;

/// A host or address as users write one, without the brackets an IPv6 literal may carry as in
/// URLs: `[::1]` is `::1`; anything else is returned as it is.
///
/// ```
/// assert_eq!(filefetch::config::bare_host("[::1]"), "::1");
/// assert_eq!(filefetch::config::bare_host("example.org"), "example.org");
/// ```
pub fn bare_host(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `secs` seconds (fractions allowed) as a duration for the setting `option`: a finite number
/// from 0 to [`MAX_DURATION`]. Settings that must be positive say so when built.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(filefetch::config::seconds("timeout", 0.25)?, Duration::from_millis(250));
/// assert!(filefetch::config::seconds("timeout", 1e19).is_err());
/// assert!(filefetch::config::seconds("timeout", f64::NAN).is_err());
/// # Ok::<(), filefetch::Error>(())
/// ```
pub fn seconds(option: &'static str, secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(Error::invalid(
            option,
            format!("{secs} is not a number of seconds (0 or more)"),
        ));
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(too_long(option));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| too_long(option))
}

/// `ms` milliseconds as a duration for the setting `option`, at most [`MAX_DURATION`].
pub fn millis(option: &'static str, ms: u64) -> Result<Duration> {
    let d = Duration::from_millis(ms);
    if d > MAX_DURATION {
        return Err(too_long(option));
    }
    Ok(d)
}

fn too_long(option: &'static str) -> Error {
    Error::invalid(
        option,
        format!("must be at most {} s (one year)", MAX_DURATION.as_secs()),
    )
}

/// Checks a duration setting: at most [`MAX_DURATION`], and above zero if `positive`. The
/// builders apply this rule; a binding whose setters report errors one by one applies it too.
pub fn check_duration(option: &'static str, d: Duration, positive: bool) -> Result<()> {
    if d > MAX_DURATION {
        return Err(too_long(option));
    }
    if positive && d.is_zero() {
        return Err(Error::invalid(option, "must be greater than 0"));
    }
    Ok(())
}

/// Checks a count setting: from `min` to `max` (the builders use 1 to
/// [`MAX_CONNECTIONS_LIMIT`] for connections and 0 to [`MAX_THREADS`] for threads).
pub fn check_count(option: &'static str, n: usize, min: usize, max: usize) -> Result<()> {
    if n < min || n > max {
        return Err(Error::invalid(
            option,
            format!("must be from {min} to {max}, not {n}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_checked() {
        assert_eq!(seconds("t", 0.0).unwrap(), Duration::ZERO);
        assert_eq!(seconds("t", 1.5).unwrap(), Duration::from_millis(1500));
        assert_eq!(seconds("t", 31_536_000.0).unwrap(), MAX_DURATION);
        for bad in [-1.0, f64::NAN, f64::INFINITY, 31_536_000.5, 1e19, 1e300] {
            let e = seconds("request_timeout", bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::InvalidOption {
                        option: "request_timeout",
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
        assert!(millis("t", u64::MAX).is_err());
        assert_eq!(millis("t", 1500).unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn durations_and_counts_are_checked() {
        assert!(check_duration("t", Duration::ZERO, false).is_ok());
        assert!(check_duration("t", Duration::ZERO, true).is_err());
        assert!(check_duration("t", Duration::MAX, false).is_err());
        assert!(check_count("n", 0, 1, 5).is_err());
        assert!(check_count("n", 6, 1, 5).is_err());
        assert!(check_count("n", 5, 1, 5).is_ok());
    }
}
