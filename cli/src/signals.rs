//! SIGINT and SIGTERM: the first one raises a flag the command polls, a second one ends the
//! process at once with exit status 130.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;

use crate::exit::Exit;

/// The "stop, please" flag raised by the first SIGINT or SIGTERM.
#[derive(Debug, Clone)]
pub struct Interrupt {
    raised: Arc<AtomicBool>,
}

impl Interrupt {
    /// Replaces the default actions of SIGINT and SIGTERM for the rest of the process.
    pub fn install() -> io::Result<Interrupt> {
        let raised = Arc::new(AtomicBool::new(false));
        for signal in [SIGINT, SIGTERM] {
            // Handlers run in the order registered: this one sees the flag as the previous
            // signal left it, so only a second signal exits.
            flag::register_conditional_shutdown(signal, Exit::Interrupted as i32, raised.clone())?;
            flag::register(signal, raised.clone())?;
        }
        Ok(Interrupt { raised })
    }

    /// Whether a signal has arrived.
    pub fn raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }
}
