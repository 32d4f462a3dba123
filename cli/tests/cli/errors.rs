//! Each failure of `filefetch fetch` and `serve`: its exit code, its message, and the files
//! left behind (none).

use std::fs;
use std::net::TcpListener;

use tempfile::tempdir;

use crate::support::{
    fetch, filefetch, found_header, listing, send, serve, until_client_closes, FakeServer,
};

#[test]
fn not_found_exits_3() {
    let root = tempdir().unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "missing.txt", &[]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(
        out.stderr,
        "filefetch: error: server has no such file: missing.txt\n"
    );
    assert_eq!(out.stdout, "");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn existing_destination_exits_4_and_stays_untouched() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"from the server").unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("f"), b"mine").unwrap();
    let out = fetch(dir.path(), port, "f", &[]);
    assert_eq!(out.code, Some(4), "{out:?}");
    assert!(out
        .stderr
        .starts_with("filefetch: error: destination exists"));
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"mine");
    assert_eq!(listing(dir.path()), ["f"]);
}

#[test]
fn silent_server_exits_5() {
    let server = FakeServer::start(until_client_closes);
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), server.port, "f", &["--timeout", "0.3"]);
    assert_eq!(out.code, Some(5), "{out:?}");
    assert!(
        out.stderr.starts_with("filefetch: error: timed out"),
        "{out:?}"
    );
    assert!(listing(dir.path()).is_empty());
}

/// Sends a header announcing 1 MiB, then one byte every 100 ms until the client goes away
/// (or for 20 s at most).
fn drip(s: &mut std::net::TcpStream) {
    send(s, &found_header(1 << 20));
    for _ in 0..200 {
        if std::io::Write::write_all(s, b"x").is_err() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A server that drips data keeps each read within the idle timeout; the limit on the whole
/// fetch and the minimum rate end it, with the timeout's code and nothing left behind.
#[test]
fn dripping_server_is_cut_by_max_time_and_speed_limit_exit_5() {
    for (extra, says) in [
        (&["--max-time", "0.5"][..], "limit on the whole fetch"),
        (
            &["--speed-limit", "1000", "--speed-time", "0.5"][..],
            "bytes/s",
        ),
    ] {
        let server = FakeServer::start(drip);
        let dir = tempdir().unwrap();
        let mut args = vec!["--timeout", "5"];
        args.extend_from_slice(extra);
        let out = fetch(dir.path(), server.port, "f", &args);
        assert_eq!(out.code, Some(5), "{extra:?}: {out:?}");
        assert!(out.stderr.contains(says), "{extra:?}: {out:?}");
        assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    }
}

/// A file larger than `--max-size` is refused from its header, before any data is read.
#[test]
fn larger_than_max_size_exits_9_and_reads_nothing() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), vec![7u8; 1000]).unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "f", &["--max-size", "999"]);
    assert_eq!(out.code, Some(9), "{out:?}");
    assert_eq!(
        out.stderr,
        "filefetch: error: file is 1000 bytes, more than the 999-byte maximum\n"
    );
    assert!(listing(dir.path()).is_empty());
    let out = fetch(dir.path(), port, "f", &["--max-size", "1000", "-q"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), vec![7u8; 1000]);
}

#[test]
fn bad_magic_exits_6() {
    let server =
        FakeServer::start(|s| send(s, &[0x12, 0x34, 2, 1, 0, 0, 0, 4, b'd', b'a', b't', b'a']));
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), server.port, "f", &[]);
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(
        out.stderr
            .starts_with("filefetch: error: malformed response"),
        "{out:?}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn close_without_response_exits_6_with_a_hint() {
    let server = FakeServer::start(|_| {});
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), server.port, "f", &[]);
    assert_eq!(out.code, Some(6), "{out:?}");
    assert!(out.stderr.contains("without a response"), "{out:?}");
    assert!(out.stderr.contains("server.py"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn short_data_exits_7() {
    let server = FakeServer::start(|s| {
        send(s, &found_header(100));
        send(s, &[b'x'; 10]);
    });
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), server.port, "f", &[]);
    assert_eq!(out.code, Some(7), "{out:?}");
    assert_eq!(
        out.stderr,
        "filefetch: error: transfer incomplete: 10 of 100 bytes\n"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn refused_connection_exits_8() {
    // A port that was free a moment ago and has no listener now.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "f", &[]);
    assert_eq!(out.code, Some(8), "{out:?}");
    assert!(
        out.stderr.starts_with("filefetch: error: cannot connect"),
        "{out:?}"
    );
    assert!(listing(dir.path()).is_empty());
}

#[test]
fn serve_on_a_busy_port_exits_1() {
    let busy = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let root = tempdir().unwrap();
    let out = filefetch(
        root.path(),
        &["serve", &port, "--bind", "127.0.0.1", "--root", "."],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr
            .starts_with("filefetch: error: cannot listen on 127.0.0.1:"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("listening on"), "{out:?}");
}

#[test]
fn serve_without_its_root_exits_1() {
    let dir = tempdir().unwrap();
    let out = filefetch(
        dir.path(),
        &["serve", "0", "--bind", "127.0.0.1", "--root", "absent"],
    );
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stderr.starts_with("filefetch: error: absent"),
        "{out:?}"
    );
    assert!(listing(dir.path()).is_empty());
}
