//! SIGINT stops `serve` gracefully and `fetch` cleanly.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;

use tempfile::tempdir;

use crate::support::{
    command, found_header, listing, sample, send, serve, until_client_closes, wait_for_entry,
    FakeServer, Running, PATIENCE,
};

#[test]
fn serve_stops_on_sigint_and_exits_0() {
    let root = tempdir().unwrap();
    let (mut server, _port) = serve(root.path(), &[]);
    server.signal(libc::SIGINT);
    let status = server.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    server.stderr.wait_for(|l| l.contains("stopping"));
}

#[test]
fn serve_stops_on_sigterm_and_exits_0() {
    let root = tempdir().unwrap();
    let (mut server, _port) = serve(root.path(), &[]);
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait().code(), Some(0));
}

#[test]
fn second_signal_stops_serve_at_once_with_130() {
    let root = tempdir().unwrap();
    // Far more than socket buffers hold, so the transfer stays in flight while the client
    // reads nothing.
    fs::write(root.path().join("big"), sample(64 * 1024 * 1024)).unwrap();
    let (mut server, port) = serve(root.path(), &["--grace", "60", "--send-timeout", "60"]);

    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client.write_all(&[0x49, 0x7E, 1, 0, 3]).unwrap();
    client.write_all(b"big").unwrap();
    // The transfer is in flight once the response header has arrived.
    let mut first = [0u8; 8];
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.read_exact(&mut first).unwrap();
    assert_eq!(first[..4], [0x49, 0x7E, 2, 1]);

    server.signal(libc::SIGINT);
    server.stderr.wait_for(|l| l.contains("stopping"));
    server.signal(libc::SIGINT);
    assert_eq!(server.wait().code(), Some(130));
}

#[test]
fn sigint_stops_fetch_with_130_and_leaves_nothing() {
    let fake = FakeServer::start(|s| {
        send(s, &found_header(1_000_000));
        send(s, &[b'x'; 1000]);
        // Then stall until the client gives up.
        until_client_closes(s);
    });
    let dir = tempdir().unwrap();
    let mut cmd = command(dir.path());
    cmd.args(["fetch", "127.0.0.1", &fake.port.to_string(), "f"])
        .args(["--timeout", "30"]);
    let mut fetch = Running::spawn(cmd);

    // The transfer is under way once its temporary file exists.
    wait_for_entry(dir.path(), |n| {
        n.starts_with(".filefetch-") && n.ends_with(".part")
    });
    fetch.signal(libc::SIGINT);
    let status = fetch.wait();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert_eq!(
        fetch.stderr.all(),
        "filefetch: error: transfer interrupted\n"
    );
    assert_eq!(fetch.stdout.all(), "");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}
