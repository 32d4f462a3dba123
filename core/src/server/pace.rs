//! Rate limits: token buckets that pace what a connection (and the whole server) sends.
//!
//! A bucket fills at the rate, up to its burst (a tenth of a second's worth, at least
//! [`MIN_BURST`] bytes), and starts full. Before each write the send path asks [`Pace`] for
//! leave to send: it reserves at most a burst's worth from every bucket that applies,
//! sleeping (on the runtime's timer, never blocking a thread) until the bytes are covered,
//! and gives back what the socket did not take. So whatever the send path (`sendfile`, the
//! buffer, a stream), the bytes handed to the socket in the first `t` seconds of a bucket
//! are at most `rate × t + burst`.
//!
//! A reservation may take a bucket below empty: the next one then waits for the debt to be
//! paid off first, so connections sharing the server's bucket are served in the order they
//! asked, [`SHARED_QUANTUM`] bytes at a time at most. Levels are kept in byte-nanoseconds, exactly, so no rounding ever adds a byte.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{sleep, Instant};

/// The smallest burst: a rate below 10 KiB/s still sends 1 KiB at a time (a response header
/// is never split by the pacing).
pub(crate) const MIN_BURST: u64 = 1024;

/// Most bytes a connection reserves at once from the server's bucket: connections sharing it
/// take turns in slices this small, so that each one's data keeps flowing (with `n`
/// connections at a total rate `r`, every `n × 16 KiB / r` seconds at least).
pub(crate) const SHARED_QUANTUM: u64 = 16 * 1024;

/// One byte, in a bucket's units (byte-nanoseconds per second: a byte is 10^9 units, and a
/// nanosecond at `rate` bytes a second adds `rate` units).
const UNIT: i128 = 1_000_000_000;

/// The burst of a bucket filling at `rate` bytes a second: a tenth of a second's worth, at
/// least [`MIN_BURST`].
pub(crate) fn burst(rate: u64) -> u64 {
    (rate / 10).max(MIN_BURST)
}

/// A token bucket of `rate` bytes a second.
#[derive(Debug)]
pub(crate) struct Bucket {
    rate: u64,
    burst: u64,
    /// Bytes that may leave now, in [`UNIT`]s; below zero, bytes reserved ahead of the rate.
    level: i128,
    /// When `level` was last brought up to date.
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` (at least 1) bytes a second.
    pub(crate) fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1);
        let burst = burst(rate);
        Bucket {
            rate,
            burst,
            level: i128::from(burst) * UNIT,
            at: now,
        }
    }

    fn full(&self) -> i128 {
        i128::from(self.burst) * UNIT
    }

    /// Reserves `n` bytes; returns how long to wait before sending them.
    fn take(&mut self, n: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        if now > self.at {
            self.at = now;
        }
        let gained = elapsed.saturating_mul(u128::from(self.rate));
        let gained = i128::try_from(gained).unwrap_or(i128::MAX);
        self.level = self.level.saturating_add(gained).min(self.full());
        self.level -= i128::from(n) * UNIT;
        if self.level >= 0 {
            return Duration::ZERO;
        }
        // Round up: waking a nanosecond late is harmless, a nanosecond early is not.
        let rate = i128::from(self.rate);
        let nanos = (-self.level + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Gives back `n` bytes reserved but not sent.
    fn give_back(&mut self, n: u64) {
        self.level = (self.level + i128::from(n) * UNIT).min(self.full());
    }
}

/// The server's bucket, shared by every connection (`total_rate_limit`).
#[derive(Debug)]
pub(crate) struct Shared(Mutex<Bucket>);

impl Shared {
    pub(crate) fn new(rate: u64) -> Shared {
        Shared(Mutex::new(Bucket::new(rate, Instant::now())))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Bucket) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// The pacing of one response: the connection's own bucket and the server's, either or both
/// or neither.
#[derive(Debug)]
pub(crate) struct Pace<'a> {
    own: Option<Bucket>,
    shared: Option<&'a Shared>,
    /// Most bytes reserved at once: the smaller burst, and at most [`SHARED_QUANTUM`] from
    /// the server's bucket.
    quantum: u64,
}

impl<'a> Pace<'a> {
    /// Paces at `rate` bytes a second (0: no limit of its own) and within `shared`.
    pub(crate) fn new(rate: u64, shared: Option<&'a Shared>) -> Pace<'a> {
        let own = (rate > 0).then(|| Bucket::new(rate, Instant::now()));
        let quantum = own
            .iter()
            .map(|b| b.burst)
            .chain(shared.map(|s| s.with(|b| b.burst).min(SHARED_QUANTUM)))
            .min()
            .unwrap_or(u64::MAX);
        Pace {
            own,
            shared,
            quantum,
        }
    }

    /// No pacing at all.
    #[cfg(test)]
    pub(crate) fn off() -> Pace<'static> {
        Pace::new(0, None)
    }

    /// How many of the `want` bytes may be written now, after waiting for them if need be:
    /// `want` itself when nothing paces. What the write does not take must be given back
    /// with [`unused`](Pace::unused).
    pub(crate) async fn allow(&mut self, want: usize) -> usize {
        if self.own.is_none() && self.shared.is_none() {
            return want;
        }
        let n = (want as u64).min(self.quantum);
        let now = Instant::now();
        let mut wait = Duration::ZERO;
        if let Some(own) = &mut self.own {
            wait = wait.max(own.take(n, now));
        }
        if let Some(shared) = self.shared {
            wait = wait.max(shared.with(|b| b.take(n, now)));
        }
        if !wait.is_zero() {
            sleep(wait).await;
        }
        // At most `want`, so it fits a usize.
        n as usize
    }

    /// Gives back `n` bytes allowed but not written.
    pub(crate) fn unused(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(own) = &mut self.own {
            own.give_back(n as u64);
        }
        if let Some(shared) = self.shared {
            shared.with(|b| b.give_back(n as u64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_never_runs_ahead_of_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(1000, start);
        assert_eq!(bucket.burst, MIN_BURST);
        // The burst goes at once, the next byte a millisecond later.
        assert_eq!(bucket.take(1024, start), Duration::ZERO);
        assert_eq!(bucket.take(1, start), Duration::from_millis(1));
        // Debt is paid first: 999 more bytes are due a second after the first byte.
        assert_eq!(bucket.take(999, start), Duration::from_secs(1));
        // Given back, they are no longer waited for.
        bucket.give_back(999);
        assert_eq!(bucket.take(0, start), Duration::from_millis(1));
        // Time refills, up to the burst and no more.
        let later = start + Duration::from_secs(60);
        assert_eq!(bucket.take(1024, later), Duration::ZERO);
        assert_eq!(bucket.take(10, later), Duration::from_millis(10));
    }

    #[test]
    fn sent_bytes_stay_under_rate_times_time_plus_burst() {
        // Reservations of uneven sizes at uneven times, each sent when the bucket says:
        // by every moment, no more than rate × t + burst bytes were due.
        let start = Instant::now();
        let rate = 256 * 1024;
        let mut bucket = Bucket::new(rate, start);
        let mut now = start;
        let mut sent = 0u64;
        for i in 0..10_000u64 {
            let n = (i * 7919) % 40_000;
            let wait = bucket.take(n, now);
            now += wait;
            sent += n;
            let t = now.duration_since(start).as_secs_f64();
            assert!(sent as f64 <= rate as f64 * t + burst(rate) as f64 + 1e-6);
            now += Duration::from_micros(i % 5_000);
        }
    }

    #[test]
    fn extreme_rates_do_not_overflow() {
        let start = Instant::now();
        let mut fast = Bucket::new(u64::MAX, start);
        assert_eq!(fast.take(1 << 40, start), Duration::ZERO);
        let far = start + Duration::from_secs(86_400 * 365 * 30);
        assert_eq!(fast.take(1 << 40, far), Duration::ZERO);
        let mut slow = Bucket::new(1, start);
        assert_eq!(slow.take(MIN_BURST + 1, start), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn pacing_off_allows_everything() {
        let mut pace = Pace::off();
        assert_eq!(pace.allow(usize::MAX).await, usize::MAX);
        pace.unused(10);
        let shared = Shared::new(10_000);
        let mut pace = Pace::new(100_000, Some(&shared));
        // The smaller burst bounds each reservation.
        assert_eq!(pace.allow(1 << 20).await, 1024);
        let shared = Shared::new(100 << 20);
        let mut pace = Pace::new(0, Some(&shared));
        assert_eq!(pace.allow(1 << 20).await as u64, SHARED_QUANTUM);
    }
}
