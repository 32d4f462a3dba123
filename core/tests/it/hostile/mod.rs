//! The server against misbehaving clients, spoken to in raw bytes: malformed headers,
//! tricklers, clients that never read, floods past the connection limit. After each, a normal
//! client is still served.
//!
//! `suite` runs the whole catalogue against one live server and checks, at the end, that it
//! holds no connection (where the system's TCP table can be read).

use crate::support::{pattern, raw, read_to_close, TestServer};
use filefetch::{fetch_bytes, Error, FetchOptions, ServerConfig};
use std::io::Write;
use std::time::Duration;

#[cfg(any(target_os = "linux", windows))]
mod suite;

fn still_serves(server: &TestServer) {
    server.put("probe.txt", b"alive");
    let got = fetch_bytes(
        "127.0.0.1",
        server.port(),
        "probe.txt",
        &FetchOptions::new(),
    );
    assert_eq!(got.unwrap(), b"alive");
}

/// Malformed headers of each kind are closed without any response.
#[test]
fn malformed_headers_get_no_response() {
    let server = TestServer::start();
    server.put("a", b"data");
    let cases: &[&[u8]] = &[
        b"\x49\x7F\x01\x00\x01a",    // wrong magic
        b"\x00\x00\x01\x00\x01a",    // zero magic
        b"\x49\x7E\x02\x00\x01a",    // wrong type
        b"\x49\x7E\x00\x00\x01a",    // type 0
        b"\x49\x7E\x01\x00\x00",     // FilenameLen 0
        b"\x49\x7E\x01\x04\x01aaaa", // FilenameLen 1025
        b"\x49\x7E\x01\xFF\xFFaaaa", // FilenameLen 65535
        b"GET / HTTP/1.0\r\n\r\n",   // another protocol
    ];
    for case in cases {
        let mut s = raw(server.addr());
        s.write_all(case).unwrap();
        let reply = read_to_close(&mut s).unwrap_or_default();
        assert!(reply.is_empty(), "{case:?} got {reply:?}");
    }
    still_serves(&server);
}

#[test]
fn invalid_utf8_and_nul_names_get_status_zero() {
    let server = TestServer::start();
    for name in [&b"\xff\xfe"[..], b"a\0b", b"\xc0\xae\xc0\xae/etc/passwd"] {
        let mut req = vec![0x49, 0x7E, 1, 0, name.len() as u8];
        req.extend_from_slice(name);
        let mut s = raw(server.addr());
        s.write_all(&req).unwrap();
        assert_eq!(
            read_to_close(&mut s).unwrap(),
            [0x49, 0x7E, 2, 0, 0, 0, 0, 0]
        );
    }
    still_serves(&server);
}

/// A request split at every offset still succeeds when it arrives within the deadline.
#[test]
fn split_requests_are_reassembled() {
    let server = TestServer::start();
    server.put("split.txt", b"reassembled");
    let mut req = vec![0x49, 0x7E, 1, 0, 9];
    req.extend_from_slice(b"split.txt");
    for cut in 1..req.len() {
        let mut s = raw(server.addr());
        s.set_nodelay(true).unwrap();
        s.write_all(&req[..cut]).unwrap();
        s.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        s.write_all(&req[cut..]).unwrap();
        let reply = read_to_close(&mut s).unwrap();
        assert_eq!(&reply[..8], &[0x49, 0x7E, 2, 1, 0, 0, 0, 11]);
        assert_eq!(&reply[8..], b"reassembled", "cut at {cut}");
    }
}

/// Extra bytes after the request do not spoil the response (no reset destroys it).
#[test]
fn extra_bytes_after_the_request() {
    let server = TestServer::start();
    server.put("x.bin", &pattern(200_000));
    let mut req = vec![0x49, 0x7E, 1, 0, 5];
    req.extend_from_slice(b"x.bin");
    req.extend_from_slice(&[0xAA; 3000]);
    let mut s = raw(server.addr());
    s.write_all(&req).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let reply = read_to_close(&mut s).unwrap();
    assert_eq!(reply.len(), 8 + 200_000);
    assert!(reply[8..] == pattern(200_000)[..]);
}

/// The deadline counts from accept: a client trickling one byte at a time is cut off even
/// though each byte arrives well within any per-read timeout, and others are served meanwhile.
#[test]
fn trickling_client_is_cut_off() {
    let server = TestServer::with(|c| c.request_timeout(Duration::from_millis(600)));
    server.put("t.txt", b"trickle");
    let mut req = vec![0x49, 0x7E, 1, 0, 5];
    req.extend_from_slice(b"t.txt");
    let mut s = raw(server.addr());
    s.set_nodelay(true).unwrap();
    let mut cut_off = false;
    for byte in &req {
        if s.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        // Others are served while the trickler holds its connection.
        still_serves(&server);
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = read_to_close(&mut s).unwrap_or_default();
    assert!(cut_off || reply.is_empty(), "trickler got {reply:?}");
    still_serves(&server);
}

/// A client that sends nothing is dropped after the deadline without a response.
#[test]
fn silent_client_is_dropped() {
    let server = TestServer::with(|c| c.request_timeout(Duration::from_millis(300)));
    let mut s = raw(server.addr());
    assert_eq!(read_to_close(&mut s).unwrap(), b"");
    still_serves(&server);
}

/// A client that never reads a large file is dropped after the send-stall timeout, and does
/// not hold anyone else back meanwhile.
#[test]
fn client_that_never_reads_is_dropped() {
    for portable in [false, true] {
        let server = TestServer::with(|c| {
            c.send_timeout(Duration::from_millis(300))
                .portable(portable)
        });
        let size = 64 << 20;
        server.put("huge.bin", &pattern(size));
        let mut req = vec![0x49, 0x7E, 1, 0, 8];
        req.extend_from_slice(b"huge.bin");
        let mut s = raw(server.addr());
        // A small receive window makes the server's sends stall quickly.
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(4096)
            .unwrap();
        s.write_all(&req).unwrap();
        still_serves(&server);
        std::thread::sleep(Duration::from_millis(1500));
        still_serves(&server);
        // Now read what is there: the server gave up long before the end.
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut s, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        assert!(
            got < size,
            "received all {got} bytes (portable: {portable})"
        );
    }
}

/// Past the connection limit, clients wait in the backlog and are served once slots free up.
#[test]
fn connection_limit_queues_then_serves() {
    let server = TestServer::with(|c| {
        c.max_connections(2)
            .request_timeout(Duration::from_millis(500))
    });
    server.put("q.txt", b"queued");
    let idle: Vec<_> = (0..2).map(|_| raw(server.addr())).collect();
    let got = fetch_bytes(
        "127.0.0.1",
        server.port(),
        "q.txt",
        &FetchOptions::builder()
            .idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
    );
    assert_eq!(got.unwrap(), b"queued");
    drop(idle);
}

/// A limit beyond any system (such as `usize::MAX` from a C caller) is refused by name; the
/// largest accepted one serves normally and still shuts down gracefully, waiting for nothing.
#[test]
fn huge_connection_limit_serves_and_shuts_down() {
    for refused in [0, usize::MAX] {
        match ServerConfig::builder().max_connections(refused).build() {
            Err(Error::InvalidOption { option, .. }) => assert_eq!(option, "max_connections"),
            other => panic!("{refused}: {other:?}"),
        }
    }
    let most = filefetch::config::MAX_CONNECTIONS_LIMIT;
    let mut server = TestServer::with(|c| c.max_connections(most));
    still_serves(&server);
    let started = std::time::Instant::now();
    server.server.take().unwrap().shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Many idle connections at once cost the others nothing.
#[test]
fn idle_crowd_does_not_block_others() {
    let server = TestServer::with(|c| c.request_timeout(Duration::from_secs(5)));
    let crowd: Vec<_> = (0..200).map(|_| raw(server.addr())).collect();
    for _ in 0..20 {
        still_serves(&server);
    }
    drop(crowd);
}

/// With the open-file cache on (the default), changes to a popular file are served at once:
/// rewritten in place (new size and content), replaced by a rename, deleted.
#[test]
fn cached_files_follow_changes() {
    let server = TestServer::start();
    let get = |name: &str| fetch_bytes("127.0.0.1", server.port(), name, &FetchOptions::new());
    let path = server.put("hot.txt", b"first");
    assert_eq!(get("hot.txt").unwrap(), b"first");
    assert_eq!(get("hot.txt").unwrap(), b"first");
    std::fs::write(&path, b"rewritten, longer").unwrap();
    assert_eq!(get("hot.txt").unwrap(), b"rewritten, longer");
    let fresh = server.put("hot.txt.new", b"renamed over");
    std::fs::rename(&fresh, &path).unwrap();
    assert_eq!(get("hot.txt").unwrap(), b"renamed over");
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        get("hot.txt"),
        Err(filefetch::Error::NotFound { .. })
    ));
}

/// With the cache off, a file renamed away is gone at once for its old name.
#[test]
fn without_the_cache_every_request_resolves_the_name() {
    let server = TestServer::with(|c| c.file_cache(Duration::ZERO));
    let get = |name: &str| fetch_bytes("127.0.0.1", server.port(), name, &FetchOptions::new());
    let path = server.put("moving.txt", b"here");
    assert_eq!(get("moving.txt").unwrap(), b"here");
    std::fs::rename(&path, server.root.path().join("moved.txt")).unwrap();
    assert!(matches!(
        get("moving.txt"),
        Err(filefetch::Error::NotFound { .. })
    ));
    assert_eq!(get("moved.txt").unwrap(), b"here");
}

/// No configured duration makes the server or the client panic: values past the one-year
/// bound are refused by name when the settings are built, and the largest and smallest
/// accepted ones still serve.
#[test]
fn extreme_durations_are_refused_or_serve() {
    use filefetch::config::MAX_DURATION;
    for t in [
        Duration::MAX,
        Duration::from_secs(u64::MAX / 2),
        MAX_DURATION + Duration::from_nanos(1),
    ] {
        for (option, built) in [
            (
                "request_timeout",
                ServerConfig::builder().request_timeout(t).build().err(),
            ),
            (
                "send_timeout",
                ServerConfig::builder().send_timeout(t).build().err(),
            ),
            (
                "file_cache",
                ServerConfig::builder().file_cache(t).build().err(),
            ),
            (
                "grace_period",
                ServerConfig::builder().grace_period(t).build().err(),
            ),
            (
                "idle_timeout",
                FetchOptions::builder().idle_timeout(t).build().err(),
            ),
            (
                "connect_timeout",
                FetchOptions::builder().connect_timeout(t).build().err(),
            ),
            (
                "max_time",
                FetchOptions::builder().max_time(t).build().err(),
            ),
        ] {
            match built {
                Some(Error::InvalidOption { option: named, .. }) => assert_eq!(named, option),
                other => panic!("{option} = {t:?}: {other:?}"),
            }
        }
    }
    for t in [MAX_DURATION, Duration::from_nanos(1)] {
        let server = TestServer::with(|c| {
            c.request_timeout(t.max(Duration::from_millis(500)))
                .send_timeout(t.max(Duration::from_millis(500)))
                .file_cache(t)
                .grace_period(t)
        });
        server.put("a.txt", b"hello");
        let client = FetchOptions::builder()
            .idle_timeout(t.max(Duration::from_millis(500)))
            .connect_timeout(t.max(Duration::from_millis(500)))
            .max_time(t.max(Duration::from_secs(5)));
        for options in [
            FetchOptions::new(),
            client.clone().build().unwrap(),
            client.clone().interrupt(|| false).build().unwrap(),
        ] {
            let got = fetch_bytes("127.0.0.1", server.port(), "a.txt", &options);
            assert_eq!(got.unwrap(), b"hello", "with {t:?}");
        }
        still_serves(&server);
    }
}
