//! `--config FILE`: options of `serve` and `fetch` read from a TOML file.
//!
//! The file's keys are the subcommand's long option names, at the top level:
//!
//! ```toml
//! root = "/srv/files"
//! request-timeout = 2.5
//! allow = ["10.0.0.0/8", "192.0.2.7"]
//! log-format = "json"
//! portable = true
//! ```
//!
//! The file is named on one subcommand's command line, so it holds that subcommand's
//! settings, under the names `--help` and the manual page list. Which keys exist and what
//! each takes come from the command line's own definition (clap's `Command`): an option
//! added to `serve` or `fetch` can be set in a file at once.
//!
//! Each value becomes the option as it would be typed, `--KEY=VALUE` (one per item of a list;
//! a flag's `--KEY` when `true`), placed before the command line's own arguments. clap then
//! checks the file's values exactly as it checks the command line's, and the library's rules
//! come after. An option given on the command line wins: the file's value for it is left
//! out, as is the file's value for any option that cannot go with it (`sha256` when
//! `--sha256-file` is given), and the file's `allow` and `deny` both when either is given
//! (together they are one ordered list of rules; the file's rules come in the order of its
//! keys, then of each list's items).

use std::error::Error as _;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use clap::builder::ValueParser;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches, Parser};

use crate::args::{AccessRules, Cli};
use crate::exit::{Exit, Failure};

/// The id (and long name) of the option naming the file.
const CONFIG: &str = "config";

/// Parses the command line, with the options of the config file it names, if any.
/// Command-line mistakes end the process as `Cli::parse` does (status 2, or 0 after
/// `--help`); a mistake in the file is a usage failure that names the file.
pub fn parse(argv: Vec<OsString>) -> Result<Cli, Failure> {
    let Some(given) = given(&argv) else {
        return Ok(Cli::parse_from(argv));
    };
    let mut cmd = Cli::command();
    cmd.build();
    let sub = cmd
        .find_subcommand(&given.subcommand)
        .expect("the subcommand was just parsed");
    let from_file = from_file(sub, &given)?;

    // The file's options go right after the subcommand's name, ahead of the command line's.
    let at = 1 + argv[1..]
        .iter()
        .position(|arg| arg.as_os_str() == OsStr::new(&given.subcommand))
        .expect("the subcommand is on the command line");
    let mut full = argv[..=at].to_vec();
    full.extend(from_file.iter().flat_map(|o| o.args.iter().cloned()));
    full.extend_from_slice(&argv[at + 1..]);

    let parsed = Cli::command()
        .try_get_matches_from(full)
        .and_then(|matches| Cli::from_arg_matches(&matches));
    match parsed {
        Ok(cli) => Ok(cli),
        Err(e) => match bad_value(&e, &from_file) {
            Some(problem) => Err(in_file(&given.path, problem)),
            None => e.exit(),
        },
    }
}

/// What the command line gave, when it names a config file.
struct Given {
    subcommand: String,
    /// The config file.
    path: PathBuf,
    /// The ids of the options the command line gave.
    options: Vec<String>,
}

/// Reads the command line for the subcommand, the config file and the options given,
/// without checking any value (that is the real parse's work, once the file's options are
/// in). `None` when no config file is named, or when the command line is too broken to
/// tell, for the real parse to report.
fn given(argv: &[OsString]) -> Option<Given> {
    let raw = |arg: Arg| {
        if arg.get_action().takes_values() {
            arg.value_parser(ValueParser::os_string())
        } else {
            arg
        }
    };
    let cmd = Cli::command()
        .ignore_errors(true)
        .mut_subcommands(|sub| sub.mut_args(raw));
    let matches = cmd.try_get_matches_from(argv).ok()?;
    let (subcommand, matches) = matches.subcommand()?;
    let path = matches.try_get_one::<OsString>(CONFIG).ok()??;
    let options = matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_owned())
        .collect();
    Some(Given {
        subcommand: subcommand.to_owned(),
        path: PathBuf::from(path),
        options,
    })
}

/// One option set by the file, as it goes on the command line.
struct FromFile {
    key: String,
    /// The option as clap shows it in its errors (`--request-timeout <SECS>`).
    shown: String,
    args: Vec<OsString>,
}

/// The options the file sets that the command line does not.
fn from_file(sub: &Command, given: &Given) -> Result<Vec<FromFile>, Failure> {
    let path = &given.path;
    let table = read(path)?;
    let is_given = |arg: &Arg| given.options.iter().any(|id| id == arg.get_id().as_str());
    let rules_given = AccessRules::OPTIONS
        .iter()
        .any(|id| given.options.iter().any(|g| g == id));
    let mut set: Vec<(&Arg, FromFile)> = Vec::new();
    for (key, value) in &table {
        let arg = settable(sub, key).ok_or_else(|| in_file(path, unknown_key(sub, key)))?;
        let args =
            as_args(arg, value).map_err(|problem| in_file(path, format!("`{key}`: {problem}")))?;
        let overridden = is_given(arg)
            || (rules_given && AccessRules::OPTIONS.contains(&arg.get_id().as_str()))
            || sub
                .get_arguments()
                .any(|other| is_given(other) && conflict(sub, arg, other));
        if overridden {
            continue;
        }
        if let Some((_, other)) = set.iter().find(|(other, _)| conflict(sub, arg, other)) {
            return Err(in_file(
                path,
                format!("`{key}` cannot be set together with `{}`", other.key),
            ));
        }
        let shown = arg.to_string();
        set.push((
            arg,
            FromFile {
                key: key.clone(),
                shown,
                args,
            },
        ));
    }
    Ok(set.into_iter().map(|(_, option)| option).collect())
}

/// The file's top-level table, in the file's order.
fn read(path: &Path) -> Result<toml::Table, Failure> {
    let text = fs::read_to_string(path).map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("cannot read the config file {}: {e}", path.display()),
        )
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| in_file(path, e.to_string().trim_end()))
}

/// The option a key sets: one of the subcommand's options with a long name, other than
/// `--help` and `--config` itself.
fn settable<'a>(sub: &'a Command, key: &str) -> Option<&'a Arg> {
    sub.get_arguments().find(|arg| {
        arg.get_long() == Some(key)
            && arg.get_id() != CONFIG
            && !matches!(
                arg.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

/// Why a key is refused, with the key meant if it is plain which.
fn unknown_key(sub: &Command, key: &str) -> String {
    if key == CONFIG {
        return "`config` cannot be set in a config file".to_owned();
    }
    let mut problem = format!(
        "unknown key `{key}` (the keys are the long options of `filefetch {} --help`",
        sub.get_name()
    );
    let dashed = key.replace('_', "-").to_lowercase();
    if dashed != key && settable(sub, &dashed).is_some() {
        problem.push_str(&format!("; did you mean `{dashed}`?"));
    }
    problem.push(')');
    problem
}

/// Whether one of the two options cannot be given with the other.
fn conflict(sub: &Command, a: &Arg, b: &Arg) -> bool {
    let names = |x: &Arg, y: &Arg| {
        sub.get_arg_conflicts_with(x)
            .iter()
            .any(|c| c.get_id() == y.get_id())
    };
    names(a, b) || names(b, a)
}

/// A key's value as command-line arguments for `arg`.
fn as_args(arg: &Arg, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let long = arg.get_long().unwrap_or_default();
    let option = |value: Option<String>| {
        OsString::from(match value {
            Some(value) => format!("--{long}={value}"),
            None => format!("--{long}"),
        })
    };
    Ok(match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => {
            let toml::Value::Boolean(on) = *value else {
                return Err(format!("expected true or false, found {}", kind(value)));
            };
            // The flag only when it changes the setting from its default.
            let flag = matches!(arg.get_action(), ArgAction::SetTrue) == on;
            flag.then(|| option(None)).into_iter().collect()
        }
        ArgAction::Count => {
            let times = value
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|&n| n <= usize::from(u8::MAX))
                .ok_or_else(|| format!("expected a count from 0 to 255, found {value}"))?;
            vec![option(None); times]
        }
        ArgAction::Append => match value {
            toml::Value::Array(items) => items
                .iter()
                .map(|item| Ok(option(Some(scalar(item)?))))
                .collect::<Result<_, String>>()?,
            one => vec![option(Some(scalar(one)?))],
        },
        _ => match value {
            toml::Value::Array(_) => return Err("expected one value, found a list".to_owned()),
            one => vec![option(Some(scalar(one)?))],
        },
    })
}

/// A single value as it would be typed.
fn scalar(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!(
            "expected a string, a number or true or false, found {}",
            kind(other)
        )),
    }
}

/// What kind of TOML value this is, for messages.
fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// The problem, if clap refused a value that came from the file.
fn bad_value(e: &clap::Error, from_file: &[FromFile]) -> Option<String> {
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let option = from_file.iter().find(|o| &o.shown == shown)?;
    let value = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.as_str(),
        _ => "",
    };
    let why = match (e.source(), e.get(ContextKind::ValidValue)) {
        (Some(source), _) => source.to_string(),
        (None, Some(ContextValue::Strings(valid))) => {
            format!("the possible values are {}", valid.join(", "))
        }
        (None, _) => "invalid value".to_owned(),
    };
    Some(format!("`{}`: invalid value {value:?}: {why}", option.key))
}

/// A usage failure in the config file at `path`.
fn in_file(path: &Path, problem: impl std::fmt::Display) -> Failure {
    Failure::new(
        Exit::Usage,
        format!("config file {}: {problem}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::args::{Command as Sub, LogFormat};

    /// A config file holding `text`, and the command line `args` naming it.
    fn parse_with(text: &str, args: &[&str]) -> Result<Cli, Failure> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("filefetch.toml");
        fs::write(&path, text).unwrap();
        let mut argv: Vec<OsString> = vec!["filefetch".into()];
        argv.extend(args.iter().map(OsString::from));
        argv.push("--config".into());
        argv.push(path.into_os_string());
        parse(argv)
    }

    fn serve(text: &str, args: &[&str]) -> crate::args::ServeArgs {
        match parse_with(text, &[&["serve"], args].concat()) {
            Ok(Cli {
                command: Sub::Serve(args),
            }) => args,
            other => panic!("{other:?}"),
        }
    }

    fn fetch(text: &str, args: &[&str]) -> crate::args::FetchArgs {
        match parse_with(text, &[&["fetch"], args].concat()) {
            Ok(Cli {
                command: Sub::Fetch(args),
            }) => args,
            other => panic!("{other:?}"),
        }
    }

    fn failure(text: &str, args: &[&str]) -> String {
        match parse_with(text, args) {
            Err(failure) => {
                assert_eq!(failure.exit, Exit::Usage, "{failure}");
                failure.message
            }
            Ok(cli) => panic!("parsed: {cli:?}"),
        }
    }

    fn rules(args: &crate::args::ServeArgs) -> Vec<String> {
        args.access.0.iter().map(|r| r.to_string()).collect()
    }

    #[test]
    fn every_kind_of_option_can_be_set() {
        let args = serve(
            r#"
                root = "/srv"
                bind = ["127.0.0.1", "::1"]
                request-timeout = 2.5
                send-timeout = 3
                max-connections = 7
                portable = true
                proxy-protocol = false
                log-format = "json"
                deny = "10.0.0.5"
                allow = ["10.0.0.0/8"]
            "#,
            &["0"],
        );
        assert_eq!(args.root, Path::new("/srv"));
        assert_eq!(
            args.binds,
            [
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(args.request_timeout, Duration::from_millis(2500));
        assert_eq!(args.send_timeout, Duration::from_secs(3));
        assert_eq!(args.max_connections, 7);
        assert!(args.portable);
        assert!(!args.proxy_protocol);
        assert_eq!(args.log_format, LogFormat::Json);
        // In the file's order.
        assert_eq!(rules(&args), ["deny 10.0.0.5/32", "allow 10.0.0.0/8"]);

        let args = fetch(
            "jobs = 3\noutput = \"dir\"\nquiet = true\nretry = 2\nmax-size = 100\n",
            &["h", "1", "f"],
        );
        assert_eq!(args.jobs, 3);
        assert_eq!(args.output.as_deref(), Some(Path::new("dir")));
        assert!(args.quiet);
        assert_eq!(args.retries, 2);
        assert_eq!(args.max_size, Some(100));
        assert_eq!(args.names, ["f"]);
    }

    #[test]
    fn the_command_line_wins() {
        let file = "request-timeout = 2.5\nbind = [\"::1\"]\nallow = [\"10.0.0.0/8\"]\n";
        let args = serve(
            file,
            &[
                "0",
                "--request-timeout",
                "4",
                "--bind",
                "127.0.0.1",
                "--deny",
                "192.0.2.1",
            ],
        );
        assert_eq!(args.request_timeout, Duration::from_secs(4));
        assert_eq!(
            args.binds,
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        // The rules are one list: the command line's replace the file's.
        assert_eq!(rules(&args), ["deny 192.0.2.1/32"]);

        // A file's option that cannot go with one given is left out too.
        let sums = "sha256-file = \"SUMS\"\n";
        let digest = "0".repeat(64);
        let args = fetch(sums, &["h", "1", "f", "--sha256", &digest]);
        assert_eq!(args.sha256_file, None);
        assert!(args.sha256.is_some());

        // Short options count as given.
        let args = fetch("output = \"file-dir\"\n", &["h", "1", "f", "-o", "cli-dir"]);
        assert_eq!(args.output.as_deref(), Some(Path::new("cli-dir")));
    }

    /// `--from` in the file stands in for the names, as on the command line.
    #[test]
    fn the_file_can_meet_requirements() {
        let args = fetch("from = \"list.txt\"\n", &["h", "1"]);
        assert_eq!(args.from.as_deref(), Some(Path::new("list.txt")));
        assert!(args.names.is_empty());
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let message = failure("request-timeout = 1\ntimeot = 2\n", &["serve", "0"]);
        assert!(message.contains("filefetch.toml"), "{message}");
        assert!(message.contains("unknown key `timeot`"), "{message}");
        let message = failure("request_timeout = 1\n", &["serve", "0"]);
        assert!(
            message.contains("did you mean `request-timeout`?"),
            "{message}"
        );
        // Another subcommand's option, the option naming the file, a value's name.
        for (text, args) in [
            ("jobs = 2", &["serve", "0"][..]),
            ("timeout = 2", &["serve", "0"]),
            ("root = \"/\"", &["fetch", "h", "1", "f"]),
            ("config = \"other.toml\"", &["serve", "0"]),
            ("help = true", &["serve", "0"]),
            ("port = 80", &["serve", "0"]),
            ("[serve]\nroot = \"/\"", &["serve", "0"]),
        ] {
            let message = failure(text, args);
            let key = text
                .trim_start_matches('[')
                .split([' ', ']'])
                .next()
                .unwrap();
            assert!(message.contains(&format!("`{key}`")), "{text}: {message}");
        }
    }

    #[test]
    fn bad_values_are_refused_naming_the_key_and_the_setting() {
        for (text, args, expected) in [
            (
                "request-timeout = 1e19",
                &["serve", "0"][..],
                "request_timeout",
            ),
            (
                "request-timeout = \"soon\"",
                &["serve", "0"],
                "not a number of seconds",
            ),
            ("timeout = -1.5", &["fetch", "h", "1", "f"], "idle_timeout"),
            ("log-format = \"xml\"", &["serve", "0"], "text, json"),
            (
                "allow = [\"10.1.0.0/8\"]",
                &["serve", "0"],
                "the network is 10.0.0.0/8",
            ),
            (
                "max-connections = \"many\"",
                &["serve", "0"],
                "invalid digit",
            ),
            (
                "portable = \"yes\"",
                &["serve", "0"],
                "expected true or false",
            ),
            (
                "root = [\"/a\", \"/b\"]",
                &["serve", "0"],
                "expected one value, found a list",
            ),
            ("bind = [[\"::1\"]]", &["serve", "0"], "found a list"),
            ("grace = 1979-05-27", &["serve", "0"], "found a date"),
        ] {
            let message = failure(text, args);
            let key = text.split(' ').next().unwrap();
            assert!(message.contains("filefetch.toml"), "{text}: {message}");
            assert!(message.contains(&format!("`{key}`")), "{text}: {message}");
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    fn conflicting_keys_are_refused() {
        let digest = "0".repeat(64);
        let message = failure(
            &format!("sha256 = \"{digest}\"\nsha256-file = \"SUMS\"\n"),
            &["fetch", "h", "1", "f"],
        );
        assert!(
            message.contains("`sha256-file`") && message.contains("`sha256`"),
            "{message}"
        );
    }

    #[test]
    fn broken_and_missing_files_are_reported() {
        let message = failure("request-timeout = \n", &["serve", "0"]);
        assert!(message.contains("filefetch.toml"), "{message}");
        assert!(message.contains("line 1"), "{message}");

        let argv = [
            "filefetch",
            "serve",
            "0",
            "--config",
            "/nonexistent/filefetch.toml",
        ];
        let failure = parse(argv.iter().map(OsString::from).collect()).unwrap_err();
        assert_eq!(failure.exit, Exit::Usage);
        assert!(
            failure
                .message
                .starts_with("cannot read the config file /nonexistent/filefetch.toml: "),
            "{}",
            failure.message
        );
    }

    /// Every option of `serve` and `fetch` (but `--help` and `--config`) is a key, taken as
    /// the command line takes it.
    #[test]
    fn every_option_is_a_key() {
        let mut cmd = Cli::command();
        cmd.build();
        for name in ["serve", "fetch"] {
            let sub = cmd.find_subcommand(name).unwrap();
            let longs: Vec<&str> = sub.get_arguments().filter_map(Arg::get_long).collect();
            assert!(longs.contains(&"config"), "{name}");
            for long in longs {
                let settable = settable(sub, long).is_some();
                assert_eq!(
                    settable,
                    !matches!(long, "help" | "config"),
                    "{name} --{long}"
                );
            }
        }
    }
}
