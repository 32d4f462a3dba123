//! `--config FILE`: options from a TOML file, the command line winning over it.

use std::fs;
use std::path::Path;

use tempfile::tempdir;

use crate::support::{command, fetch, filefetch, listening, listing, Running};

/// Writes `text` as `dir/NAME` and returns its path as text.
fn config(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A server whose root, address, request deadline and log format all come from its config
/// file, and a fetch whose output and overwrite come from another.
#[test]
fn file_values_take_effect() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"from the file").unwrap();
    let etc = tempdir().unwrap();
    let serve_toml = config(
        etc.path(),
        "serve.toml",
        &format!(
            "root = {:?}\nbind = [\"127.0.0.1\"]\nrequest-timeout = 10\nlog-format = \"text\"\n",
            root.path().to_str().unwrap()
        ),
    );
    // Run from elsewhere: the root is the file's.
    let mut cmd = command(etc.path());
    cmd.args(["serve", "0", "--config", &serve_toml]);
    let mut server = Running::spawn(cmd);
    let (addr, line) = listening(&mut server);
    assert_eq!(addr.ip().to_string(), "127.0.0.1", "{line}");
    let shown = line.split("(root: ").nth(1).unwrap().trim_end_matches(')');
    assert_eq!(Path::new(shown), root.path().canonicalize().unwrap());

    let dir = tempdir().unwrap();
    fs::write(dir.path().join("copy"), b"old").unwrap();
    let fetch_toml = config(
        etc.path(),
        "fetch.toml",
        "output = \"copy\"\noverwrite = true\n",
    );
    let out = fetch(dir.path(), addr.port(), "f", &["--config", &fetch_toml]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "received 13 bytes into copy\n");
    assert_eq!(fs::read(dir.path().join("copy")).unwrap(), b"from the file");
    assert_eq!(listing(dir.path()), ["copy"]);
}

#[test]
fn the_command_line_wins() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"data").unwrap();
    let etc = tempdir().unwrap();
    // The file's format would make the listening line JSON; the command line's is text.
    let serve_toml = config(
        etc.path(),
        "serve.toml",
        "log-format = \"json\"\nbind = [\"::1\"]\n",
    );
    let mut cmd = command(root.path());
    cmd.args([
        "serve",
        "0",
        "--bind",
        "127.0.0.1",
        "--log-format",
        "text",
        "--root",
    ])
    .arg(root.path())
    .args(["--config", &serve_toml]);
    let mut server = Running::spawn(cmd);
    let (addr, _) = listening(&mut server);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");

    let dir = tempdir().unwrap();
    let fetch_toml = config(
        etc.path(),
        "fetch.toml",
        "output = \"from-file\"\nquiet = true\n",
    );
    let out = fetch(
        dir.path(),
        addr.port(),
        "f",
        &["--config", &fetch_toml, "-o", "from-cli"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listing(dir.path()), ["from-cli"]);
    // The file's other options still apply.
    assert_eq!(out.stdout, "");
}

/// Mistakes in the file are usage errors (status 2) that name the file and the key or the
/// setting, before anything is listened on or connected to.
#[test]
fn mistakes_in_the_file_exit_2_naming_them() {
    let dir = tempdir().unwrap();
    // Port 1 on 127.0.0.1 has no server: reaching it would fail with 8, not 2.
    let fetch_args = ["fetch", "127.0.0.1", "1", "f"];
    let serve_args = ["serve", "0", "--bind", "127.0.0.1"];
    let cases: &[(&[&str], &str, &[&str])] = &[
        (
            &serve_args,
            "request-timeout = 1\nrequest-timeot = 2\n",
            &["unknown key `request-timeot`"],
        ),
        (
            &fetch_args,
            "max_time = 2\n",
            &["unknown key `max_time`", "did you mean `max-time`?"],
        ),
        (&fetch_args, "root = \".\"\n", &["unknown key `root`"]),
        // Refused by the library when the settings are built.
        (&serve_args, "request-timeout = 0\n", &["request_timeout"]),
        (&serve_args, "max-connections = 0\n", &["max_connections"]),
        // Refused as the value is parsed.
        (
            &fetch_args,
            "timeout = 1e19\n",
            &["`timeout`", "idle_timeout"],
        ),
        (
            &serve_args,
            "log-format = \"xml\"\n",
            &["`log-format`", "text, json"],
        ),
        (
            &serve_args,
            "portable = 1\n",
            &["`portable`", "expected true or false"],
        ),
        (
            &serve_args,
            "allow = [\"10.1.0.0/8\"]\n",
            &["`allow`", "10.0.0.0/8"],
        ),
        (&serve_args, "root = \n", &["line 1"]),
    ];
    for (i, (args, text, expected)) in cases.iter().enumerate() {
        let file = config(dir.path(), &format!("c{i}.toml"), text);
        let mut all = args.to_vec();
        all.extend(["--config", &file]);
        let out = filefetch(dir.path(), &all);
        assert_eq!(out.code, Some(2), "{text}: {out:?}");
        for part in *expected {
            assert!(out.stderr.contains(part), "{text}: {part:?} not in {out:?}");
        }
        assert!(
            out.stderr.starts_with("filefetch: error: "),
            "{text}: {out:?}"
        );
        assert!(!out.stdout.contains("listening"), "{text}: {out:?}");
    }
    let names: Vec<String> = listing(dir.path());
    assert!(names.iter().all(|n| n.ends_with(".toml")), "{names:?}");
}

#[test]
fn a_missing_file_exits_2_naming_it() {
    let dir = tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().unwrap();
    for args in [
        &["serve", "0", "--config", missing][..],
        &["fetch", "127.0.0.1", "1", "f", "--config", missing],
    ] {
        let out = filefetch(dir.path(), args);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(
            out.stderr.starts_with(&format!(
                "filefetch: error: cannot read the config file {missing}: "
            )),
            "{out:?}"
        );
        assert_eq!(out.stdout, "");
    }
    assert!(listing(dir.path()).is_empty());
}
