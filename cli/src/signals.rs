//! SIGINT and SIGTERM: each one is counted, and the command polls the count; the signal that
//! reaches a given count ends the process at once, from the handler, with exit status 130.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::low_level;

use crate::exit::Exit;

/// How many SIGINT and SIGTERM have arrived.
#[derive(Debug, Clone)]
pub struct Interrupt {
    count: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Replaces the default actions of SIGINT and SIGTERM for the rest of the process. The
    /// `exit_at`-th signal ends the process at once with status 130 (`_exit`: no
    /// destructors, no buffers flushed); the ones before it are only counted.
    pub fn install(exit_at: usize) -> io::Result<Interrupt> {
        let count = Arc::new(AtomicUsize::new(0));
        for signal in [SIGINT, SIGTERM] {
            let count = count.clone();
            let action = move || {
                if count.fetch_add(1, Ordering::SeqCst).saturating_add(1) >= exit_at {
                    low_level::exit(Exit::Interrupted as i32);
                }
            };
            // SAFETY: the action is async-signal-safe: one lock-free atomic addition and,
            // at the limit, `_exit`. It allocates nothing, takes no lock and cannot panic.
            unsafe { low_level::register(signal, action) }?;
        }
        Ok(Interrupt { count })
    }

    /// Whether a signal has arrived.
    pub fn raised(&self) -> bool {
        self.count() >= 1
    }

    /// How many signals have arrived.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}
