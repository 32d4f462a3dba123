//! Faults that need the `filefetch` binary: the exit code of each broken-server fault, a
//! read-only destination, a full disk (RLIMIT_FSIZE), SIGINT and SIGTERM over an existing
//! file, a server out of file descriptors, and files its user may not read. Every case
//! checks that no file (partial or temporary) is left and that an existing file is untouched.
//!
//! Only the broken servers' exit codes are tested on every system; the rest needs Linux
//! (resource limits, signals, running as another user) and says so where it is gated.

#[allow(dead_code)]
#[path = "cli/support.rs"]
mod support;

use std::fs;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tempfile::tempdir;

use support::{command, found_header, listing, send, until_client_closes, FakeServer};

#[cfg(target_os = "linux")]
use {
    std::io,
    std::os::unix::fs::PermissionsExt,
    std::os::unix::process::CommandExt,
    std::sync::mpsc,
    support::{sample, wait_for_entry, Running, PATIENCE},
};

/// The content an existing destination starts with; it must end with it too.
const PRECIOUS: &[u8] = b"precious, must survive";

/// The user unprivileged children run as when the tests run as root ("nobody").
#[cfg(target_os = "linux")]
const NOBODY: libc::uid_t = 65534;

#[cfg(target_os = "linux")]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the child run as "nobody" when the tests run as root, so that file permissions
/// apply to it; otherwise returns it as it is. The program run is then a copy of the command
/// in a directory anyone may enter, since the build directory's parents may be closed to
/// "nobody".
#[cfg(target_os = "linux")]
fn unprivileged(cmd: Command) -> Command {
    if !is_root() {
        return cmd;
    }
    let mut run = Command::new(public_binary());
    run.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        run.current_dir(dir);
    }
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => run.env(key, value),
            None => run.env_remove(key),
        };
    }
    run.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls.
    unsafe {
        run.pre_exec(|| {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(NOBODY) != 0
                || libc::setuid(NOBODY) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    run
}

/// A copy of the command, readable and runnable by anyone, made once per test run.
#[cfg(target_os = "linux")]
fn public_binary() -> &'static Path {
    static COPY: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
        std::sync::OnceLock::new();
    let (_, path) = COPY.get_or_init(|| {
        let dir = open_dir();
        let path = dir.path().join("filefetch");
        fs::copy(env!("CARGO_BIN_EXE_filefetch"), &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    });
    path
}

/// Sets a resource limit (soft and hard) in the child before exec.
#[cfg(target_os = "linux")]
fn limit(cmd: &mut Command, resource: libc::__rlimit_resource_t, value: u64) {
    // SAFETY: as above; setrlimit is a plain system call.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: value,
                rlim_max: value,
            };
            if libc::setrlimit(resource, &l) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A directory everyone may enter (tempdir makes them private), for unprivileged children.
#[cfg(target_os = "linux")]
fn open_dir() -> tempfile::TempDir {
    let dir = tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// `filefetch fetch 127.0.0.1 PORT f [extra...]` in `dir`, as a command to adjust.
fn fetch_cmd(dir: &Path, port: u16, extra: &[&str]) -> Command {
    let mut cmd = command(dir);
    cmd.args(["fetch", "127.0.0.1", &port.to_string(), "f"])
        .args(extra);
    if !extra.contains(&"--timeout") {
        cmd.args(["--timeout", "10"]);
    }
    cmd
}

/// Ends the connection with a reset (SO_LINGER with a zero timeout, then the close).
#[cfg(unix)]
fn reset(stream: &mut TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is open; the option value is a valid linger of the size given.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
}

/// The same with Winsock's setsockopt.
#[cfg(windows)]
fn reset(stream: &mut TcpStream) {
    use std::os::windows::io::AsRawSocket;
    #[repr(C)]
    struct Linger {
        l_onoff: u16,
        l_linger: u16,
    }
    #[link(name = "ws2_32")]
    extern "system" {
        fn setsockopt(socket: usize, level: i32, name: i32, value: *const u8, len: i32) -> i32;
    }
    const SOL_SOCKET: i32 = 0xFFFF;
    const SO_LINGER: i32 = 0x0080;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the socket is open; the option value is a valid LINGER of the size given.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_socket() as usize,
            SOL_SOCKET,
            SO_LINGER,
            (&linger as *const Linger).cast(),
            std::mem::size_of::<Linger>() as i32,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
}

type Script = fn(&mut TcpStream);

/// Each broken server gives its exit code and message; nothing is left in an empty
/// directory, and an existing file that `--overwrite` allowed to replace is untouched.
#[test]
fn exit_code_of_each_server_fault() {
    let cases: &[(&str, Script, i32, &str)] = &[
        ("closed before the header", |_| {}, 6, "without a response"),
        (
            "closed after 3 header bytes",
            |s| send(s, &found_header(5)[..3]),
            6,
            "header cut short after 3 of 8 bytes",
        ),
        (
            "closed after 7 header bytes",
            |s| send(s, &found_header(5)[..7]),
            6,
            "header cut short after 7 of 8 bytes",
        ),
        (
            "bad magic",
            |s| send(s, &[0x7E, 0x49, 2, 1, 0, 0, 0, 0]),
            6,
            "bad magic number 0x7E49",
        ),
        (
            "bad type",
            |s| send(s, &[0x49, 0x7E, 1, 1, 0, 0, 0, 0]),
            6,
            "bad record type 1",
        ),
        (
            "bad status",
            |s| send(s, &[0x49, 0x7E, 2, 9, 0, 0, 0, 0]),
            6,
            "bad status code 9",
        ),
        (
            "status 0 with data",
            |s| send(s, &[0x49, 0x7E, 2, 0, 0, 0, 0, 5, 1, 2, 3, 4, 5]),
            6,
            "data length 5 with status 0",
        ),
        (
            "more than DataLength",
            |s| {
                send(s, &found_header(4));
                send(s, b"dataEXTRA");
            },
            6,
            "more data than the announced 4 bytes",
        ),
        (
            "closed after part of the body",
            |s| {
                send(s, &found_header(100));
                send(s, &[7; 10]);
            },
            7,
            "transfer incomplete: 10 of 100 bytes",
        ),
        (
            "reset in the body",
            |s| {
                send(s, &found_header(1 << 20));
                send(s, &[7; 1000]);
                std::thread::sleep(Duration::from_millis(50));
                reset(s);
            },
            7,
            "transfer incomplete",
        ),
        (
            "stall before the header",
            until_client_closes,
            5,
            "timed out waiting for the response",
        ),
        (
            "stall in the body",
            |s| {
                send(s, &found_header(100));
                send(s, &[7; 10]);
                until_client_closes(s);
            },
            5,
            "timed out receiving data (10 of 100 bytes arrived)",
        ),
    ];
    for &(what, script, code, message) in cases {
        for existing in [false, true] {
            let fake = FakeServer::start(script);
            let dir = tempdir().unwrap();
            let mut extra = vec!["--timeout", "0.5"];
            if existing {
                fs::write(dir.path().join("f"), PRECIOUS).unwrap();
                extra.push("--overwrite");
            }
            let out = support::run(fetch_cmd(dir.path(), fake.port, &extra));
            assert_eq!(out.code, Some(code), "{what}: {out:?}");
            assert!(
                out.stderr.starts_with("filefetch: error: ") && out.stderr.contains(message),
                "{what}: {out:?}"
            );
            assert_eq!(out.stdout, "", "{what}");
            if existing {
                assert_eq!(fs::read(dir.path().join("f")).unwrap(), PRECIOUS, "{what}");
                assert_eq!(listing(dir.path()), ["f"], "{what}");
            } else {
                assert!(
                    listing(dir.path()).is_empty(),
                    "{what}: {:?}",
                    listing(dir.path())
                );
            }
        }
    }
}

/// A server that sends `data` as a whole, valid response.
#[cfg(target_os = "linux")]
fn serving(data: Vec<u8>) -> FakeServer {
    FakeServer::start(move |s| {
        send(s, &found_header(data.len() as u32));
        send(s, &data);
    })
}

/// A destination directory the fetching user may not write to: exit 1 naming it, nothing
/// created, an existing file in it untouched. When run as root (whom permissions do not
/// stop), the command runs as "nobody"; a writable directory proves that user can fetch.
// Unix permissions and setuid; a read-only attribute does not stop writes into a directory
// on Windows.
#[cfg(target_os = "linux")]
#[test]
fn read_only_destination_directory() {
    let base = open_dir();
    let ro = base.path().join("ro");
    let rw = base.path().join("rw");
    fs::create_dir(&ro).unwrap();
    fs::create_dir(&rw).unwrap();
    fs::write(ro.join("kept"), PRECIOUS).unwrap();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(&rw, fs::Permissions::from_mode(0o777)).unwrap();

    // The same user can fetch into a writable directory: the setup works.
    let fake = serving(b"abc".to_vec());
    let cmd = unprivileged(fetch_cmd(base.path(), fake.port, &["-o", "rw"]));
    let out = support::run(cmd);
    assert_eq!(
        out.code,
        Some(0),
        "the unprivileged fetch itself fails: {out:?}"
    );
    assert_eq!(fs::read(rw.join("f")).unwrap(), b"abc");

    for (args, left) in [
        (&["-o", "ro"][..], vec!["kept"]),
        (&["-o", "ro/kept", "--overwrite"][..], vec!["kept"]),
    ] {
        let fake = serving(sample(100_000));
        let cmd = unprivileged(fetch_cmd(base.path(), fake.port, args));
        let out = support::run(cmd);
        assert_eq!(out.code, Some(1), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains("ro: ") && out.stderr.contains("Permission denied"),
            "{args:?}: {out:?}"
        );
        assert_eq!(listing(&ro), left, "{args:?}");
        assert_eq!(fs::read(ro.join("kept")).unwrap(), PRECIOUS);
    }
}

/// A full disk, as a file-size limit (RLIMIT_FSIZE) on the command: the write fails, the
/// command exits 1 saying why, and the temporary file is removed.
// RLIMIT_FSIZE is a Unix resource limit.
#[cfg(target_os = "linux")]
#[test]
fn full_disk_leaves_nothing() {
    const LIMIT: u64 = 256 * 1024;
    // Under the limit, the same command works.
    let fake = serving(sample(1000));
    let dir = tempdir().unwrap();
    let mut cmd = fetch_cmd(dir.path(), fake.port, &[]);
    limit(&mut cmd, libc::RLIMIT_FSIZE, LIMIT);
    let out = support::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    drop(fake);

    for existing in [false, true] {
        let fake = serving(sample(4 << 20));
        let dir = tempdir().unwrap();
        let mut extra = vec![];
        if existing {
            fs::write(dir.path().join("f"), PRECIOUS).unwrap();
            extra.push("--overwrite");
        }
        let mut cmd = fetch_cmd(dir.path(), fake.port, &extra);
        limit(&mut cmd, libc::RLIMIT_FSIZE, LIMIT);
        let out = support::run(cmd);
        assert_eq!(out.code, Some(1), "killed by a signal if None: {out:?}");
        assert!(out.stderr.contains("File too large"), "{out:?}");
        if existing {
            assert_eq!(fs::read(dir.path().join("f")).unwrap(), PRECIOUS);
            assert_eq!(listing(dir.path()), ["f"]);
        } else {
            assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
        }
    }
}

/// SIGINT while waiting for the response, and SIGTERM in the middle of the body over an
/// existing file: exit 130, nothing left but that file, unchanged.
// SIGINT and SIGTERM are Unix signals.
#[cfg(target_os = "linux")]
#[test]
fn signals_before_and_during_the_body() {
    let (tx, rx) = mpsc::channel();
    let fake = FakeServer::start(move |s| {
        tx.send(()).unwrap();
        until_client_closes(s);
    });
    let dir = tempdir().unwrap();
    let mut fetch = Running::spawn(fetch_cmd(dir.path(), fake.port, &["--timeout", "30"]));
    rx.recv_timeout(PATIENCE).expect("the request arrives");
    fetch.signal(libc::SIGINT);
    assert_eq!(fetch.wait().code(), Some(130));
    assert_eq!(
        fetch.stderr.all(),
        "filefetch: error: transfer interrupted\n"
    );
    assert!(listing(dir.path()).is_empty());

    // Every terminating signal that can be caught: a terminal's hang-up and quit included.
    for signal in [libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        let fake = FakeServer::start(|s| {
            send(s, &found_header(1_000_000));
            send(s, &[b'x'; 1000]);
            until_client_closes(s);
        });
        let dir = tempdir().unwrap();
        fs::write(dir.path().join("f"), PRECIOUS).unwrap();
        let mut fetch = Running::spawn(fetch_cmd(
            dir.path(),
            fake.port,
            &["--timeout", "30", "--overwrite"],
        ));
        wait_for_entry(dir.path(), |n| n.ends_with(".part"));
        fetch.signal(signal);
        assert_eq!(fetch.wait().code(), Some(130), "signal {signal}");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), PRECIOUS);
        assert_eq!(listing(dir.path()), ["f"], "signal {signal}");
    }
}

/// `filefetch serve` on `root` with `extra` arguments, prepared by `adjust`; its port.
#[cfg(target_os = "linux")]
fn serve_with(
    root: &Path,
    extra: &[&str],
    adjust: impl FnOnce(Command) -> Command,
) -> (Running, u16) {
    let mut cmd = command(root);
    cmd.args(["serve", "0", "--bind", "127.0.0.1", "--root"])
        .arg(root)
        .args(extra);
    let cmd = adjust(cmd);
    let mut server = Running::spawn(cmd);
    let (addr, _) = support::listening(&mut server);
    (server, addr.port())
}

/// A server with few descriptors (RLIMIT_NOFILE of 64) fits its connection limit and its
/// open-file cache within them: it says so, a crowd of idle connections waits in the listen
/// backlog instead of taking every descriptor, a client asking for 100 different names gets
/// them all (the cache gives way), many clients at once are all served, and running out is
/// never reported as a missing file.
// RLIMIT_NOFILE is a Unix resource limit (and SIGTERM a Unix signal).
#[cfg(target_os = "linux")]
#[test]
fn server_within_few_descriptors() {
    let root = tempdir().unwrap();
    let data = sample(200_000);
    fs::write(root.path().join("f"), &data).unwrap();
    for i in 0..100 {
        fs::write(root.path().join(format!("small{i}")), format!("file {i}")).unwrap();
    }
    let (mut server, port) = serve_with(root.path(), &["--request-timeout", "1"], |mut cmd| {
        limit(&mut cmd, libc::RLIMIT_NOFILE, 64);
        cmd
    });
    server
        .stdout
        .wait_for(|l| l.starts_with("at most 21 connections at once: the open file limit"));
    let crowd: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // The crowd is dropped by the request deadline, 21 at a time; then it leaves.
    drop(crowd);
    for _ in 0..5 {
        let dir = tempdir().unwrap();
        let out = support::run(fetch_cmd(dir.path(), port, &[]));
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(fs::read(dir.path().join("f")).unwrap() == data);
    }
    // Small files are kept open for reuse: more names than descriptors.
    let patient = filefetch::FetchOptions::builder()
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for i in 0..100 {
        let got = filefetch::fetch_bytes("127.0.0.1", port, &format!("small{i}"), &patient);
        assert_eq!(got.unwrap(), format!("file {i}").into_bytes(), "small{i}");
    }
    // A file is opened per request too: many at once, under the same limit.
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                let got = filefetch::fetch_bytes("127.0.0.1", port, "f", &patient);
                assert!(got.unwrap() == data);
            });
        }
    });
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait().code(), Some(0));
    let log = server.stdout.all();
    assert!(!log.contains("not found (Too many open files"), "{log}");
}

/// Files the server's user may not read get StatusCode 0 like missing ones. When run as
/// root (who may read anything), the server runs as "nobody".
// Unix permission bits, chown and setuid.
#[cfg(target_os = "linux")]
#[test]
fn unreadable_files_are_refused() {
    let root = open_dir();
    let r = root.path();
    fs::write(r.join("open.txt"), b"readable").unwrap();
    for (name, mode) in [("locked.txt", 0o000), ("write-only.txt", 0o200)] {
        fs::write(r.join(name), b"not for you").unwrap();
        fs::set_permissions(r.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    fs::create_dir(r.join("private")).unwrap();
    fs::write(r.join("private/inner.txt"), b"not for you").unwrap();
    fs::set_permissions(r.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    if is_root() {
        for entry in ["open.txt", "locked.txt", "write-only.txt", "private"] {
            let c = std::ffi::CString::new(r.join(entry).into_os_string().into_encoded_bytes())
                .unwrap();
            // SAFETY: a valid NUL-terminated path. Owned by root, "nobody" gets no rights
            // beyond the "other" bits.
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 0, 0) }, 0);
        }
    }
    let (_server, port) = serve_with(r, &[], unprivileged);
    let dir = tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["fetch", "127.0.0.1", &port.to_string(), "open.txt"]);
    let out = support::run(cmd);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("open.txt")).unwrap(), b"readable");
    for name in [
        "locked.txt",
        "write-only.txt",
        "private/inner.txt",
        "private",
    ] {
        let mut cmd = command(dir.path());
        cmd.args(["fetch", "127.0.0.1", &port.to_string(), name, "-o", "x"]);
        let out = support::run(cmd);
        assert_eq!(out.code, Some(3), "{name}: {out:?}");
    }
    assert_eq!(listing(dir.path()), ["open.txt"]);
}

/// A log output that nobody reads (a pipe whose reader stopped) never stops the server:
/// past the log's buffer, lines are dropped and counted, and clients are still served.
// Thousands of connections: quick on Linux, far too slow under Wine.
#[cfg(target_os = "linux")]
#[test]
fn an_unread_log_never_stops_the_server() {
    use std::io::{BufRead, BufReader, Write};

    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"still served").unwrap();
    let mut cmd = command(root.path());
    cmd.args(["serve", "0", "--bind", "127.0.0.1", "--root"])
        .arg(root.path())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Read the first line only, then never again: the pipe (64 KiB) and the log's buffer
    // (1 MiB) fill with the junk connections' lines.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let port: u16 = first
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {first:?}"));
    let patient = filefetch::FetchOptions::builder()
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    for round in 0..4 {
        // About 12,000 log lines a round, well past what the pipe and the buffer hold.
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..12_000 {
            // A server that stopped accepting shows here first: go on to the check.
            let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
                break;
            };
            let _ = s.write_all(b"junk!");
        }
        let got = filefetch::fetch_bytes("127.0.0.1", port, "f", &patient);
        assert_eq!(got.unwrap(), b"still served", "round {round}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
