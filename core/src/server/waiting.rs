//! Linux: the accept loop of a listening socket the server bound itself, waiting in `accept`
//! on a thread of its own, as a minimal server does.
//!
//! The kernel hands each connection to the waiting thread directly: no event loop is asked,
//! and no other thread is woken. The connection runs right there for as long as it needs no
//! waiting, which is all of it for a small file; a connection that has to wait (a request
//! still on its way, a slow client, a large file) goes on as a task on the runtime's worker
//! threads. Measured against runtime workers taking turns at the listening socket, this
//! takes about a tenth off the server's CPU time per small request: every thread that
//! sleeps and wakes for a connection costs more than the connection's own work.
//!
//! One thread serves every small request of its listening socket, up to what one core can
//! do. When it is busy nearly all the time ([`Busy`]), it hands every other connection to
//! the workers, which then serve in parallel.
//!
//! The loop ends when the server stops: `shutdown(2)` of the listening socket ends the
//! `accept` waiting on it. A socket handed over by a service manager is shared with it, and
//! shutting it down would take it from the service manager too; those are served by the
//! runtime's accept loops instead (see `accept_loop`).

use std::future::Future;
use std::net::TcpListener;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Semaphore, TryAcquireError};

use super::exchange::{connection, Ctx};
use super::{accept_failed, State};
use crate::sys;

/// The threads waiting in `accept`, one per listening socket, and how to stop them.
pub(super) struct Threads {
    listeners: Vec<Arc<TcpListener>>,
    /// A clone goes with each thread and is dropped as it ends: once every clone and this
    /// one are gone, `ended` says so.
    alive: Option<mpsc::Sender<()>>,
    ended: mpsc::Receiver<()>,
}

impl Threads {
    pub(super) fn new() -> Threads {
        let (alive, ended) = mpsc::channel(1);
        Threads {
            listeners: Vec::new(),
            alive: Some(alive),
            ended,
        }
    }

    /// Starts a thread serving `listener` (in blocking mode), named as the runtime's
    /// threads are; an error if the system gives no thread.
    pub(super) fn start(
        &mut self,
        listener: TcpListener,
        ctx: Arc<Ctx>,
        permits: Arc<Semaphore>,
        state: watch::Receiver<State>,
    ) -> std::io::Result<()> {
        let listener = Arc::new(listener);
        let runtime = tokio::runtime::Handle::current();
        let alive = self.alive.clone();
        let theirs = listener.clone();
        std::thread::Builder::new()
            .name("filefetch-server".into())
            .spawn(move || {
                let _alive = alive;
                let _runtime = runtime.enter();
                sys::block_sigpipe();
                accept_waiting(&theirs, &ctx, &permits, state);
            })?;
        self.listeners.push(listener);
        Ok(())
    }

    /// Shuts the listening sockets down, which ends the `accept` each thread waits in, and
    /// waits for the threads to end; the sockets close then.
    pub(super) async fn stop(&mut self) {
        for listener in &self.listeners {
            let _ = socket2::SockRef::from(&**listener).shutdown(std::net::Shutdown::Read);
        }
        self.alive = None;
        while self.ended.recv().await.is_some() {}
        self.listeners.clear();
    }
}

/// Serves the connections of `listener` (in blocking mode) until it is shut down or the
/// server stops.
pub(super) fn accept_waiting(
    listener: &TcpListener,
    ctx: &Arc<Ctx>,
    permits: &Arc<Semaphore>,
    mut state: watch::Receiver<State>,
) {
    let runtime = tokio::runtime::Handle::current();
    let mut last_warning = None;
    let mut busy = Busy::new(Instant::now());
    let mut here = Here::default();
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return,
            // At the connection limit: wait for a connection to end, or for the server to
            // stop.
            Err(TryAcquireError::NoPermits) => {
                let permit = runtime.block_on(async {
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => permit.ok(),
                        _ = state.wait_for(|s| *s != State::Running) => None,
                    }
                });
                match permit {
                    Some(permit) => permit,
                    None => return,
                }
            }
        };
        let waiting = Instant::now();
        let accepted = sys::accept_waiting(listener);
        let now = Instant::now();
        let spill = busy.waited(waiting, now);
        match accepted {
            Ok((sock, peer)) => {
                // The request deadline counts from here.
                let connection = connection(sock.into(), peer, ctx.clone(), permit, now);
                if spill {
                    tokio::spawn(connection);
                } else {
                    here.start(connection);
                }
            }
            // The listening socket was shut down: the server is stopping.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                if *state.borrow() != State::Running {
                    return;
                }
                std::thread::sleep(accept_failed(&e, &mut last_warning));
            }
        }
    }
}

/// Runs connections on this thread for as long as they need no waiting; whatever has to
/// wait goes on as a task on the runtime's workers.
///
/// A connection's future is a few KiB, more than the allocator keeps at hand for quick
/// reuse: the one allocation of a connection that ended here is kept for the next.
struct Here<F> {
    spare: Option<Pin<Box<F>>>,
}

impl<F> Default for Here<F> {
    fn default() -> Here<F> {
        Here { spare: None }
    }
}

impl<F: Future<Output = ()> + Send + 'static> Here<F> {
    /// A first poll here with a waker that does nothing is enough: the task polls the
    /// connection again as it starts, and every resource the connection waits on keeps its
    /// readiness until it is used.
    fn start(&mut self, connection: F) {
        let mut boxed = match self.spare.take() {
            Some(mut spare) => {
                // The future there has ended: this drops nothing but its shell.
                spare.set(connection);
                spare
            }
            None => Box::pin(connection),
        };
        let mut cx = Context::from_waker(Waker::noop());
        // A panic ends this connection only, as it would in a task of its own.
        match panic::catch_unwind(AssertUnwindSafe(|| boxed.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(())) => self.spare = Some(boxed),
            Ok(Poll::Pending) => drop(tokio::spawn(boxed)),
            Err(_) => {}
        }
    }
}

/// How busy a waiting accept loop is: the share of each [`WINDOW`] it spent serving rather
/// than waiting in `accept`. Past [`SPILL_FROM`], the next window hands every other
/// connection to the runtime's workers; spilling stops when the loop's own share falls
/// back below [`SPILL_UNTIL`] (with half the connections gone, a loop that still has work
/// for two stays above it).
#[derive(Debug)]
pub(super) struct Busy {
    window_start: Instant,
    waited: Duration,
    spilling: bool,
    /// Alternates while spilling: the connections handed on and the ones served here.
    hand_on: bool,
}

/// How long each measure of [`Busy`] lasts.
const WINDOW: Duration = Duration::from_millis(100);
/// The share of a window spent serving from which connections are handed on.
const SPILL_FROM: f64 = 0.9;
/// The share below which a loop that hands connections on serves them all again.
const SPILL_UNTIL: f64 = 0.4;

impl Busy {
    pub(super) fn new(now: Instant) -> Busy {
        Busy {
            window_start: now,
            waited: Duration::ZERO,
            spilling: false,
            hand_on: false,
        }
    }

    /// Counts a wait in `accept` from `from` to `to`, and tells whether the connection it
    /// brought is to be handed on to the workers.
    pub(super) fn waited(&mut self, from: Instant, to: Instant) -> bool {
        self.waited += to.saturating_duration_since(from);
        let elapsed = to.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let serving = 1.0 - self.waited.as_secs_f64() / elapsed.as_secs_f64();
            self.spilling = if self.spilling {
                serving >= SPILL_UNTIL
            } else {
                serving >= SPILL_FROM
            };
            self.window_start = to;
            self.waited = Duration::ZERO;
        }
        if !self.spilling {
            return false;
        }
        self.hand_on = !self.hand_on;
        self.hand_on
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Feeds `busy` one window of connections, each served for `serve` and waited for
    /// `wait`, and returns how many of them were handed on.
    fn window(busy: &mut Busy, clock: &mut Instant, serve: Duration, wait: Duration) -> usize {
        let end = *clock + WINDOW;
        let mut handed = 0;
        while *clock < end {
            *clock += serve;
            let from = *clock;
            *clock += wait;
            handed += usize::from(busy.waited(from, *clock));
        }
        handed
    }

    const US: Duration = Duration::from_micros(1);

    #[derive(Clone, Copy)]
    enum Ends {
        AtOnce,
        AfterWaiting,
        InPanic,
    }

    /// A connection's stand-in: ends as told, then counts itself in `done`.
    async fn stand_in(ends: Ends, done: Arc<AtomicUsize>) {
        match ends {
            Ends::AtOnce => {}
            Ends::AfterWaiting => tokio::task::yield_now().await,
            Ends::InPanic => panic!("a connection's panic"),
        }
        done.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn connections_ending_here_share_one_allocation_and_the_others_go_on_elsewhere() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let done = Arc::new(AtomicUsize::new(0));
        let mut here = Here::default();
        let spare = |here: &Here<_>| here.spare.as_ref().map(|b| &**b as *const _);

        here.start(stand_in(Ends::AtOnce, done.clone()));
        let first = spare(&here);
        assert!(first.is_some());
        for _ in 0..10 {
            here.start(stand_in(Ends::AtOnce, done.clone()));
            assert_eq!(spare(&here), first);
        }
        assert_eq!(done.load(Ordering::SeqCst), 11);

        // One that waits takes the allocation with it, to the runtime.
        here.start(stand_in(Ends::AfterWaiting, done.clone()));
        assert_eq!(spare(&here), None);
        assert_eq!(done.load(Ordering::SeqCst), 11);
        // A panic ends that connection, not the loop.
        here.start(stand_in(Ends::InPanic, done.clone()));
        assert_eq!(spare(&here), None);
        here.start(stand_in(Ends::AtOnce, done.clone()));
        assert!(spare(&here).is_some());

        runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(10), async {
                while done.load(Ordering::SeqCst) < 13 {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("the connection that waited did not end on the runtime");
        });
    }

    #[test]
    fn a_loop_that_keeps_up_serves_every_connection_itself() {
        let mut clock = Instant::now();
        let mut busy = Busy::new(clock);
        for _ in 0..20 {
            // Serving 60 % of the time.
            assert_eq!(window(&mut busy, &mut clock, 60 * US, 40 * US), 0);
        }
    }

    #[test]
    fn a_saturated_loop_hands_every_other_connection_on() {
        let mut clock = Instant::now();
        let mut busy = Busy::new(clock);
        // The first window measures: at most its last connection is handed on.
        assert!(window(&mut busy, &mut clock, 20 * US, Duration::ZERO) <= 1);
        let handed = window(&mut busy, &mut clock, 20 * US, Duration::ZERO);
        let total = WINDOW.as_micros() as usize / 20;
        assert!(handed.abs_diff(total / 2) <= 1, "{handed} of {total}");
    }

    #[test]
    fn spilling_stops_when_the_load_falls_and_not_before() {
        let mut clock = Instant::now();
        let mut busy = Busy::new(clock);
        window(&mut busy, &mut clock, 20 * US, Duration::ZERO);
        assert!(window(&mut busy, &mut clock, 20 * US, Duration::ZERO) > 0);
        // Half the connections gone, the loop still serves 60 % of the time: it goes on
        // handing on.
        assert!(window(&mut busy, &mut clock, 60 * US, 40 * US) > 0);
        assert!(window(&mut busy, &mut clock, 60 * US, 40 * US) > 0);
        // The load falls to a fifth: the next window serves everything here.
        window(&mut busy, &mut clock, 20 * US, 80 * US);
        assert_eq!(window(&mut busy, &mut clock, 20 * US, 80 * US), 0);
    }

    #[test]
    fn a_clock_going_nowhere_changes_nothing() {
        let clock = Instant::now();
        let mut busy = Busy::new(clock);
        for _ in 0..1000 {
            assert!(!busy.waited(clock, clock));
        }
    }
}
