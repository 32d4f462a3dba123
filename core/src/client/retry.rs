//! Retries: which failures another attempt may cure, and the wait between attempts.
//!
//! Retried: the host could not be resolved or connected to (kind `Unreachable`: a network
//! coming up, a server restarting); the connection was closed or reset before the response
//! ([`Error::ServerClosed`]), inside the header ([`Error::TruncatedHeader`]) or before all
//! the data ([`Error::Incomplete`]); a timeout while connecting, sending, waiting for the
//! response or the data, or below the minimum rate (a fresh connection may take a better
//! path, as curl retries its own timeouts). Not retried: the limit on the whole fetch, which
//! bounds the retries too; the server's answers (no such file, a malformed header, excess
//! data: a server that says them once says them again); the file too large; data whose
//! checksum does not match (it arrived whole, so the server has other data than was
//! expected); anything local or asked for (a bad argument, the destination existing, a file
//! or socket error, the progress callback's abort, the interrupt check).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::options::FetchOptions;
use super::rules::POLL;
use crate::config;
use crate::error::{Error, Result, TimeoutPhase};

/// Told of a retry besides the options' own hook: `(error, attempt, wait)`.
pub(crate) type Report<'o> = &'o (dyn Fn(&Error, u32, Duration) + Send + Sync + 'o);

/// The attempts of one fetch: when it started, and how long to wait before the next one.
pub(crate) struct Retries<'o> {
    options: &'o FetchOptions,
    report: Option<Report<'o>>,
    start: Instant,
    deadline: Option<Instant>,
    failed: u32,
    /// The wait before the next attempt, before jitter.
    delay: Duration,
}

impl<'o> Retries<'o> {
    /// A fetch starting now; `report`, if any, is told of each retry after the options' hook.
    pub(crate) fn new(options: &'o FetchOptions, report: Option<Report<'o>>) -> Self {
        let start = Instant::now();
        Retries {
            options,
            report,
            start,
            deadline: options
                .max_time()
                .and_then(|limit| start.checked_add(limit)),
            failed: 0,
            delay: options.retry_delay(),
        }
    }

    /// When the fetch started: its time limit counts from here, through every attempt.
    pub(crate) fn start(&self) -> Instant {
        self.start
    }

    /// After an attempt failed with `error`: waits, and returns `Ok` when another attempt is
    /// to be made. Otherwise returns `error` itself (not worth retrying, no retry left, or the
    /// time limit would pass during the wait), or [`Error::Interrupted`] when the interrupt
    /// check fires during the wait.
    pub(crate) fn again(&mut self, error: Error) -> Result<()> {
        let end = self.wait(error)?;
        while let Some(slice) = self.back_off(end)? {
            std::thread::sleep(slice);
        }
        Ok(())
    }

    /// [`Retries::again`] on tokio: the wait is a timer, and dropping the future ends it.
    pub(crate) async fn again_async(&mut self, error: Error) -> Result<()> {
        let end = self.wait(error)?;
        while let Some(slice) = self.back_off(end)? {
            tokio::time::sleep(slice).await;
        }
        Ok(())
    }

    /// Decides after an attempt failed with `error`: when the next attempt is to start, or
    /// the error to return (see [`Retries::again`]). Tells the hooks of a retry.
    fn wait(&mut self, error: Error) -> Result<Instant> {
        self.failed += 1;
        if self.failed > self.options.retries() || !retryable(&error) {
            return Err(error);
        }
        let wait = jitter(self.delay, random());
        self.delay = next_delay(self.delay, self.options.retry_delay());
        if let Some(deadline) = self.deadline {
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|end| end >= deadline)
            {
                return Err(error);
            }
        }
        if let Some(hook) = self.options.on_retry() {
            hook(&error, self.failed, wait);
        }
        if let Some(report) = self.report {
            report(&error, self.failed, wait);
        }
        Ok(Instant::now() + wait)
    }

    /// Waiting for the next attempt until `end`: the next slice to sleep (the poll interval
    /// at most), `None` once it is time, or [`Error::Interrupted`] as soon as the interrupt
    /// check says so.
    fn back_off(&self, end: Instant) -> Result<Option<Duration>> {
        if self.options.interrupt().is_some_and(|check| check()) {
            return Err(Error::Interrupted);
        }
        let left = end.saturating_duration_since(Instant::now());
        Ok((!left.is_zero()).then(|| left.min(POLL)))
    }
}

/// Whether another attempt may succeed where this one failed with `error` (the module's
/// documentation says why for each).
pub(crate) fn retryable(error: &Error) -> bool {
    match error {
        Error::Resolve { .. } | Error::Connect { .. } => true,
        Error::ServerClosed | Error::TruncatedHeader { .. } | Error::Incomplete { .. } => true,
        Error::Timeout { phase } => match phase {
            TimeoutPhase::Connect { .. }
            | TimeoutPhase::Request
            | TimeoutPhase::Response
            | TimeoutPhase::Data { .. }
            | TimeoutPhase::Rate { .. } => true,
            TimeoutPhase::Total { .. } => false,
        },
        Error::NotFound { .. }
        | Error::MalformedResponse(_)
        | Error::ExcessData { .. }
        | Error::TooLarge { .. }
        | Error::ChecksumMismatch { .. }
        | Error::DestinationExists { .. }
        | Error::InvalidName { .. }
        | Error::InvalidOption { .. }
        | Error::Bind { .. }
        | Error::Io { .. }
        | Error::Aborted
        | Error::Interrupted => false,
    }
}

/// The wait after `delay`: twice as long, at most the cap (or the first wait, if longer).
fn next_delay(delay: Duration, first: Duration) -> Duration {
    delay
        .saturating_mul(2)
        .min(config::RETRY_DELAY_CAP.max(first))
}

/// `delay` shortened by up to a quarter, by `random` (from 0 to 1).
fn jitter(delay: Duration, random: f64) -> Duration {
    delay.mul_f64(1.0 - 0.25 * random.clamp(0.0, 1.0))
}

/// A number from 0 (included) to 1 (excluded), from the standard library's randomly keyed
/// hasher: plenty to spread retries, and no generator to depend on.
fn random() -> f64 {
    let bits = RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let first = Duration::from_millis(250);
        let mut delay = first;
        let mut seen = vec![];
        for _ in 0..8 {
            seen.push(delay.as_millis());
            delay = next_delay(delay, first);
        }
        assert_eq!(seen, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        // A first wait above the cap is kept; a zero one stays zero.
        let long = Duration::from_secs(30);
        assert_eq!(next_delay(long, long), long);
        assert_eq!(next_delay(Duration::ZERO, Duration::ZERO), Duration::ZERO);
        assert_eq!(
            next_delay(config::MAX_DURATION, config::MAX_DURATION),
            config::MAX_DURATION
        );
    }

    #[test]
    fn jitter_takes_off_at_most_a_quarter() {
        let d = Duration::from_millis(1000);
        assert_eq!(jitter(d, 0.0), d);
        assert_eq!(jitter(d, 1.0), Duration::from_millis(750));
        for _ in 0..100 {
            let r = random();
            assert!((0.0..1.0).contains(&r), "{r}");
            let j = jitter(d, r);
            assert!(j > Duration::from_millis(749) && j <= d, "{j:?}");
        }
    }

    #[test]
    fn only_failures_another_attempt_may_cure_are_retried() {
        let addr = "127.0.0.1:9".parse().unwrap();
        let io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let retried = [
            Error::Connect { addr, source: io() },
            Error::Resolve {
                host: "h".into(),
                source: io(),
            },
            Error::ServerClosed,
            Error::TruncatedHeader { received: 3 },
            Error::Incomplete {
                received: 1,
                expected: 2,
            },
            Error::Timeout {
                phase: TimeoutPhase::Response,
            },
            Error::Timeout {
                phase: TimeoutPhase::Data {
                    received: 0,
                    expected: 1,
                },
            },
        ];
        for e in &retried {
            assert!(retryable(e), "{e:?}");
        }
        let final_ = [
            Error::NotFound { name: "f".into() },
            Error::Timeout {
                phase: TimeoutPhase::Total {
                    limit: Duration::from_secs(1),
                },
            },
            Error::ExcessData { expected: 1 },
            Error::TooLarge { size: 2, limit: 1 },
            Error::Io {
                path: None,
                source: io(),
            },
            Error::Aborted,
            Error::Interrupted,
        ];
        for e in &final_ {
            assert!(!retryable(e), "{e:?}");
        }
    }
}
