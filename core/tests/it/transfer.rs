//! Whole transfers over loopback: sizes, names, refusals, concurrency, both send paths.

use std::io::{Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{entries, pattern, TestServer};
use filefetch::{fetch, fetch_bytes, Error, Fetch, FetchOptions};

fn opts(dir: &Path) -> FetchOptions {
    FetchOptions::builder()
        .output(dir)
        .idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Fetches each size into a fresh directory and compares every byte, on the zero-copy and on
/// the portable send path.
#[test]
fn sizes_arrive_byte_for_byte() {
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let sizes = [0usize, 1, 8, 65_536, 65_537, 1 << 20, 100 << 20];
        for &size in &sizes {
            let data = pattern(size);
            let name = format!("f{size}.bin");
            server.put(&name, &data);
            let out = tempfile::tempdir().unwrap();
            let got = fetch("127.0.0.1", server.port(), &name, &opts(out.path())).unwrap();
            assert_eq!(got.bytes, size as u64);
            assert_eq!(got.path, out.path().join(&name));
            let on_disk = std::fs::read(&got.path).unwrap();
            assert!(
                on_disk == data,
                "{size} bytes differ (portable: {portable})"
            );
            assert_eq!(entries(out.path()), vec![name.clone()], "no leftovers");
        }
    }
}

#[test]
fn in_memory_fetch() {
    let server = TestServer::start();
    let data = pattern(300_000);
    server.put("mem.bin", &data);
    let got = fetch_bytes("127.0.0.1", server.port(), "mem.bin", &FetchOptions::new()).unwrap();
    assert!(got == data);
}

#[test]
fn names_with_spaces_unicode_and_directories() {
    let server = TestServer::start();
    let mut names = vec![
        "with space.txt",
        "ünïcødé 文件.txt",
        "sub/dir/deep.txt",
        "emoji 🦀/crab.txt",
        "%2e%2e literal.txt",
    ];
    // Windows strips trailing dots: no file can be called "..." there, and a server on
    // Windows refuses the name.
    if cfg!(windows) {
        let got = fetch_bytes("127.0.0.1", server.port(), "...", &FetchOptions::new());
        assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
    } else {
        names.push("...");
    }
    for name in names {
        server.put(name, name.as_bytes());
        let out = tempfile::tempdir().unwrap();
        let got = fetch("127.0.0.1", server.port(), name, &opts(out.path())).unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), name.as_bytes(), "{name}");
        let leaf = name.rsplit('/').next().unwrap();
        assert_eq!(got.path, out.path().join(leaf));
    }
}

/// Every refused kind of name gets StatusCode 0, like a missing file, and nothing is written.
#[test]
fn refused_names_look_missing() {
    let server = TestServer::start();
    server.put("sub/inside.txt", b"inside");
    // A file just outside the root that a traversal would reach.
    let outside = server
        .root
        .path()
        .parent()
        .unwrap()
        .join("outside-secret.txt");
    std::fs::write(&outside, b"secret").unwrap();
    let refused = [
        "../outside-secret.txt",
        "sub/../../outside-secret.txt",
        "/etc/passwd",
        outside.to_str().unwrap(),
        "./sub/inside.txt",
        "sub/./inside.txt",
        "sub//inside.txt",
        "sub/inside.txt/",
        "sub\\inside.txt",
        "sub/in\tside.txt",
        "sub/in\u{1b}side.txt",
        "sub",
        "missing.txt",
    ];
    for name in refused {
        let out = tempfile::tempdir().unwrap();
        let o = FetchOptions::builder()
            .output(out.path().join("dest"))
            .build()
            .unwrap();
        match fetch("127.0.0.1", server.port(), name, &o) {
            Err(Error::NotFound { name: n }) => assert_eq!(n, name),
            other => panic!("{name:?}: {other:?}"),
        }
        assert!(entries(out.path()).is_empty(), "{name:?} left a file");
    }
    std::fs::remove_file(outside).unwrap();
}

/// Links inside the root are followed on Unix; on Windows the server follows no link at all.
/// No link out of the root is ever followed.
#[test]
fn symlinks_followed_only_inside_the_root() {
    use crate::support::{symlink_dir, symlink_file};
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let root = server.root.path();
        server.put("real/data.txt", b"inside");
        let secret = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(secret.path(), b"secret").unwrap();
        let inside = Path::new("real").join("data.txt");
        if !symlink_file(inside, root.join("link-in")) {
            println!("SKIPPED symlinks_followed_only_inside_the_root: no symbolic links here");
            return;
        }
        assert!(symlink_dir("real", root.join("dir-in")));
        assert!(symlink_file(secret.path(), root.join("link-out")));
        let up: PathBuf = std::iter::repeat_n("..", 9).collect();
        assert!(symlink_dir(up, root.join("up")));
        let port = server.port();
        let get = |name: &str| fetch_bytes("127.0.0.1", port, name, &FetchOptions::new());
        if cfg!(unix) {
            assert_eq!(get("link-in").unwrap(), b"inside");
            assert_eq!(get("dir-in/data.txt").unwrap(), b"inside");
        } else {
            assert!(matches!(get("link-in"), Err(Error::NotFound { .. })));
            assert!(matches!(
                get("dir-in/data.txt"),
                Err(Error::NotFound { .. })
            ));
        }
        assert!(matches!(get("link-out"), Err(Error::NotFound { .. })));
        let via_up = format!("up{}", secret.path().display());
        assert!(matches!(get(&via_up), Err(Error::NotFound { .. })));
    }
}

#[test]
fn special_files_are_not_served() {
    let server = TestServer::start();
    // FIFOs are a Unix thing.
    #[cfg(unix)]
    {
        let fifo = server.root.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }
    std::fs::create_dir(server.root.path().join("dir")).unwrap();
    let names: &[&str] = if cfg!(unix) {
        &["fifo", "dir"]
    } else {
        &["dir"]
    };
    for &name in names {
        let got = fetch_bytes("127.0.0.1", server.port(), name, &FetchOptions::new());
        assert!(
            matches!(got, Err(Error::NotFound { .. })),
            "{name}: {got:?}"
        );
    }
    // The server is still healthy after refusing them.
    server.put("ok.txt", b"ok");
    assert_eq!(
        fetch_bytes("127.0.0.1", server.port(), "ok.txt", &FetchOptions::new()).unwrap(),
        b"ok"
    );
}

#[test]
fn existing_destination_is_never_touched() {
    let server = TestServer::start();
    server.put("a.txt", b"new content");
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("a.txt");
    std::fs::write(&dest, b"precious").unwrap();
    let o = FetchOptions::builder().output(&dest).build().unwrap();
    match fetch("127.0.0.1", server.port(), "a.txt", &o) {
        Err(Error::DestinationExists { path }) => assert_eq!(path, dest),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    assert_eq!(entries(out.path()), vec!["a.txt"]);
    // Asked for explicitly, the file is replaced whole.
    let got = fetch(
        "127.0.0.1",
        server.port(),
        "a.txt",
        &o.to_builder().overwrite(true).build().unwrap(),
    )
    .unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), b"new content");
    assert_eq!(entries(out.path()), vec!["a.txt"]);
}

#[test]
fn dangling_symlink_destination_is_not_written_through() {
    let server = TestServer::start();
    server.put("a.txt", b"data");
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("target-does-not-exist");
    if !crate::support::symlink_file(&target, out.path().join("a.txt")) {
        println!("SKIPPED dangling_symlink_destination_is_not_written_through: no symbolic links");
        return;
    }
    let got = fetch("127.0.0.1", server.port(), "a.txt", &opts(out.path()));
    assert!(
        matches!(got, Err(Error::DestinationExists { .. })),
        "{got:?}"
    );
    assert!(!target.exists());
}

#[test]
fn progress_reports_and_can_abort() {
    let server = TestServer::start();
    let data = pattern(3 << 20);
    server.put("big.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    let got = Fetch::new("127.0.0.1", server.port(), "big.bin")
        .options(&opts(out.path()))
        .progress(|r, t| {
            seen.push((r, t));
            ControlFlow::Continue(())
        })
        .to_file()
        .unwrap();
    assert_eq!(got.bytes, data.len() as u64);
    assert_eq!(seen.first(), Some(&(0, data.len() as u64)));
    assert_eq!(seen.last(), Some(&(data.len() as u64, data.len() as u64)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0));

    std::fs::remove_file(got.path).unwrap();
    let aborted = Fetch::new("127.0.0.1", server.port(), "big.bin")
        .options(&opts(out.path()))
        .progress(|r, _| {
            if r > 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .to_file();
    assert!(matches!(aborted, Err(Error::Aborted)), "{aborted:?}");
    assert!(entries(out.path()).is_empty());
}

#[test]
fn many_clients_at_once() {
    let server = TestServer::start();
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("c{i}.bin"), pattern(10_000 + i * 70_001)))
        .collect();
    for (name, data) in &files {
        server.put(name, data);
    }
    let port = server.port();
    std::thread::scope(|s| {
        for round in 0..4 {
            for (name, data) in &files {
                s.spawn(move || {
                    let got = fetch_bytes("127.0.0.1", port, name, &FetchOptions::new())
                        .unwrap_or_else(|e| panic!("{name} round {round}: {e}"));
                    assert!(&got == data, "{name}");
                });
            }
        }
    });
}

#[test]
fn ipv6_and_dual_stack() {
    // Skip quietly where the machine has no IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("six.txt"), b"six").unwrap();
    let config = filefetch::ServerConfig::builder()
        .root(root.path())
        .build()
        .unwrap();
    let server = filefetch::Server::bind("[::]:0".parse().unwrap(), config)
        .unwrap()
        .spawn()
        .unwrap();
    let port = server.local_addr().port();
    for host in ["::1", "[::1]", "127.0.0.1", "localhost"] {
        let got = fetch_bytes(host, port, "six.txt", &FetchOptions::new());
        assert_eq!(got.unwrap(), b"six", "{host}");
    }
}

#[test]
fn graceful_shutdown_finishes_transfers_in_flight() {
    let server = TestServer::with(|c| c.grace_period(Duration::from_secs(20)));
    let data = pattern(8 << 20);
    server.put("slow.bin", &data);
    let port = server.port();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let client = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut told = false;
        Fetch::new("127.0.0.1", port, "slow.bin")
            .options(
                &FetchOptions::builder()
                    .idle_timeout(Duration::from_secs(20))
                    .build()
                    .unwrap(),
            )
            .progress(|r, _| {
                if r > 0 && !told {
                    told = true;
                    started_tx.send(()).unwrap();
                    // Hold the transfer open across the shutdown request.
                    std::thread::sleep(Duration::from_millis(300));
                }
                ControlFlow::Continue(())
            })
            .to_writer(&mut buf)
            .map(|_| buf)
    });
    started_rx.recv_timeout(Duration::from_secs(20)).unwrap();
    let mut server = server;
    let bg = server.server.take().unwrap();
    bg.shutdown().unwrap();
    let got = client.join().unwrap().unwrap();
    assert!(got == data);
    // Nothing listens any more.
    let after = fetch_bytes("127.0.0.1", port, "slow.bin", &FetchOptions::new());
    assert!(matches!(after, Err(Error::Connect { .. })), "{after:?}");
}

/// Once a graceful shutdown starts, the listening socket is closed at once: new connections
/// are refused and the port can be bound again (by the next server) while the transfers in
/// flight drain.
#[test]
fn a_draining_server_gives_up_its_port_at_once() {
    let server = TestServer::with(|c| c.grace_period(Duration::from_secs(20)));
    let data = pattern(8 << 20);
    server.put("slow.bin", &data);
    let addr = server.addr();
    // A transfer in flight: the response has started, and most of it waits for the reader.
    let mut held = crate::support::raw(addr);
    held.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    held.write_all(&crate::support::request(b"slow.bin"))
        .unwrap();
    let mut header = [0u8; 8];
    held.read_exact(&mut header).unwrap();
    assert_eq!(header.to_vec(), crate::support::found(8 << 20));

    let mut server = server;
    let bg = server.server.take().unwrap();
    bg.handle().shutdown();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "still accepting: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    // The next server takes the port while this one drains.
    let config = filefetch::ServerConfig::builder()
        .root(server.root.path())
        .build()
        .unwrap();
    let next = filefetch::Server::bind(addr, config)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(
        fetch_bytes("127.0.0.1", addr.port(), "slow.bin", &FetchOptions::new()).unwrap(),
        data
    );
    next.shutdown().unwrap();
    // The transfer in flight still completes.
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).unwrap();
    assert!(rest == data[..], "{} of {} bytes", rest.len(), data.len());
    bg.join().unwrap();
}

/// A file the 32-bit DataLength cannot describe gets StatusCode 0 (a sparse file: no disk
/// space is used).
#[test]
fn files_of_four_gib_or_more_are_refused() {
    let server = TestServer::start();
    let big = std::fs::File::create(server.root.path().join("huge.img")).unwrap();
    big.set_len(1 << 32).unwrap();
    let just_fits = std::fs::File::create(server.root.path().join("fits.img")).unwrap();
    just_fits.set_len(u64::from(u32::MAX)).unwrap();
    let got = fetch_bytes("127.0.0.1", server.port(), "huge.img", &FetchOptions::new());
    assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
    // The largest describable size is announced as it is (read only the header).
    let mut s = crate::support::raw(server.addr());
    std::io::Write::write_all(&mut s, b"\x49\x7e\x01\x00\x08fits.img").unwrap();
    let mut header = [0u8; 8];
    std::io::Read::read_exact(&mut s, &mut header).unwrap();
    assert_eq!(header, [0x49, 0x7E, 2, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
}

/// A file truncated while it is being sent is never padded or passed off as whole: the
/// client sees an incomplete transfer and keeps nothing.
#[test]
fn file_shrinking_mid_transfer_is_reported_incomplete() {
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let path = server.put("shrinks.bin", &pattern(64 << 20));
        let out = tempfile::tempdir().unwrap();
        let mut truncated = false;
        let got = Fetch::new("127.0.0.1", server.port(), "shrinks.bin")
            .options(&opts(out.path()))
            .progress(|r, _| {
                if r > 0 && !truncated {
                    truncated = true;
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .unwrap()
                        .set_len(1 << 20)
                        .unwrap();
                }
                ControlFlow::Continue(())
            })
            .to_file();
        assert!(
            matches!(got, Err(Error::Incomplete { expected, .. }) if expected == 64 << 20),
            "portable {portable}: {got:?}"
        );
        assert!(entries(out.path()).is_empty());
    }
}
