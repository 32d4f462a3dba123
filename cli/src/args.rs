//! The command line: subcommands, options and the parsers for their values.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use filefetch::config;

/// Shown after `--help`: the exit codes, which are part of the command's interface.
const EXIT_CODES: &str = "\
Exit status:
    0    success
    1    local I/O or other error (including a port that cannot be listened on)
    2    usage error (bad arguments, invalid file name)
    3    the server has no such file (StatusCode 0)
    4    the destination exists (it is left untouched)
    5    timed out
    6    protocol error (malformed response, truncated header, excess data,
         server closed without a response)
    7    incomplete transfer
    8    cannot resolve the host or connect to it
    9    the file is larger than --max-size (nothing was read)
    130  interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT)";

/// Fetch a file from a server, or serve a directory, with the 0x497E
/// FileRequest/FileResponse protocol.
#[derive(Debug, Parser)]
#[command(name = "filefetch", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the files beneath a directory.
    #[command(after_long_help = EXIT_CODES)]
    Serve(ServeArgs),
    /// Download one file from a server.
    #[command(after_long_help = EXIT_CODES)]
    Fetch(FetchArgs),
}

/// Options of `filefetch serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (0: any free port).
    pub port: u16,

    /// Directory to serve.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub root: PathBuf,

    /// Address to listen on, combined with PORT; repeat for several (`::` for IPv6 and
    /// IPv4 both).
    #[arg(long = "bind", value_name = "ADDR", default_value = "0.0.0.0")]
    pub binds: Vec<IpAddr>,

    /// Most connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = config::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Seconds a client has, from connecting, to send its whole request.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = secs("request_timeout"))]
    pub request_timeout: Duration,

    /// Seconds a client may read nothing before it is dropped.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = secs("send_timeout"))]
    pub send_timeout: Duration,

    /// Seconds transfers in flight may take to finish after SIGINT or SIGTERM.
    #[arg(long = "grace", value_name = "SECS", default_value = "10", value_parser = secs("grace_period"))]
    pub grace_period: Duration,

    /// Worker threads (0: one per CPU core).
    #[arg(long, value_name = "N", default_value_t = config::THREADS)]
    pub threads: usize,

    /// Seconds a small file (64 KiB or less) stays open for reuse by later requests of the
    /// same name (0: open every file afresh). A file deleted or replaced is seen at once; a
    /// rename away or a permission change can take this long.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = secs("file_cache"))]
    pub file_cache: Duration,

    /// Use the portable code paths instead of system-specific fast ones.
    #[arg(long)]
    pub portable: bool,
}

/// Options of `filefetch fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Server host name or IPv4/IPv6 address.
    pub host: String,

    /// Server port.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Name of the file on the server.
    pub name: String,

    /// Where to write the file (default: the name's last component, in the current
    /// directory); an existing directory receives the file under that last component.
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// Replace the destination if it exists.
    #[arg(long)]
    pub overwrite: bool,

    /// Seconds to wait for any data before giving up.
    #[arg(long, value_name = "SECS", default_value = "1", value_parser = secs("idle_timeout"))]
    pub timeout: Duration,

    /// Seconds to wait for a connection to each address of the host.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = secs("connect_timeout"))]
    pub connect_timeout: Duration,

    /// Seconds the whole fetch may take, connecting included (no limit by default).
    #[arg(long, value_name = "SECS", value_parser = secs("max_time"))]
    pub max_time: Option<Duration>,

    /// Give up when fewer than this many bytes a second arrive over --speed-time seconds
    /// (off by default).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub speed_limit: u64,

    /// Seconds over which --speed-limit is measured.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = secs("min_rate window"))]
    pub speed_time: Duration,

    /// Refuse a file larger than this many bytes, before any of it is read (no limit by
    /// default).
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u64>,

    /// Print neither a progress bar nor the success line; errors are still reported.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A parser of a number of seconds (fractions allowed, "0.5") for the setting `option`,
/// checked by the library's rule for durations; whether 0 is allowed is the library's to
/// say when the settings are built.
fn secs(option: &'static str) -> impl Fn(&str) -> Result<Duration, String> + Clone {
    move |text: &str| {
        let value: f64 = text
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        config::seconds(option, value).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seconds_parse() {
        let secs = secs("t");
        assert_eq!(secs("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(secs("0"), Ok(Duration::ZERO));
        for bad in ["-1", "inf", "NaN", "soon", "1e19"] {
            assert!(secs(bad).is_err(), "{bad}");
        }
    }
}
