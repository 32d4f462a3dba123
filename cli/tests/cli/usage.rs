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
        &["fetch", "127.0.0.1", "5000", "f", "--timeout", "0"],
        &["serve"],
        &["serve", "65536"],
        &["serve", "0", "--bind", "localhost"],
        &["serve", "0", "--max-connections", "0"],
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
