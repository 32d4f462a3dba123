//! Ctrl-C and its kin: each one is counted, and the command polls the count; the one that
//! reaches a given count ends the process at once, from the handler, with exit status 130.
//!
//! On Unix these are SIGINT and SIGTERM, and also SIGHUP and SIGQUIT (a terminal hanging up,
//! `Ctrl-\`), whose default actions would end the process without removing a partial
//! download. On Windows they are the console's control events: Ctrl-C and Ctrl-Break are
//! counted the same way, and closing the console window (after which Windows ends the
//! process within seconds anyway) exits at once.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::exit::Exit;

/// How many interrupts have arrived, for the whole process.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The count at which the handler ends the process (0: not installed).
static EXIT_AT: AtomicUsize = AtomicUsize::new(0);

/// Counts one interrupt and, at the limit, ends the process. Async-signal-safe: one
/// lock-free atomic addition, a load and, at the limit, `_exit`. It allocates nothing, takes
/// no lock and cannot panic.
fn on_interrupt() {
    let count = COUNT.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    let exit_at = EXIT_AT.load(Ordering::SeqCst);
    if exit_at != 0 && count >= exit_at {
        exit_now();
    }
}

/// Ends the process at once with status 130: no destructors, no buffers flushed.
pub fn exit_now() -> ! {
    imp::exit(Exit::Interrupted as i32)
}

/// The interrupts that have arrived since [`Interrupt::install`].
#[derive(Debug, Clone)]
pub struct Interrupt(());

impl Interrupt {
    /// Replaces the default actions of the interrupts for the rest of the process. The
    /// `exit_at`-th one ends the process at once with status 130; the ones before it are
    /// only counted.
    pub fn install(exit_at: usize) -> io::Result<Interrupt> {
        EXIT_AT.store(exit_at.max(1), Ordering::SeqCst);
        imp::install()?;
        Ok(Interrupt(()))
    }

    /// Whether an interrupt has arrived.
    pub fn raised(&self) -> bool {
        self.count() >= 1
    }

    /// How many interrupts have arrived.
    pub fn count(&self) -> usize {
        COUNT.load(Ordering::SeqCst)
    }
}

#[cfg(unix)]
mod imp {
    use std::io;

    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    use signal_hook::low_level;

    pub(super) fn install() -> io::Result<()> {
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            // SAFETY: the action (`on_interrupt`) is async-signal-safe; see there.
            unsafe { low_level::register(signal, super::on_interrupt) }?;
        }
        Ok(())
    }

    pub(super) fn exit(code: i32) -> ! {
        low_level::exit(code)
    }
}

#[cfg(windows)]
mod imp {
    use std::io;

    use windows_sys::core::BOOL;
    use windows_sys::Win32::System::Console::{
        SetConsoleCtrlHandler, CTRL_BREAK_EVENT, CTRL_CLOSE_EVENT, CTRL_C_EVENT,
    };
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, TerminateProcess};

    /// Runs on a thread Windows starts for each event.
    unsafe extern "system" fn handler(event: u32) -> BOOL {
        match event {
            CTRL_C_EVENT | CTRL_BREAK_EVENT => {
                super::on_interrupt();
                1
            }
            CTRL_CLOSE_EVENT => super::exit_now(),
            // Logoff and shutdown: the default action.
            _ => 0,
        }
    }

    pub(super) fn install() -> io::Result<()> {
        // SAFETY: `handler` has the signature Windows expects and stays valid for the life
        // of the process (a plain function).
        if unsafe { SetConsoleCtrlHandler(Some(handler), 1) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn exit(code: i32) -> ! {
        // Like `_exit`: no exit handlers, no DLL detach routines (which could wait on the
        // server's threads).
        // SAFETY: the pseudo-handle of the current process is always valid.
        unsafe { TerminateProcess(GetCurrentProcess(), code as u32) };
        // Unreachable: the process ended in the call.
        std::process::abort()
    }
}
