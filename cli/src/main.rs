//! The `filefetch` command: serve a directory, or fetch a file, over the 0x497E
//! FileRequest/FileResponse protocol.
//!
//! The exit status says what kind of failure ended the command: `exit.rs` maps each kind
//! of library error to its code (the README's error table), and `filefetch --help` lists them.

mod args;
mod exit;
mod fetch;
mod logbuf;
mod logline;
mod serve;
mod signals;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    ignore_sigxfsz();
    // Usage errors exit with status 2, help and version with 0 (clap's own convention).
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Fetch(args) => fetch::run(args),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(failure) => {
            eprintln!("filefetch: error: {failure}");
            failure.exit.into()
        }
    }
}

/// Past a file-size limit (RLIMIT_FSIZE) a write raises SIGXFSZ, whose default action kills
/// the process before it can remove its temporary file. Ignored, the write fails with EFBIG
/// instead, and the fetch cleans up and reports it like a full disk.
#[cfg(unix)]
fn ignore_sigxfsz() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

#[cfg(not(unix))]
fn ignore_sigxfsz() {}
