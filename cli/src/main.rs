//! The `filefetch` command: serve a directory, or fetch a file, over the 0x497E
//! FileRequest/FileResponse protocol.
//!
//! The exit status says what kind of failure ended the command: `exit.rs` maps each kind
//! of library error to its code (the README's error table), and `filefetch --help` lists them.

mod args;
mod config_file;
mod docs;
mod exit;
mod fetch;
mod logbuf;
mod logjson;
mod logline;
mod serve;
mod signals;

use std::io::{self, Write};
use std::process::ExitCode;

use crate::args::{Command, LogFormat};
use crate::exit::{Exit, Failure};
use crate::logjson::Line;

fn main() -> ExitCode {
    ignore_sigxfsz();
    // Usage errors exit with status 2, help and version with 0 (clap's own convention);
    // so do mistakes in a config file (`--config`).
    let cli = match config_file::parse(std::env::args_os().collect()) {
        Ok(cli) => cli,
        Err(failure) => return report(&failure, LogFormat::Text),
    };
    // `serve --log-format json` reports its end in JSON too, for the program reading its log.
    let format = match &cli.command {
        Command::Serve(args) => args.log_format,
        _ => LogFormat::Text,
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Man => {
            let mut page = Vec::new();
            docs::man(&mut page)
                .and_then(|()| io::stdout().write_all(&page))
                .map_err(|e| Failure::new(Exit::Other, format!("cannot write the page: {e}")))
        }
        Command::Completions(args) => {
            let mut script = Vec::new();
            docs::completions(args.shell, &mut script);
            io::stdout()
                .write_all(&script)
                .map_err(|e| Failure::new(Exit::Other, format!("cannot write the script: {e}")))
        }
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(failure) => report(&failure, format),
    }
}

/// Reports the failure that ends the command on stderr, and returns its exit status.
fn report(failure: &Failure, format: LogFormat) -> ExitCode {
    match format {
        LogFormat::Text => eprintln!("filefetch: error: {failure}"),
        LogFormat::Json => eprint!(
            "{}",
            Line::new(tracing::Level::ERROR, "filefetch", &failure.message)
                .field("exit_status", failure.exit as u8)
                .finish()
        ),
    }
    failure.exit.into()
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
