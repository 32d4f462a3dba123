//! `filefetch serve`: bind (or take the sockets systemd passed), announce the addresses, log
//! each connection, stop on a signal.

use std::io::{self, IsTerminal};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use filefetch::{Server, ServerConfig, ServerHandle};
use tracing::Level;
use tracing_subscriber::EnvFilter;

use crate::args::{LogFormat, ServeArgs};
use crate::exit::{Exit, Failure};
use crate::logbuf::{self, LogBuf};
use crate::logjson::{self, JsonFormat, Line};
use crate::logline::{AccessLines, LineFormat};
use crate::signals::Interrupt;

/// How often the signal watchers look at the signal count.
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// On a second signal, how long the exit waits for the buffered log lines to be written.
/// Enough for any output that is keeping up; a blocked one (a full pipe) is not waited for.
const EXIT_FLUSH_LIMIT: Duration = Duration::from_millis(200);

/// Runs the server until SIGINT or SIGTERM and the graceful shutdown that follows.
pub fn run(args: ServeArgs) -> Result<(), Failure> {
    // First, while this is the only thread: it takes the variables out of the environment.
    let inherited = inherited_listeners()?;
    let log = init_logging(args.log_format);
    // However `serve` returns (after a graceful shutdown, with an error such as a port that
    // cannot be listened on, or by a panic), the lines logged so far are written first.
    let _flush = FlushOnReturn(&log);
    raise_fd_limit();

    let addrs: Vec<SocketAddr> = args
        .binds
        .iter()
        .map(|&ip| SocketAddr::new(ip, args.port))
        .collect();
    let config = ServerConfig::builder()
        .root(&args.root)
        .max_connections(args.max_connections)
        .request_timeout(args.request_timeout)
        .send_timeout(args.send_timeout)
        .grace_period(args.grace_period)
        .threads(args.threads)
        .file_cache(args.file_cache)
        .portable(args.portable)
        .proxy_protocol(args.proxy_protocol)
        .max_per_address(args.max_per_address)
        .rate_limit(args.rate_limit)
        .total_rate_limit(args.total_rate_limit)
        .metrics(args.metrics);
    let config = args
        .access
        .0
        .iter()
        .fold(config, |config, &rule| config.access_rule(rule))
        .build()?;
    // The first signal is a graceful shutdown and the second an immediate exit, both handled
    // by `watch_signals`; the third exits from the signal handler itself, should the second
    // not have managed to.
    let interrupt = Interrupt::install(3)
        .map_err(|e| Failure::new(Exit::Other, format!("cannot handle signals: {e}")))?;
    let activated = inherited.as_ref().map(Vec::len);
    let mut server = match inherited {
        Some(listeners) => Server::from_listeners(listeners, config)?,
        None => Server::bind_all(&addrs, config)?,
    };
    // Each connection's line straight into the text log, when it has no colours; JSON and
    // a terminal get it through `tracing`.
    if args.log_format == LogFormat::Text && !io::stdout().is_terminal() {
        server = server.access_log(Arc::new(AccessLines::new(log.clone())));
    }
    watch_signals(
        interrupt,
        server.handle(),
        args.grace_period,
        log.clone(),
        args.log_format,
    );

    // Through the log, so that they come after any line logged before them, and written at
    // once: people and scripts wait for them.
    let root = display_root(&args.root);
    let mut lines = Notices::new(args.log_format);
    if let Some(n) = activated {
        lines.add(
            format!(
                "socket activation: serving on the {n} socket(s) systemd passed; PORT and \
                 --bind are ignored"
            ),
            &[("sockets", n.into())],
        );
    }
    for addr in server.local_addrs() {
        lines.add(
            format!("listening on {addr} (root: {})", root.display()),
            &[
                ("address", addr.to_string().into()),
                ("root", root.display().to_string().into()),
            ],
        );
    }
    if let Some(addr) = server.metrics_addr() {
        lines.add(
            format!("metrics on http://{addr}/metrics"),
            &[("metrics_address", addr.to_string().into())],
        );
    }
    let limit = server.connection_limit();
    if limit < args.max_connections {
        lines.add(
            format!(
                "at most {limit} connections at once: the open file limit allows no more \
                 (two descriptors are counted for each: its socket and its file)"
            ),
            &[("connection_limit", limit.into())],
        );
    }
    log.write_now(lines.text.as_bytes());

    server.run()?;
    Ok(())
}

/// The listening sockets systemd passed (socket activation), if it passed any to this
/// process; the variables that said so are removed from the environment.
#[cfg(unix)]
fn inherited_listeners() -> Result<Option<Vec<TcpListener>>, Failure> {
    Ok(filefetch::server::systemd_listeners()?)
}

/// No socket activation here: say so rather than listen elsewhere than the service manager
/// meant.
#[cfg(not(unix))]
fn inherited_listeners() -> Result<Option<Vec<TcpListener>>, Failure> {
    if std::env::var_os("LISTEN_FDS").is_some() {
        return Err(Failure::new(
            Exit::Usage,
            "LISTEN_FDS is set, but socket activation is not supported on this system",
        ));
    }
    Ok(None)
}

/// One line per event on stdout, with timestamps: the server's own events from `info` up,
/// other libraries' (the object store's client retrying, say) only from `warn` up, so that
/// the log stays one line per connection. `RUST_LOG` overrides this.
/// Lines are written in batches unless stdout is a terminal (see [`LogBuf`]), as text or as
/// JSON objects (see `logjson`).
fn init_logging(format: LogFormat) -> LogBuf {
    let log = LogBuf::stdout(match format {
        LogFormat::Text => logbuf::dropped_text_line,
        LogFormat::Json => logjson::dropped_line,
    });
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,filefetch=info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log.clone());
    match format {
        LogFormat::Text => subscriber
            .with_ansi(io::stdout().is_terminal())
            .event_format(LineFormat::default())
            .init(),
        LogFormat::Json => subscriber.with_ansi(false).event_format(JsonFormat).init(),
    }
    log
}

/// The server's own lines that are not events (the addresses it listens on, say), in the
/// log's format: the message as a line of text, or an object with the message and `fields`.
struct Notices {
    format: LogFormat,
    text: String,
}

impl Notices {
    fn new(format: LogFormat) -> Notices {
        Notices {
            format,
            text: String::new(),
        }
    }

    fn add(&mut self, message: String, fields: &[(&str, serde_json::Value)]) {
        match self.format {
            LogFormat::Text => {
                self.text.push_str(&message);
                self.text.push('\n');
            }
            LogFormat::Json => {
                let line = fields.iter().fold(
                    Line::new(Level::INFO, "filefetch", &message),
                    |line, (name, value)| line.field(name, value.clone()),
                );
                self.text.push_str(&line.finish());
            }
        }
    }
}

/// Writes out the log when dropped, on every way out of [`run`].
struct FlushOnReturn<'a>(&'a LogBuf);

impl Drop for FlushOnReturn<'_> {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// Starts the thread that turns the first signal into a graceful shutdown, and on it the
/// one that turns a second signal into an immediate exit.
fn watch_signals(
    interrupt: Interrupt,
    handle: ServerHandle,
    grace: Duration,
    log: LogBuf,
    format: LogFormat,
) {
    thread::spawn(move || {
        wait_for_signals(&interrupt, 1);
        // A thread of its own, which does nothing that can block: the exit does not wait for
        // the message below (stderr may be a full pipe). Should it fail to start, a third
        // signal still exits (see `run`).
        let second = interrupt.clone();
        let _ = thread::Builder::new().spawn(move || {
            wait_for_signals(&second, 2);
            // The buffered log lines go out first if stdout takes them promptly; they are
            // written on another thread, so a blocked stdout cannot hold up the exit. Then
            // `_exit`, as the signal handler would: running destructors and exit handlers
            // while the server's threads still run could deadlock.
            let _ = log.flush_within(EXIT_FLUSH_LIMIT);
            crate::signals::exit_now();
        });
        let stopping = format!(
            "stopping: no new connections; transfers in flight have {}s to finish (signal \
             again to stop at once)",
            grace.as_secs_f64()
        );
        match format {
            LogFormat::Text => eprintln!("filefetch: {stopping}"),
            LogFormat::Json => eprint!(
                "{}",
                Line::new(Level::INFO, "filefetch", &stopping)
                    .field("grace", grace.as_secs_f64())
                    .finish()
            ),
        }
        handle.shutdown();
    });
}

/// Returns once `count` signals have arrived.
fn wait_for_signals(interrupt: &Interrupt, count: usize) {
    while interrupt.count() < count {
        thread::sleep(SIGNAL_POLL);
    }
}

/// The root as an absolute path, for the startup lines.
fn display_root(root: &Path) -> PathBuf {
    if root.to_string_lossy().contains("://") {
        // An object store's URL, shown as given.
        return root.to_path_buf();
    }
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
