//! `filefetch fetch` with several names (`-j`, `--from`) and with SHA-256 digests
//! (`--sha256`, `--sha256-file`, `--print-sha256`): what lands, what is printed, the exit
//! codes, and what is left after a failure (nothing).

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use filefetch::Sha256Digest;
use tempfile::tempdir;

use crate::support::{command, fetch, listing, run, sample, serve, Outcome};
#[cfg(unix)]
use crate::support::{
    found_header, send, until_client_closes, wait_for_entry, FakeServer, Running,
};

/// A served root with `n` files `sub/f0`.. of different sizes; their names and data.
fn files(root: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    fs::create_dir_all(root.join("sub")).unwrap();
    (0..n)
        .map(|i| {
            let name = format!("sub/f{i}");
            let data = sample(i * 200_003 + 1);
            fs::write(root.join(&name), &data).unwrap();
            (name, data)
        })
        .collect()
}

/// `filefetch fetch 127.0.0.1 PORT ARGS...` in `dir`, with a generous idle timeout.
fn fetch_args(dir: &Path, port: u16, args: &[&str]) -> Outcome {
    let mut cmd = command(dir);
    cmd.args(["fetch", "127.0.0.1", &port.to_string()])
        .args(args)
        .args(["--timeout", "10"]);
    run(cmd)
}

/// A port where a listener is bound but never accepts, and a check that nothing connected.
fn untouched_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

fn assert_no_connection(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("something connected: {other:?}"),
    }
}

fn hex(data: &[u8]) -> String {
    Sha256Digest::of(data).to_string()
}

#[test]
fn several_files_with_three_jobs_land_byte_for_byte() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 6);
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let mut args: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    args.extend(["-j", "3"]);
    let out = fetch_args(dir.path(), port, &args);
    assert_eq!(out.code, Some(0), "{out:?}");
    let total: usize = files.iter().map(|(_, data)| data.len()).sum();
    assert_eq!(
        out.stderr,
        format!("fetched 6 of 6 files, {total} bytes\n"),
        "the summary, and no progress off a terminal"
    );
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    let mut expected: Vec<String> = files
        .iter()
        .map(|(name, data)| {
            let leaf = &name["sub/".len()..];
            format!("received {} bytes into {leaf}", data.len())
        })
        .collect();
    expected.sort();
    assert_eq!(lines, expected);
    for (name, data) in &files {
        let leaf = &name["sub/".len()..];
        assert!(&fs::read(dir.path().join(leaf)).unwrap() == data, "{name}");
    }
    assert_eq!(listing(dir.path()).len(), 6, "only the files are left");
}

#[test]
fn a_missing_name_fails_alone_and_sets_the_exit_code() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 3);
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let out = fetch_args(
        dir.path(),
        port,
        &[
            &files[0].0,
            "sub/missing",
            &files[1].0,
            &files[2].0,
            "-j",
            "3",
        ],
    );
    assert_eq!(out.code, Some(3), "the missing file's code: {out:?}");
    let bytes: usize = files.iter().map(|(_, data)| data.len()).sum();
    assert!(
        out.stderr
            .contains("filefetch: error: sub/missing: server has no such file: sub/missing\n"),
        "{out:?}"
    );
    assert!(
        out.stderr.ends_with(&format!(
            "filefetch: error: fetched 3 of 4 files, {bytes} bytes; 1 failed\n"
        )),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().count(), 3);
    assert_eq!(listing(dir.path()), ["f0", "f1", "f2"]);
}

#[test]
fn the_first_failure_in_the_order_given_sets_the_code() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 2);
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    // f0 exists here (4), and the server lacks "nope" (3): the first named decides.
    fs::write(dir.path().join("f0"), b"mine").unwrap();
    let out = fetch_args(dir.path(), port, &[&files[0].0, "nope", &files[1].0]);
    assert_eq!(out.code, Some(4), "{out:?}");
    let out = fetch_args(dir.path(), port, &["nope", &files[0].0]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f0")).unwrap(), b"mine");
    assert_eq!(listing(dir.path()), ["f0", "f1"]);
}

#[test]
fn names_from_a_file_and_from_stdin() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 3);
    let (_server, port) = serve(root.path(), &[]);
    let lists = tempdir().unwrap();
    let list = lists.path().join("names.txt");
    fs::write(
        &list,
        format!("{}\r\n\n   \n{}\r\n{}", files[0].0, files[1].0, files[2].0),
    )
    .unwrap();

    let dir = tempdir().unwrap();
    let out = fetch_args(dir.path(), port, &["--from", list.to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listing(dir.path()), ["f0", "f1", "f2"]);
    for (name, data) in &files {
        assert!(&fs::read(dir.path().join(&name["sub/".len()..])).unwrap() == data);
    }

    // From standard input, after a name on the command line.
    fs::write(&list, format!("{}\n{}\n", files[1].0, files[2].0)).unwrap();
    let dir = tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["fetch", "127.0.0.1", &port.to_string(), &files[0].0])
        .args(["--from", "-", "--timeout", "10"])
        .stdin(Stdio::from(File::open(&list).unwrap()));
    let out = run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listing(dir.path()), ["f0", "f1", "f2"]);

    // An empty list names nothing: a usage error.
    fs::write(&list, "\n\r\n").unwrap();
    let out = fetch_args(dir.path(), port, &["--from", list.to_str().unwrap()]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = fetch_args(dir.path(), port, &["--from", "no-such-list"]);
    assert_eq!(out.code, Some(2), "{out:?}");
}

#[test]
fn several_names_need_an_output_directory() {
    let (listener, port) = untouched_port();
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("file"), b"mine").unwrap();
    for output in ["file", "missing"] {
        let out = fetch_args(dir.path(), port, &["a", "b", "-o", output]);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("invalid output: "), "{out:?}");
    }
    assert_no_connection(&listener);
    assert_eq!(fs::read(dir.path().join("file")).unwrap(), b"mine");
    assert_eq!(listing(dir.path()), ["file"]);
}

#[test]
fn an_output_directory_receives_every_file() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 2);
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    fs::create_dir(dir.path().join("into")).unwrap();
    let out = fetch_args(dir.path(), port, &[&files[0].0, &files[1].0, "-o", "into"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listing(&dir.path().join("into")), ["f0", "f1"]);
}

#[test]
fn jobs_out_of_range_are_usage_errors() {
    let (listener, port) = untouched_port();
    let dir = tempdir().unwrap();
    for jobs in ["0", "65"] {
        let out = fetch_args(dir.path(), port, &["a", "b", "-j", jobs]);
        assert_eq!(out.code, Some(2), "{out:?}");
        assert!(out.stderr.contains("invalid jobs: "), "{out:?}");
    }
    assert_no_connection(&listener);
}

#[test]
fn the_same_last_component_twice_never_overwrites() {
    let root = tempdir().unwrap();
    fs::create_dir_all(root.path().join("x")).unwrap();
    fs::create_dir_all(root.path().join("y")).unwrap();
    fs::write(root.path().join("x/same"), b"first").unwrap();
    fs::write(root.path().join("y/same"), b"second").unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let out = fetch_args(dir.path(), port, &["x/same", "y/same", "--overwrite"]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(
        out.stderr
            .contains("filefetch: error: y/same: destination exists: same\n"),
        "{out:?}"
    );
    assert_eq!(fs::read(dir.path().join("same")).unwrap(), b"first");
    assert_eq!(listing(dir.path()), ["same"]);
}

#[test]
fn a_right_sha256_lands_and_a_wrong_one_exits_10_keeping_nothing() {
    let root = tempdir().unwrap();
    let data = sample(1_500_000);
    fs::write(root.path().join("data.bin"), &data).unwrap();
    let (_server, port) = serve(root.path(), &[]);

    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "data.bin", &["--sha256", &hex(&data)]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "received 1500000 bytes into data.bin\n");
    assert!(fs::read(dir.path().join("data.bin")).unwrap() == data);

    let wrong = hex(b"not the data");
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "data.bin", &["--sha256", &wrong]);
    assert_eq!(out.code, Some(10), "{out:?}");
    assert_eq!(
        out.stderr,
        format!(
            "filefetch: error: checksum mismatch: expected sha256 {wrong}, received {}\n",
            hex(&data)
        )
    );
    assert!(listing(dir.path()).is_empty());

    // Over an existing file, with --overwrite: the old file stays.
    fs::write(dir.path().join("data.bin"), b"old").unwrap();
    let out = fetch(
        dir.path(),
        port,
        "data.bin",
        &["--sha256", &wrong, "--overwrite"],
    );
    assert_eq!(out.code, Some(10), "{out:?}");
    assert_eq!(fs::read(dir.path().join("data.bin")).unwrap(), b"old");
    assert_eq!(listing(dir.path()), ["data.bin"]);

    // Not hexadecimal, or for several names: usage errors.
    let out = fetch(dir.path(), port, "data.bin", &["--sha256", "abc"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    let out = fetch(
        dir.path(),
        port,
        "data.bin",
        &["other", "--sha256", &hex(&data)],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert_eq!(fs::read(dir.path().join("data.bin")).unwrap(), b"old");
}

#[test]
fn a_sums_file_in_both_formats_checks_each_file() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 3);
    let (_server, port) = serve(root.path(), &[]);
    let lists = tempdir().unwrap();
    let sums = lists.path().join("SHA256SUMS");
    // Text mode under the full name, binary mode under the last component, and a CRLF.
    fs::write(
        &sums,
        format!(
            "{}  {}\n{} *f1\r\n\n{}  ./f2\n",
            hex(&files[0].1),
            files[0].0,
            hex(&files[1].1),
            hex(&files[2].1)
        ),
    )
    .unwrap();
    let sums_arg = sums.to_str().unwrap();
    let dir = tempdir().unwrap();
    let out = fetch_args(
        dir.path(),
        port,
        &[
            &files[0].0,
            &files[1].0,
            &files[2].0,
            "--sha256-file",
            sums_arg,
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(listing(dir.path()), ["f0", "f1", "f2"]);

    // One file with a wrong digest fails with its own code; the others land.
    fs::write(
        &sums,
        format!(
            "{}  f0\n{}  f1\n{}  f2\n",
            hex(&files[0].1),
            hex(b"wrong"),
            hex(&files[2].1)
        ),
    )
    .unwrap();
    let dir = tempdir().unwrap();
    let out = fetch_args(
        dir.path(),
        port,
        &[
            &files[0].0,
            &files[1].0,
            &files[2].0,
            "--sha256-file",
            sums_arg,
        ],
    );
    assert_eq!(out.code, Some(10), "{out:?}");
    assert!(
        out.stderr
            .contains("filefetch: error: sub/f1: checksum mismatch"),
        "{out:?}"
    );
    assert_eq!(listing(dir.path()), ["f0", "f2"]);

    // A name the list lacks: a usage error before any connection.
    let (listener, idle_port) = untouched_port();
    let dir = tempdir().unwrap();
    let out = fetch_args(
        dir.path(),
        idle_port,
        &[&files[0].0, "sub/unlisted", "--sha256-file", sums_arg],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("sub/unlisted"), "{out:?}");
    assert_no_connection(&listener);
    assert!(listing(dir.path()).is_empty());

    // A malformed list: a usage error naming the line.
    fs::write(&sums, format!("{}  f0\nnot a sum\n", hex(&files[0].1))).unwrap();
    let out = fetch_args(
        dir.path(),
        idle_port,
        &[&files[0].0, "--sha256-file", sums_arg],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("line 2"), "{out:?}");
    assert_no_connection(&listener);
}

#[test]
fn print_sha256_writes_what_sha256sum_writes() {
    let root = tempdir().unwrap();
    let files = files(root.path(), 3);
    let (_server, port) = serve(root.path(), &[]);

    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, &files[1].0, &["--print-sha256"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, format!("{}  f1\n", hex(&files[1].1)));
    assert_matches_sha256sum(dir.path(), &out.stdout, &["f1"]);

    // Several, into a directory, quietly: only the digest lines, on stdout.
    let dir = tempdir().unwrap();
    fs::create_dir(dir.path().join("out")).unwrap();
    let out = fetch_args(
        dir.path(),
        port,
        &[
            &files[0].0,
            &files[1].0,
            &files[2].0,
            "-o",
            "out",
            "--print-sha256",
            "-q",
        ],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stderr, "");
    let mut lines: Vec<&str> = out.stdout.lines().collect();
    lines.sort();
    // As sha256sum writes a name with a backslash (Windows' separator): the line starts with
    // a backslash and the name's backslashes are doubled.
    let mut expected: Vec<(String, String)> = files
        .iter()
        .map(|(name, data)| {
            let path = Path::new("out").join(&name["sub/".len()..]);
            let shown = path.display().to_string();
            let line = if shown.contains('\\') {
                format!("\\{}  {}", hex(data), shown.replace('\\', "\\\\"))
            } else {
                format!("{}  {}", hex(data), shown)
            };
            (line, shown)
        })
        .collect();
    expected.sort();
    let expected_lines: Vec<&str> = expected.iter().map(|(line, _)| line.as_str()).collect();
    assert_eq!(lines, expected_lines);
    let sorted = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    let paths: Vec<&str> = expected.iter().map(|(_, path)| path.as_str()).collect();
    assert_matches_sha256sum(dir.path(), &sorted, &paths);
}

/// Where `sha256sum` exists, its output for `paths` (run in `dir`) is exactly `printed`.
fn assert_matches_sha256sum(dir: &Path, printed: &str, paths: &[&str]) {
    let Ok(output) = Command::new("sha256sum")
        .args(paths)
        .current_dir(dir)
        .output()
    else {
        return; // not on this system: the format was checked above
    };
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), printed);
}

/// Ctrl-C stops the file under way and the ones not started: status 130, nothing left, and
/// the summary says how many were interrupted.
#[cfg(unix)]
#[test]
fn sigint_stops_every_file_with_130() {
    let fake = FakeServer::start(|s| {
        send(s, &found_header(1_000_000));
        send(s, &[b'x'; 1000]);
        until_client_closes(s);
    });
    let dir = tempdir().unwrap();
    let mut cmd = command(dir.path());
    // One at a time: the fake server takes one connection, and the others wait their turn.
    cmd.args(["fetch", "127.0.0.1", &fake.port.to_string(), "a", "b", "c"])
        .args(["-j", "1", "--timeout", "30"]);
    let mut fetch = Running::spawn(cmd);
    wait_for_entry(dir.path(), |n| {
        n.starts_with(".filefetch-") && n.ends_with(".part")
    });
    fetch.signal(libc::SIGINT);
    let status = fetch.wait();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(
        fetch.stderr.all(),
        "filefetch: error: fetched 0 of 3 files, 0 bytes; 3 interrupted\n"
    );
    assert_eq!(fetch.stdout.all(), "");
    assert!(listing(dir.path()).is_empty());
}
