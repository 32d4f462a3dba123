//! The command line: subcommands, options and the parsers for their values.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};
use filefetch::{config, Sha256Digest};

/// Shown after `--help`: the exit codes, which are part of the command's interface.
pub const EXIT_CODES: &str = "\
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
    10   the data does not have the SHA-256 digest asked for (nothing was kept)
    130  interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT)

With several files, 0 means every file arrived; otherwise the status is 130 if
interrupted, else that of the first failed file in the order the names were given.";

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
    /// Download files from a server.
    #[command(after_long_help = EXIT_CODES)]
    Fetch(FetchArgs),
    /// Print the manual page (roff) on standard output, for `man -l -` or to install as
    /// filefetch.1.
    Man,
    /// Print a completion script for a shell on standard output.
    Completions(CompletionsArgs),
}

/// Options of `filefetch completions`.
#[derive(Debug, Args)]
#[command(after_long_help = "\
Installing the script, for example:
    bash:  filefetch completions bash > ~/.local/share/bash-completion/completions/filefetch
    zsh:   filefetch completions zsh > ~/.zfunc/_filefetch   (~/.zfunc in $fpath)
    fish:  filefetch completions fish > ~/.config/fish/completions/filefetch.fish")]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// How `filefetch serve` writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event: time, level, target, message, `field=value`s.
    Text,
    /// One JSON object per line.
    Json,
}

/// Options of `filefetch serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Port to listen on (0: any free port). Under systemd's socket activation (LISTEN_FDS),
    /// the sockets passed are served instead, and PORT and --bind are ignored.
    pub port: u16,

    /// Read options from this TOML file: each key is an option's long name, as in
    /// `request-timeout = 2.5` or `allow = ["10.0.0.0/8"]`. Options on the command line win
    /// over the file's.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    #[allow(dead_code, reason = "read before parsing, by `config_file`")]
    pub config: Option<PathBuf>,

    /// How log lines are written: `text`, or `json` (one object a line: time, level,
    /// target, message and the event's fields; a connection's line has peer, via, name,
    /// status, bytes, duration in milliseconds and outcome).
    #[arg(long, value_name = "FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Directory to serve, or an object store's URL (Linux builds): `s3://bucket/prefix`
    /// (endpoint, region and credentials from AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), `file:///dir` or `memory://`.
    #[arg(long, value_name = "DIR|URL", default_value = ".", value_hint = ValueHint::DirPath)]
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

    /// Expect a PROXY protocol header (v1 or v2) before every request, as a load balancer
    /// sends it (HAProxy: `send-proxy` or `send-proxy-v2`), and log the client it names as
    /// the peer, with the load balancer as `via`. Connections without one are closed
    /// unanswered. Only behind such a load balancer: a client reaching the server directly
    /// could claim any address.
    #[arg(long)]
    pub proxy_protocol: bool,

    /// `--allow` and `--deny`, in the order given.
    #[command(flatten)]
    pub access: AccessRules,

    /// At most N connections at once from one client address (0: no limit); one more is
    /// closed unanswered.
    #[arg(long, value_name = "N", default_value_t = config::MAX_PER_ADDRESS)]
    pub max_per_address: usize,

    /// Send at most this many bytes a second on each connection (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = config::RATE_LIMIT)]
    pub rate_limit: u64,

    /// Send at most this many bytes a second over all connections together (0: no limit).
    #[arg(long, value_name = "BYTES", default_value_t = config::TOTAL_RATE_LIMIT)]
    pub total_rate_limit: u64,

    /// Also serve metrics for Prometheus over HTTP at this address and port, at /metrics
    /// (for instance 127.0.0.1:9100; port 0 picks a free one). Anyone who can reach it can
    /// read them.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// The access rules of `filefetch serve`: `--allow CIDR` and `--deny CIDR`, repeatable, kept
/// in the order given across both options (the first rule that matches decides, so the
/// order matters; clap's derive would keep each option's values apart).
#[derive(Debug, Default)]
pub struct AccessRules(pub Vec<filefetch::server::AccessRule>);

impl AccessRules {
    /// The options that make up the one ordered list of rules: given on the command line,
    /// either replaces the rules of a config file (see `config_file`).
    pub const OPTIONS: [&'static str; 2] = ["allow", "deny"];
}

impl clap::FromArgMatches for AccessRules {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        use filefetch::server::{AccessRule, Cidr};
        // Each rule with its place on the command line.
        let mut rules: Vec<(usize, AccessRule)> = Vec::new();
        let mut add = |id: &str, rule: fn(Cidr) -> AccessRule| {
            if let (Some(nets), Some(at)) = (matches.get_many::<Cidr>(id), matches.indices_of(id)) {
                rules.extend(at.zip(nets.map(|&net| rule(net))));
            }
        };
        let [allow, deny] = Self::OPTIONS;
        add(allow, AccessRule::Allow);
        add(deny, AccessRule::Deny);
        rules.sort_by_key(|&(at, _)| at);
        Ok(AccessRules(
            rules.into_iter().map(|(_, rule)| rule).collect(),
        ))
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for AccessRules {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let rule = |id: &'static str, help: &'static str| {
            clap::Arg::new(id)
                .long(id)
                .value_name("CIDR")
                .action(clap::ArgAction::Append)
                .value_parser(cidr)
                .help(help)
        };
        let [allow, deny] = Self::OPTIONS;
        cmd.arg(rule(
            allow,
            "Serve clients in this network (10.0.0.0/8, 2001:db8::/32, or one address); \
             repeatable. Rules are checked in the order given, --allow and --deny alike, and \
             the first that matches decides; a client that none matches is refused if there \
             is any --allow, served otherwise. The client is the one a PROXY header names \
             with --proxy-protocol",
        ))
        .arg(rule(
            deny,
            "Close connections from clients in this network without a response; repeatable \
             (see --allow for the order)",
        ))
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// Parses a network for `--allow` and `--deny` by the library's rules.
fn cidr(text: &str) -> Result<filefetch::server::Cidr, String> {
    text.parse().map_err(|e| match e {
        filefetch::Error::InvalidOption { problem, .. } => problem,
        other => other.to_string(),
    })
}

/// Options of `filefetch fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Server host name or IPv4/IPv6 address.
    #[arg(value_hint = ValueHint::Hostname)]
    pub host: String,

    /// Server port.
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,

    /// Names of the files on the server. Several are fetched at once, each over its own
    /// connection (see --jobs).
    #[arg(value_name = "NAME", required_unless_present = "from")]
    pub names: Vec<String>,

    /// Read options from this TOML file: each key is an option's long name, as in
    /// `retry = 3` or `max-time = 60`. Options on the command line win over the file's.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    #[allow(dead_code, reason = "read before parsing, by `config_file`")]
    pub config: Option<PathBuf>,

    /// Also fetch the names listed in FILE, one a line (`-`: standard input); blank lines
    /// are skipped, and a line's trailing carriage return is ignored.
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub from: Option<PathBuf>,

    /// Files fetched at once, each over its own connection (1 to 64).
    #[arg(short, long, value_name = "N", default_value_t = filefetch::config::JOBS)]
    pub jobs: usize,

    /// Where to write the file (default: the name's last component, in the current
    /// directory); an existing directory receives the file under that last component. With
    /// several names it must be an existing directory.
    #[arg(short, long, value_name = "PATH", value_hint = ValueHint::AnyPath)]
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

    /// Try up to N more times when an attempt fails in a way the next may not: the host
    /// unreachable, the connection closed before the response or cut short, a timeout
    /// (not --max-time's, which bounds all the attempts together). Each attempt starts
    /// afresh and nothing partial is kept; a line on stderr reports each retry (unless
    /// --quiet).
    #[arg(long = "retry", value_name = "N", default_value_t = 0)]
    pub retries: u32,

    /// Seconds to wait before the first retry; each later wait doubles, up to 10 s.
    #[arg(long, value_name = "SECS", default_value = "0.25", value_parser = secs("retry_delay"))]
    pub retry_delay: Duration,

    /// Check the file against this SHA-256 digest (64 hexadecimal digits; one NAME only).
    /// A file with another digest fails with exit status 10 and nothing is kept (an
    /// existing destination stays as it was, even with --overwrite).
    #[arg(long, value_name = "HEX", value_parser = sha256_digest)]
    pub sha256: Option<Sha256Digest>,

    /// Check each file against its digest in SUMS, a list as `sha256sum` writes it
    /// (`<hex>  <name>` or `<hex> *<name>`), looked up under the requested name, then under
    /// its last component. A name missing from the list is a usage error, before anything
    /// is fetched.
    #[arg(long, value_name = "SUMS", conflicts_with = "sha256", value_hint = ValueHint::FilePath)]
    pub sha256_file: Option<PathBuf>,

    /// Print each file's SHA-256 digest as `sha256sum` does (`<hex>  <path>`) instead of
    /// the "received" line. A digest is computed as the data arrives, on the buffered
    /// receive path (Linux's zero-copy `splice` does not bring the data into the process).
    #[arg(long)]
    pub print_sha256: bool,

    /// Print no progress, no "received" lines and no summary (--print-sha256's lines still
    /// are); errors are still reported.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A SHA-256 digest in hexadecimal, parsed by the library.
fn sha256_digest(text: &str) -> Result<Sha256Digest, String> {
    text.parse().map_err(|e: filefetch::Error| e.to_string())
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
    fn access_rules_keep_the_order_given() {
        let cli = Cli::try_parse_from([
            "filefetch",
            "serve",
            "0",
            "--deny",
            "10.0.0.5",
            "--allow",
            "10.0.0.0/8",
            "--deny",
            "::1",
            "--allow",
            "192.0.2.7",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let shown: Vec<String> = args.access.0.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            [
                "deny 10.0.0.5/32",
                "allow 10.0.0.0/8",
                "deny ::1/128",
                "allow 192.0.2.7/32"
            ]
        );
        let bad = Cli::try_parse_from(["filefetch", "serve", "0", "--allow", "10.1.0.0/8"]);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("the network is 10.0.0.0/8"));
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
