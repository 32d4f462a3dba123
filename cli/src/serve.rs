//! `filefetch serve`: bind, announce the addresses, log each connection, stop on a signal.

use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use filefetch::{Server, ServerConfig, ServerHandle};
use tracing_subscriber::EnvFilter;

use crate::args::ServeArgs;
use crate::exit::{Exit, Failure};
use crate::signals::Interrupt;

/// How often the signal watcher looks at the interrupt flag.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Runs the server until SIGINT or SIGTERM and the graceful shutdown that follows.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    init_logging();
    raise_fd_limit();

    let addrs: Vec<SocketAddr> = args
        .binds
        .iter()
        .map(|&ip| SocketAddr::new(ip, args.port))
        .collect();
    let config = ServerConfig::new()
        .root(&args.root)
        .max_connections(usize::try_from(args.max_connections).unwrap_or(usize::MAX))
        .request_timeout(args.request_timeout)
        .send_timeout(args.send_timeout)
        .grace_period(args.grace_period)
        .threads(args.threads)
        .portable(args.portable);
    let interrupt = Interrupt::install()
        .map_err(|e| Failure::new(Exit::Other, format!("cannot handle signals: {e}")))?;
    let server = Server::bind_all(&addrs, config)?;
    watch_signals(interrupt, server.handle(), args.grace_period);

    let root = display_root(&args.root);
    let mut out = io::stdout().lock();
    for addr in server.local_addrs() {
        let _ = writeln!(out, "listening on {addr} (root: {})", root.display());
    }
    let _ = out.flush();
    drop(out);

    server.run()?;
    Ok(())
}

/// One line per event on stdout, with timestamps; `RUST_LOG` overrides the `info` default.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stdout)
        .with_ansi(io::stdout().is_terminal())
        .init();
}

/// Starts the thread that turns the first signal into a graceful shutdown. (A second
/// signal ends the process at once; see [`Interrupt`].)
fn watch_signals(interrupt: Interrupt, handle: ServerHandle, grace: Duration) {
    thread::spawn(move || {
        while !interrupt.raised() {
            thread::sleep(SIGNAL_POLL);
        }
        eprintln!(
            "filefetch: stopping: no new connections; transfers in flight have {}s to finish \
             (signal again to stop at once)",
            grace.as_secs_f64()
        );
        handle.shutdown();
    });
}

/// The root as an absolute path, for the startup lines.
fn display_root(root: &Path) -> PathBuf {
    root.canonicalize()
        .or_else(|_| std::path::absolute(root))
        .unwrap_or_else(|_| root.to_path_buf())
}

/// Each connection costs a descriptor (two while a file is sent): allow as many as the
/// hard limit permits.
#[cfg(unix)]
fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let wanted = libc::rlimit {
        rlim_cur: limit.rlim_max,
        ..limit
    };
    // SAFETY: setrlimit only reads the struct passed; a refusal leaves the limit unchanged.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } != 0 {
        tracing::debug!(
            soft = limit.rlim_cur,
            hard = limit.rlim_max,
            "could not raise the open file limit"
        );
    }
}

#[cfg(not(unix))]
fn raise_fd_limit() {}
