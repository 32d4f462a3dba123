//! Command-line mistakes exit with status 2; help shows the exit codes.

use tempfile::tempdir;

use crate::support::{filefetch, listing};

#[test]
fn bad_arguments_exit_2() {
    let dir = tempdir().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["fetch"],
        &["fetch", "127.0.0.1"],
        &["fetch", "127.0.0.1", "5000"],
        &["fetch", "127.0.0.1", "0", "f"],
        &["fetch", "127.0.0.1", "65536", "f"],
        &["fetch", "127.0.0.1", "port", "f"],
        &["fetch", "127.0.0.1", "5000", "f", "--timeout", "-1"],
        &["serve"],
        &["serve", "65536"],
        &["serve", "0", "--bind", "localhost"],
        &["serve", "0", "--log-format", "xml"],
        &["serve", "0", "--config"],
        &["fetch", "127.0.0.1", "5000", "f", "--log-format", "json"],
        &["completions"],
        &["completions", "tcsh"],
        &["man", "extra"],
        &["frobnicate"],
    ];
    for args in cases {
        let out = filefetch(dir.path(), args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        // clap explains the mistake, or shows the usage when nothing was given.
        assert!(
            out.stderr.starts_with("error:") || out.stderr.contains("Usage:"),
            "{args:?}: {out:?}"
        );
        assert_eq!(out.stdout, "", "{args:?}");
    }
    assert!(listing(dir.path()).is_empty());
}

/// Values the library's rules refuse exit with status 2 and name the setting, before
/// anything is listened on or connected to.
#[test]
fn out_of_range_settings_exit_2_naming_the_setting() {
    let dir = tempdir().unwrap();
    // Port 1 on 127.0.0.1 has no server: reaching it would fail with 8, not 2.
    let fetch = ["fetch", "127.0.0.1", "1", "f"];
    let cases: &[(&[&str], &str)] = &[
        (&["--timeout", "0"], "idle_timeout"),
        (&["--timeout", "1e19"], "idle_timeout"),
        (&["--connect-timeout", "0"], "connect_timeout"),
        (&["--max-time", "0"], "max_time"),
        (&["--max-time", "4e7"], "max_time"),
        (
            &["--speed-limit", "10", "--speed-time", "0"],
            "min_rate window",
        ),
        (&["--request-timeout", "1e19"], "request_timeout"),
        (&["--request-timeout", "0"], "request_timeout"),
        (&["--send-timeout", "0"], "send_timeout"),
        (&["--grace", "1e300"], "grace_period"),
        (&["--file-cache", "1e10"], "file_cache"),
        (&["--max-connections", "0"], "max_connections"),
        (&["--threads", "5000"], "threads"),
    ];
    for (extra, setting) in cases {
        let serving = matches!(
            extra[0],
            "--request-timeout"
                | "--send-timeout"
                | "--grace"
                | "--file-cache"
                | "--max-connections"
                | "--threads"
        );
        let mut args: Vec<&str> = if serving {
            vec!["serve", "0", "--bind", "127.0.0.1"]
        } else {
            fetch.to_vec()
        };
        args.extend_from_slice(extra);
        let out = filefetch(dir.path(), &args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.contains(setting), "{args:?}: {out:?}");
        assert!(!out.stdout.contains("listening"), "{args:?}: {out:?}");
    }
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn invalid_names_exit_2_before_connecting() {
    let dir = tempdir().unwrap();
    let long = "n".repeat(1025);
    // Port 1 on 127.0.0.1 has no server: reaching it would fail with 8, not 2.
    for name in ["..", "dir/", long.as_str()] {
        let out = filefetch(dir.path(), &["fetch", "127.0.0.1", "1", name]);
        assert_eq!(out.code, Some(2), "{name}: {out:?}");
        assert!(
            out.stderr
                .starts_with("filefetch: error: invalid file name"),
            "{out:?}"
        );
    }
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn help_lists_the_exit_codes() {
    let dir = tempdir().unwrap();
    for args in [&["--help"][..], &["fetch", "--help"], &["serve", "--help"]] {
        let out = filefetch(dir.path(), args);
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.contains("Exit status:"), "{args:?}");
        assert!(out.stdout.contains("130  interrupted"), "{args:?}");
    }
}
