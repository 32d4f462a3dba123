//! The `progress` callback of an asyncio transfer, called off the runtime's workers.
//!
//! Core calls a fetch's progress callback synchronously, from the future, as each chunk of
//! data is stored: on a worker thread of the runtime. Calling Python there would hold that
//! worker (and every transfer it drives) while it waits for the GIL, which the event loop's
//! thread holds whenever it runs Python code, and for as long as the callback takes; with
//! two workers, two slow callbacks would stop every transfer and every server wait. Calling
//! it for every chunk on a blocking thread instead would queue up calls faster than Python
//! can make them. So the fetch's callback ([`Relay::report`]) only records the update, and
//! the Python callback is called on a thread of the runtime's blocking pool, coalescing:
//!
//! - one call at a time per transfer, in order, each with the GIL taken for just that call;
//! - updates that arrive while a call runs are coalesced, the latest replacing the previous
//!   one, except those with `received` 0 (the start of each attempt, which are all made);
//! - the last update of an attempt (`received == total`) is always made, and before the
//!   fetch goes on: the fetch's callback makes it itself, once the call in progress (if any)
//!   has ended, inside `tokio::task::block_in_place`, so that the runtime hands the worker's
//!   other tasks to another thread meanwhile (the blocking pool's calls stop short of it:
//!   a callback held there then holds only the fetch's thread). Its verdict is the fetch's:
//!   an exception there stops the fetch before the file is moved into place or the data
//!   returned, as it does the blocking fetch;
//! - an exception from any call stops the fetch at its next update (with the exception
//!   kept in [`Raised`], to be raised in place of the fetch's `AbortedError`), and no further
//!   call is made.
//!
//! A call holds one of the runtime's few threads while it runs, so a callback should return
//! promptly. When the transfer ends (or its task is aborted), [`Relay::finish`] drops the
//! updates not made yet and waits for a call in progress, so that no call runs once the
//! coroutine has ended.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::pin::pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use pyo3::prelude::*;
use tokio::sync::Notify;

use crate::interrupt::Raised;

/// One transfer's progress callback and the updates on their way to it.
pub(crate) struct Relay {
    callback: Py<PyAny>,
    raised: Raised,
    state: Mutex<State>,
    /// Notified as a call ends, for a thread waiting to make the last call.
    call_ended: Condvar,
    /// The same, for [`Relay::finish`].
    idle: Notify,
}

#[derive(Default)]
struct State {
    /// The updates not made yet, `(received, total)`, oldest first.
    pending: VecDeque<(u64, u64)>,
    /// A thread is in the callback (or between two calls of its drain).
    calling: bool,
    /// A drain is queued on the blocking pool.
    scheduled: bool,
    /// The callback raised (or Python could not be attached to): no more calls.
    failed: bool,
    /// The transfer has ended: no more calls.
    closed: bool,
}

impl State {
    /// Adds an update, replacing the one before if neither is the start of an attempt.
    fn push(&mut self, update: (u64, u64)) {
        match self.pending.back_mut() {
            Some(last) if last.0 != 0 && update.0 != 0 => *last = update,
            _ => self.pending.push_back(update),
        }
    }
}

impl Relay {
    /// Relays to `callback`, keeping the exception it raises in `raised`.
    pub(crate) fn new(callback: Py<PyAny>, raised: Raised) -> Arc<Relay> {
        Arc::new(Relay {
            callback,
            raised,
            state: Mutex::default(),
            call_ended: Condvar::new(),
            idle: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The fetch's progress callback, for a fetch run on the runtime's workers.
    pub(crate) fn report(
        self: &Arc<Self>,
    ) -> impl FnMut(u64, u64) -> ControlFlow<()> + Send + 'static {
        let relay = self.clone();
        move |received, total| relay.update(received, total)
    }

    fn update(self: &Arc<Self>, received: u64, total: u64) -> ControlFlow<()> {
        let mut state = self.state();
        if state.failed {
            return ControlFlow::Break(());
        }
        state.push((received, total));
        if received == total {
            drop(state);
            return tokio::task::block_in_place(|| self.last());
        }
        if !state.calling && !state.scheduled {
            state.scheduled = true;
            let relay = self.clone();
            tokio::task::spawn_blocking(move || relay.scheduled());
        }
        ControlFlow::Continue(())
    }

    /// The queued drain: makes the pending calls up to the last of an attempt (left to the
    /// fetch's thread), unless another thread is at it.
    fn scheduled(&self) {
        let mut state = self.state();
        state.scheduled = false;
        if !state.calling {
            drop(self.drain(state, false));
        }
    }

    /// The last update of an attempt, pending: waits for the call in progress, if any, then
    /// makes the pending calls, the last among them, on this thread. The fetch goes on
    /// unless one raised.
    fn last(&self) -> ControlFlow<()> {
        let mut state = self.state();
        while state.calling {
            state = self
                .call_ended
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if self.drain(state, true).failed {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Makes the pending calls in order, one at a time, without the lock during each, up to
    /// the last update of an attempt, which is made only if `last`; `state` must have no
    /// call in progress. Returns the lock.
    fn drain<'s>(&'s self, mut state: MutexGuard<'s, State>, last: bool) -> MutexGuard<'s, State> {
        while !state.failed && !state.closed {
            let Some(&(received, total)) = state.pending.front() else {
                break;
            };
            if received == total && !last {
                break;
            }
            state.pending.pop_front();
            state.calling = true;
            drop(state);
            let called = Python::try_attach(|py| {
                self.callback
                    .call1(py, (received, total))
                    .map(drop)
                    .map_err(|e| self.raised.store(e))
            });
            state = self.state();
            state.calling = false;
            if !matches!(called, Some(Ok(()))) {
                state.failed = true;
            }
            self.call_ended.notify_all();
            self.idle.notify_waiters();
        }
        if state.failed || state.closed {
            state.pending.clear();
        }
        state
    }

    /// Ends the relay as its transfer ends, or once its task has been aborted: the updates
    /// not made yet are dropped, and this completes once no call is in progress.
    pub(crate) async fn finish(&self) {
        loop {
            let mut ended = pin!(self.idle.notified());
            ended.as_mut().enable();
            {
                let mut state = self.state();
                state.closed = true;
                state.pending.clear();
                if !state.calling {
                    return;
                }
            }
            ended.await;
        }
    }
}
