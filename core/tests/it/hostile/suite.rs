//! A hostile-client suite: one live server meets, one after another, every kind of broken or
//! malicious client, spoken to in raw bytes. After each case a normal client must be served
//! correctly; at the end the server must hold no connection, its threads must not have
//! panicked, and it must stop cleanly. A flood of 5,000 connections over the connection
//! limit gets a server of its own.
//!
//! Connections still held are counted from /proc/net/tcp on Linux and from the system's TCP
//! table on Windows (`support::held_connections`); other systems have neither.
#![cfg(any(target_os = "linux", windows))]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use crate::support::{
    assert_no_connection_held, pattern, raw, read_to_close, request, reset, server_panics,
    TestServer, NOT_FOUND,
};
use filefetch::{fetch_bytes, FetchOptions};
#[cfg(target_os = "linux")]
use socket2::Socket;

/// The response a complete, valid request for `data` gets.
fn response(data: &[u8]) -> Vec<u8> {
    let mut r = vec![0x49, 0x7E, 2, 1];
    r.extend_from_slice(&(data.len() as u32).to_be_bytes());
    r.extend_from_slice(data);
    r
}

struct Suite {
    server: TestServer,
    small: Vec<u8>,
    large: Vec<u8>,
}

impl Suite {
    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// A normal client is served, byte for byte.
    fn still_serves(&self, after: &str) {
        let got = fetch_bytes(
            "127.0.0.1",
            self.server.port(),
            "small.txt",
            &FetchOptions::builder()
                .idle_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        )
        .unwrap_or_else(|e| panic!("after {after}: a normal client failed: {e}"));
        assert!(got == self.small, "after {after}: wrong data");
    }

    /// Sends `bytes`, half-closes or not, and returns everything the server sent before it
    /// closed; `None` if the connection was reset.
    fn exchange(&self, bytes: &[u8], half_close: bool) -> Option<Vec<u8>> {
        let mut s = raw(self.addr());
        s.write_all(bytes).unwrap();
        if half_close {
            s.shutdown(Shutdown::Write).unwrap();
        }
        read_to_close(&mut s)
    }

    /// The server closes without a single byte of response (a reset counts as a close).
    fn closed_without_response(&self, bytes: &[u8], half_close: bool, case: &str) {
        let reply = self.exchange(bytes, half_close).unwrap_or_default();
        assert!(reply.is_empty(), "{case}: got {reply:?}");
    }
}

const HUGE: u64 = 256 << 20;

/// One hostile behaviour, with its own checks of what the server did.
type Case = Box<dyn Fn(&Suite)>;

fn start_suite(portable: bool) -> Suite {
    server_panics();
    let server = TestServer::with(|c| {
        c.portable(portable)
            .max_connections(16)
            .request_timeout(Duration::from_secs(1))
            .send_timeout(Duration::from_millis(500))
    });
    let small = b"small and well-formed".to_vec();
    let large = pattern(8 << 20);
    server.put("small.txt", &small);
    server.put("large.bin", &large);
    // More than any socket buffer holds, so that a client that never reads stalls the
    // server (sparse: no disk space is used).
    let huge = std::fs::File::create(server.root.path().join("huge.bin")).unwrap();
    huge.set_len(HUGE).unwrap();
    Suite {
        server,
        small,
        large,
    }
}

fn run_suite(portable: bool) {
    let suite = start_suite(portable);
    let panics_before = server_panics();
    let cases: Vec<(&str, Case)> = vec![
        (
            "nothing sent",
            Box::new(|s: &Suite| {
                s.closed_without_response(b"", false, "nothing sent");
            }),
        ),
        (
            "nothing sent, then half-close",
            Box::new(|s: &Suite| {
                s.closed_without_response(b"", true, "empty half-close");
            }),
        ),
        (
            "one byte then silence",
            Box::new(|s: &Suite| {
                s.closed_without_response(&[0x49], false, "one byte");
            }),
        ),
        (
            "one byte then half-close",
            Box::new(|s: &Suite| {
                s.closed_without_response(&[0x49], true, "one byte, half-close");
            }),
        ),
        (
            "header trickled one byte at a time",
            Box::new(|s: &Suite| {
                let req = request(b"small.txt");
                let mut c = raw(s.addr());
                c.set_nodelay(true).unwrap();
                for b in &req {
                    c.write_all(&[*b]).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(read_to_close(&mut c).unwrap(), response(&s.small));
            }),
        ),
        (
            "request split in three at every pair of offsets",
            Box::new(|s: &Suite| {
                let req = request(b"small.txt");
                for i in 1..req.len() {
                    for j in i + 1..req.len() {
                        let mut c = raw(s.addr());
                        c.set_nodelay(true).unwrap();
                        for piece in [&req[..i], &req[i..j], &req[j..]] {
                            c.write_all(piece).unwrap();
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        let reply = read_to_close(&mut c).unwrap();
                        assert_eq!(reply, response(&s.small), "split at {i} and {j}");
                    }
                }
            }),
        ),
        (
            "wrong magic",
            Box::new(|s: &Suite| {
                for magic in [
                    [0x7E, 0x49],
                    [0x49, 0x7F],
                    [0x48, 0x7E],
                    [0, 0],
                    [0xFF, 0xFF],
                ] {
                    let mut req = request(b"small.txt");
                    req[..2].copy_from_slice(&magic);
                    s.closed_without_response(&req, false, &format!("magic {magic:02X?}"));
                }
            }),
        ),
        (
            "wrong magic, one byte at a time",
            Box::new(|s: &Suite| {
                let mut c = raw(s.addr());
                c.set_nodelay(true).unwrap();
                c.write_all(&[0x49]).unwrap();
                std::thread::sleep(Duration::from_millis(5));
                // The server may already have closed: the rest may not be writable.
                let _ = c.write_all(&[0x00, 0x01, 0x00, 0x01, b'a']);
                assert!(read_to_close(&mut c).unwrap_or_default().is_empty());
            }),
        ),
        (
            "wrong type",
            Box::new(|s: &Suite| {
                for t in [0u8, 2, 3, 0x81, 0xFF] {
                    let mut req = request(b"small.txt");
                    req[2] = t;
                    s.closed_without_response(&req, false, &format!("type {t}"));
                }
            }),
        ),
        (
            "FilenameLen 0, 1025 and 65535",
            Box::new(|s: &Suite| {
                for (len, body) in [(0u16, 0usize), (1025, 1025), (65535, 2000), (1025, 0)] {
                    let mut req = vec![0x49, 0x7E, 1];
                    req.extend_from_slice(&len.to_be_bytes());
                    req.extend(std::iter::repeat_n(b'a', body));
                    s.closed_without_response(&req, false, &format!("FilenameLen {len}"));
                }
            }),
        ),
        (
            "name shorter than FilenameLen, then silence",
            Box::new(|s: &Suite| {
                let mut req = request(b"small.txt");
                req[4] += 5;
                s.closed_without_response(&req, false, "short name");
            }),
        ),
        (
            "name shorter than FilenameLen, then half-close",
            Box::new(|s: &Suite| {
                let mut req = request(b"small.txt");
                req[4] += 1;
                s.closed_without_response(&req, true, "short name, half-close");
            }),
        ),
        (
            "extra bytes after the name",
            Box::new(|s: &Suite| {
                // A second request pipelined behind the first gets no second response.
                let mut req = request(b"small.txt");
                req.extend_from_slice(&request(b"small.txt"));
                assert_eq!(s.exchange(&req, false).unwrap(), response(&s.small));
                let mut req = request(b"missing.txt");
                req.extend_from_slice(&[0u8; 100]);
                assert_eq!(s.exchange(&req, false).unwrap(), NOT_FOUND);
                let mut req = request(b"small.txt");
                req.push(b'!');
                assert_eq!(s.exchange(&req, true).unwrap(), response(&s.small));
            }),
        ),
        (
            "invalid UTF-8 names",
            Box::new(|s: &Suite| {
                let names: [&[u8]; 7] = [
                    b"\xff",
                    b"small.txt\xff",
                    b"\x80small.txt",
                    b"\xc3",
                    b"\xed\xa0\x80",
                    b"\xf4\x90\x80\x80",
                    b"\xc0\xafsmall.txt",
                ];
                for name in names {
                    assert_eq!(
                        s.exchange(&request(name), false).unwrap(),
                        NOT_FOUND,
                        "{name:?}"
                    );
                }
            }),
        ),
        (
            "NUL in the name",
            Box::new(|s: &Suite| {
                let names: [&[u8]; 4] = [b"\0", b"\0small.txt", b"small.txt\0", b"small\0.txt"];
                for name in names {
                    assert_eq!(
                        s.exchange(&request(name), false).unwrap(),
                        NOT_FOUND,
                        "{name:?}"
                    );
                }
            }),
        ),
        (
            "half-close right after the request",
            Box::new(|s: &Suite| {
                assert_eq!(
                    s.exchange(&request(b"small.txt"), true).unwrap(),
                    response(&s.small)
                );
                let got = s.exchange(&request(b"large.bin"), true).unwrap();
                assert!(got == response(&s.large), "large file after half-close");
            }),
        ),
        (
            "reset right after the request",
            Box::new(|s: &Suite| {
                for name in [&b"small.txt"[..], b"large.bin"] {
                    let mut c = raw(s.addr());
                    c.write_all(&request(name)).unwrap();
                    reset(c);
                }
            }),
        ),
        (
            "reset inside the header",
            Box::new(|s: &Suite| {
                let mut c = raw(s.addr());
                c.write_all(&request(b"large.bin")[..3]).unwrap();
                reset(c);
            }),
        ),
        (
            "reset in the middle of the body",
            Box::new(|s: &Suite| {
                for _ in 0..4 {
                    let mut c = raw(s.addr());
                    c.write_all(&request(b"large.bin")).unwrap();
                    let mut first = vec![0u8; 100_000];
                    c.read_exact(&mut first).unwrap();
                    assert_eq!(&first[..8], &response(&s.large)[..8]);
                    assert!(first[8..] == s.large[..first.len() - 8]);
                    reset(c);
                }
            }),
        ),
        (
            "orderly close in the middle of the body",
            Box::new(|s: &Suite| {
                let mut c = raw(s.addr());
                c.write_all(&request(b"large.bin")).unwrap();
                let mut first = [0u8; 4096];
                c.read_exact(&mut first).unwrap();
                drop(c);
            }),
        ),
        (
            "another protocol",
            Box::new(|s: &Suite| {
                s.closed_without_response(
                    b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                    false,
                    "HTTP",
                );
                s.closed_without_response(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01], false, "TLS");
            }),
        ),
    ];
    for (name, case) in &cases {
        case(&suite);
        suite.still_serves(name);
    }
    client_that_never_reads(&suite);
    suite.still_serves("a client that never reads");

    // Nothing leaked: every connection is closed on the server's side, no permit is lost
    // (16 connections at once are still served), no thread panicked.
    assert_no_connection_held(suite.server.port(), Duration::from_secs(10));
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| suite.still_serves("the whole suite, 16 at once"));
        }
    });
    assert_eq!(server_panics(), panics_before, "a server thread panicked");
    let mut server = suite.server;
    server.server.take().unwrap().abort().unwrap();
}

/// A client that asks for a large file and never reads is dropped after the send-stall
/// timeout: while the client still holds its socket, the server's side is gone.
fn client_that_never_reads(suite: &Suite) {
    let port = suite.server.port();
    assert_no_connection_held(port, Duration::from_secs(10));
    let c = raw(suite.addr());
    socket2::SockRef::from(&c)
        .set_recv_buffer_size(4096)
        .unwrap();
    // The count sees this connection (the check below is not vacuous): checked before the
    // request, since the server may drop the stalled client soon after it.
    assert!(crate::support::held_connections(port) >= 1);
    (&c).write_all(&request(b"huge.bin")).unwrap();
    // Others are served meanwhile.
    suite.still_serves("a stalled client, meanwhile");
    assert_no_connection_held(port, Duration::from_secs(20));
    // The client holds its socket until now, and did not get the whole file.
    let mut c = c;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = c.read(&mut buf) {
        got += n;
    }
    assert!(
        got < 8 + suite.large.len(),
        "a stalled client got everything"
    );
}

#[test]
fn hostile_clients_zero_copy_path() {
    run_suite(false);
}

#[test]
fn hostile_clients_portable_path() {
    run_suite(true);
}

// Linux only: under Wine every socket call goes through the wine server, too slow to take
// 5,000 connections within the 1 s request deadline (4,300 of 4,900 served in a typical run).
#[cfg(target_os = "linux")]
mod flood {
    use super::*;
    use std::time::Instant;

    use socket2::{Domain, Type};

    /// How one connection of the flood ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fate {
        Connecting,
        Sending(usize),
        Reading,
        Served,
        /// Refused, reset or closed without a response: allowed, a wrong response is not.
        Refused,
    }

    /// 5,000 connections at once against a server limited to 100: each is served or refused,
    /// none gets a wrong answer, the server stays up, serves again afterwards, and holds no
    /// connection once they are gone.
    #[test]
    fn flood_of_5000_connections_over_the_limit() {
        const FLOOD: usize = 5000;
        // Windows has no limit on open descriptors to raise.
        let hard = crate::support::raise_fd_limit();
        #[cfg(windows)]
        let hard = u64::MAX;
        if hard < FLOOD as u64 + 1000 {
            println!(
                "SKIPPED flood_of_5000_connections_over_the_limit: the hard limit on open files \
                 is {hard}, the test needs {}",
                FLOOD + 1000
            );
            return;
        }
        server_panics();
        let panics_before = server_panics();
        let server = TestServer::with(|c| {
            c.max_connections(100)
                .request_timeout(Duration::from_secs(1))
        });
        let data = pattern(3000);
        server.put("f.bin", &data);
        let expected = response(&data);
        let req = request(b"f.bin");

        let addr: socket2::SockAddr = server.addr().into();
        let mut socks = Vec::with_capacity(FLOOD);
        let mut fates = Vec::with_capacity(FLOOD);
        let mut replies: Vec<Vec<u8>> = vec![Vec::new(); FLOOD];
        for _ in 0..FLOOD {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let fate = match s.connect(&addr) {
                Ok(()) => Fate::Sending(0),
                Err(e) if connect_in_progress(&e) => Fate::Connecting,
                Err(_) => Fate::Refused,
            };
            socks.push(s);
            fates.push(fate);
        }
        // Every 50th connection sends nothing and holds its slot until the request deadline.
        // A few seconds on, it half-closes: a connection the kernel completed but the server
        // never accepted (its handshake dropped while the backlog was full) gets a reset then,
        // instead of waiting for ever.
        let silent = |i: usize| i % 50 == 0;
        let mut hang_up = vec![false; FLOOD];
        let started = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let open: Vec<usize> = (0..FLOOD)
                .filter(|&i| !matches!(fates[i], Fate::Served | Fate::Refused))
                .collect();
            if open.is_empty() {
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                for &i in &open {
                    if silent(i) && fates[i] == Fate::Reading && !hang_up[i] {
                        hang_up[i] = true;
                        let _ = socks[i].shutdown(Shutdown::Write);
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} connections unfinished after 120 s: {:?}",
                open.len(),
                open.iter()
                    .map(|&i| (i, silent(i), fates[i]))
                    .collect::<Vec<_>>()
            );
            let wants: Vec<(&Socket, bool)> = open
                .iter()
                .map(|&i| {
                    let write = matches!(fates[i], Fate::Connecting | Fate::Sending(_));
                    (&socks[i], write)
                })
                .collect();
            let ready = poll(&wants, 100);
            for (k, &i) in open.iter().enumerate() {
                if !ready[k] {
                    continue;
                }
                let s = &socks[i];
                if fates[i] == Fate::Connecting {
                    fates[i] = match s.take_error().unwrap() {
                        Some(_) => Fate::Refused,
                        None if silent(i) => Fate::Reading,
                        None => Fate::Sending(0),
                    };
                }
                if let Fate::Sending(done) = fates[i] {
                    fates[i] = match (&*s).write(&req[done..]) {
                        Ok(n) if done + n == req.len() => Fate::Reading,
                        Ok(n) => Fate::Sending(done + n),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => fates[i],
                        Err(_) => Fate::Refused,
                    };
                    continue;
                }
                if fates[i] == Fate::Reading {
                    let mut buf = [0u8; 8192];
                    loop {
                        match (&*s).read(&mut buf) {
                            Ok(0) => {
                                let reply = std::mem::take(&mut replies[i]);
                                fates[i] = if reply.is_empty() {
                                    Fate::Refused
                                } else {
                                    assert!(!silent(i), "a silent client got {reply:?}");
                                    assert!(reply == expected, "connection {i}: wrong response");
                                    Fate::Served
                                };
                                break;
                            }
                            Ok(n) => replies[i].extend_from_slice(&buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                // A reset: nothing received may be passed off as a response.
                                fates[i] = Fate::Refused;
                                break;
                            }
                        }
                    }
                }
            }
        }
        let served = fates.iter().filter(|f| **f == Fate::Served).count();
        let asking = (0..FLOOD).filter(|&i| !silent(i)).count();
        println!(
            "flood: {served} of {asking} requests served, {} refused; {} silent connections closed",
            asking - served,
            FLOOD - asking
        );
        // Past the limit connections wait in the backlog, so nearly all are served; the kernel
        // may still refuse some, which is allowed. A wrong response never is (checked above).
        assert!(
            served * 10 >= asking * 9,
            "only {served} of {asking} served"
        );
        drop(socks);

        let got = fetch_bytes(
            "127.0.0.1",
            server.port(),
            "f.bin",
            &FetchOptions::builder()
                .idle_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        );
        assert!(got.unwrap() == data, "not served after the flood");
        assert_no_connection_held(server.port(), Duration::from_secs(30));
        assert_eq!(server_panics(), panics_before, "a server thread panicked");
        let mut server = server;
        server.server.take().unwrap().abort().unwrap();
    }
}

/// Whether a non-blocking connect's error only says that the connection is under way.
#[cfg(target_os = "linux")]
fn connect_in_progress(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// Waits at most `timeout_ms` for any of the sockets to be ready: to write for those paired
/// with `true`, to read (or closed, or failed) for the others. Which ones are ready.
#[cfg(target_os = "linux")]
fn poll(sockets: &[(&Socket, bool)], timeout_ms: i32) -> Vec<bool> {
    use std::os::fd::AsRawFd;
    let mut fds: Vec<libc::pollfd> = sockets
        .iter()
        .map(|&(s, write)| libc::pollfd {
            fd: s.as_raw_fd(),
            events: if write { libc::POLLOUT } else { libc::POLLIN },
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of pollfd of the length passed.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
    fds.iter().map(|fd| fd.revents != 0).collect()
}
