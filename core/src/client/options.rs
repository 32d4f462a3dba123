//! How a fetch behaves: [`FetchOptions`], read-only once built, and [`FetchOptionsBuilder`],
//! which checks every value when it builds them.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{self, check_count, check_duration};
use crate::error::{Error, Result};

/// A check run while waiting; returning `true` stops the fetch with [`Error::Interrupted`](crate::Error::Interrupted).
pub type InterruptCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Told of each retry: the failed attempt's error, its number (from 1) and the wait before
/// the next attempt.
pub(crate) type RetryHook = Arc<dyn Fn(&Error, u32, Duration) + Send + Sync>;

/// How a fetch behaves. [`FetchOptions::new`] gives the defaults; [`FetchOptions::builder`]
/// sets others.
///
/// ```
/// use std::time::Duration;
/// let options = filefetch::FetchOptions::builder()
///     .idle_timeout(Duration::from_secs(5))
///     .max_time(Duration::from_secs(60))
///     .max_size(1 << 20)
///     .build()?;
/// assert_eq!(options.max_size(), Some(1 << 20));
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Clone)]
pub struct FetchOptions {
    idle_timeout: Duration,
    connect_timeout: Duration,
    max_time: Option<Duration>,
    min_rate: Option<(u64, Duration)>,
    max_size: Option<u64>,
    output: Option<PathBuf>,
    overwrite: bool,
    fsync: bool,
    interrupt: Option<InterruptCheck>,
    portable: bool,
    sha256: bool,
    retries: u32,
    retry_delay: Duration,
    on_retry: Option<RetryHook>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            idle_timeout: config::IDLE_TIMEOUT,
            connect_timeout: config::CONNECT_TIMEOUT,
            max_time: None,
            min_rate: None,
            max_size: None,
            output: None,
            overwrite: false,
            fsync: false,
            interrupt: None,
            portable: false,
            sha256: false,
            retries: config::RETRIES,
            retry_delay: config::RETRY_DELAY,
            on_retry: None,
        }
    }
}

impl fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchOptions")
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_time", &self.max_time)
            .field("min_rate", &self.min_rate)
            .field("max_size", &self.max_size)
            .field("output", &self.output)
            .field("overwrite", &self.overwrite)
            .field("fsync", &self.fsync)
            .field("interrupt", &self.interrupt.as_ref().map(|_| "Fn"))
            .field("portable", &self.portable)
            .field("sha256", &self.sha256)
            .field("retries", &self.retries)
            .field("retry_delay", &self.retry_delay)
            .field("on_retry", &self.on_retry.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl FetchOptions {
    /// The defaults: 1 s idle timeout, 5 s connect timeout, no time or size limit, no
    /// overwrite, no retry, the file named after the request in the current directory.
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> FetchOptionsBuilder {
        FetchOptionsBuilder(Self::default())
    }

    /// A builder starting from these options.
    pub fn to_builder(&self) -> FetchOptionsBuilder {
        FetchOptionsBuilder(self.clone())
    }

    /// Longest wait for any read or write to make progress.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Longest wait for a connection to one address.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Longest time the whole fetch may take, if limited.
    pub fn max_time(&self) -> Option<Duration> {
        self.max_time
    }

    /// The minimum rate in bytes per second and the window it is measured over, if any.
    pub fn min_rate(&self) -> Option<(u64, Duration)> {
        self.min_rate
    }

    /// The largest file accepted, in bytes, if limited.
    pub fn max_size(&self) -> Option<u64> {
        self.max_size
    }

    /// Where the file is written, if not beside the working directory under its own name.
    pub fn output(&self) -> Option<&Path> {
        self.output.as_deref()
    }

    /// Whether an existing destination is replaced.
    pub fn overwrite(&self) -> bool {
        self.overwrite
    }

    /// Whether the file is flushed to stable storage before it appears.
    pub fn fsync(&self) -> bool {
        self.fsync
    }

    /// Whether the portable receive path is forced.
    pub fn portable(&self) -> bool {
        self.portable
    }

    /// Whether the SHA-256 digest of a downloaded file is computed.
    pub fn sha256(&self) -> bool {
        self.sha256
    }

    /// How many more attempts a failed fetch may make.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The wait before the first retry.
    pub fn retry_delay(&self) -> Duration {
        self.retry_delay
    }

    pub(crate) fn interrupt(&self) -> Option<&InterruptCheck> {
        self.interrupt.as_ref()
    }

    pub(crate) fn on_retry(&self) -> Option<&RetryHook> {
        self.on_retry.as_ref()
    }
}

/// Sets [`FetchOptions`]; [`build`](FetchOptionsBuilder::build) checks the values.
#[derive(Clone, Debug, Default)]
pub struct FetchOptionsBuilder(FetchOptions);

impl FetchOptionsBuilder {
    /// Longest wait for any read or write to make progress (1 s by default; above 0).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.0.idle_timeout = timeout;
        self
    }

    /// Longest wait for a connection to one address of the host (5 s by default; above 0).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// Longest time the whole fetch may take, connecting included (curl's `--max-time`);
    /// past it the fetch fails with a timeout and leaves nothing behind. Off by default.
    pub fn max_time(mut self, limit: Duration) -> Self {
        self.0.max_time = Some(limit);
        self
    }

    /// Fails the fetch with a timeout when fewer than `bytes_per_sec` bytes a second arrive
    /// over `window` (curl's `--speed-limit` and `--speed-time`). Off by default; a rate of 0
    /// turns it off.
    pub fn min_rate(mut self, bytes_per_sec: u64, window: Duration) -> Self {
        self.0.min_rate = (bytes_per_sec > 0).then_some((bytes_per_sec, window));
        self
    }

    /// The largest file accepted, in bytes: a larger DataLength fails the fetch with
    /// [`Error::TooLarge`](crate::Error::TooLarge) before any data is read. Off by default.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.0.max_size = Some(bytes);
        self
    }

    /// Where the file is written. An existing directory receives it under the requested
    /// name's last component; by default that component in the current directory.
    pub fn output(mut self, path: impl Into<PathBuf>) -> Self {
        self.0.output = Some(path.into());
        self
    }

    /// Replaces an existing destination (atomically) instead of refusing.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.0.overwrite = overwrite;
        self
    }

    /// Flushes the data to stable storage before the file appears.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.0.fsync = fsync;
        self
    }

    /// A check polled about every 50 ms while waiting; when it returns `true` the fetch stops
    /// with [`Error::Interrupted`](crate::Error::Interrupted) and leaves nothing behind.
    pub fn interrupt(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.0.interrupt = Some(Arc::new(check));
        self
    }

    /// Uses the portable receive path (read into a buffer, then write) even where a
    /// zero-copy one exists (`splice` on Linux).
    pub fn portable(mut self, portable: bool) -> Self {
        self.0.portable = portable;
        self
    }

    /// Computes the SHA-256 digest of each file downloaded with
    /// [`Fetch::to_file`](crate::Fetch::to_file) as its data arrives, and reports it in
    /// [`Fetched::sha256`](crate::Fetched::sha256). The data must pass through the process
    /// for that, so this forces the buffered receive path (as [`portable`](Self::portable)
    /// does). Off by default; [`Fetch::expect_sha256`](crate::Fetch::expect_sha256) turns
    /// it on for its fetch.
    pub fn sha256(mut self, sha256: bool) -> Self {
        self.0.sha256 = sha256;
        self
    }

    /// Makes up to `retries` more attempts when one fails in a way the next may not: the
    /// host unreachable, the connection closed or reset before the response or cut short, a
    /// timeout other than [`max_time`](Self::max_time)'s (see [`Fetch`](crate::Fetch) for
    /// the whole rule). Each attempt starts afresh and nothing partial is kept; the error
    /// returned is the last attempt's. None by default; at most [`config::MAX_RETRIES`].
    pub fn retries(mut self, retries: u32) -> Self {
        self.0.retries = retries;
        self
    }

    /// The wait before the first retry (250 ms by default; 0 retries at once). Each later
    /// wait doubles, up to 10 s or this first wait if longer, and each is shortened by a
    /// random part of up to a quarter, so that clients that failed together spread out.
    /// The interrupt check is polled during the wait, and [`max_time`](Self::max_time)
    /// counts it: a retry that could not start in time is not made.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.0.retry_delay = delay;
        self
    }

    /// Calls `hook(error, attempt, wait)` before each retry, with the failed attempt's
    /// error, its number (from 1) and the wait before the next attempt: for reporting
    /// retries, or counting them. Not called when no retry follows.
    pub fn on_retry(
        mut self,
        hook: impl Fn(&Error, u32, Duration) + Send + Sync + 'static,
    ) -> Self {
        self.0.on_retry = Some(Arc::new(hook));
        self
    }

    /// The options, or [`Error::InvalidOption`](crate::Error::InvalidOption) naming the first value out of range: every
    /// duration at most [`config::MAX_DURATION`], the timeouts and the rate window above 0,
    /// the retries at most [`config::MAX_RETRIES`].
    pub fn build(self) -> Result<FetchOptions> {
        let o = self.0;
        check_duration("idle_timeout", o.idle_timeout, true)?;
        check_duration("connect_timeout", o.connect_timeout, true)?;
        if let Some(limit) = o.max_time {
            check_duration("max_time", limit, true)?;
        }
        if let Some((_, window)) = o.min_rate {
            check_duration("min_rate window", window, true)?;
        }
        check_count(
            "retries",
            o.retries as usize,
            0,
            config::MAX_RETRIES as usize,
        )?;
        check_duration("retry_delay", o.retry_delay, false)?;
        Ok(o)
    }
}
