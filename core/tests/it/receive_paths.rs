//! Both receive paths of the client (zero-copy `splice` on Linux, and the portable buffered
//! loop forced with `FetchOptions::portable`) give the same bytes and the same errors, and
//! leave nothing behind on failure. And the server reads a request whether it arrives with
//! the connection or in pieces later.

use std::io::Write;
use std::ops::ControlFlow;
use std::time::Duration;

use crate::support::{
    entries, found, pattern, raw, read_to_close, request, FakeServer, Step, TestServer,
};
use filefetch::{fetch, Error, Fetch, FetchOptions};

const PATHS: [bool; 2] = [false, true];

#[test]
fn both_receive_paths_give_the_same_bytes() {
    let server = TestServer::start();
    // Empty, tiny, one pipe's worth and more, and several pipes' worth with a ragged end.
    let sizes = [0usize, 1, 4096, 64 * 1024 + 1, 1 << 20, (3 << 20) + 7];
    for size in sizes {
        let data = pattern(size);
        server.put(&format!("f{size}"), &data);
        for portable in PATHS {
            let out = tempfile::tempdir().unwrap();
            let opts = FetchOptions::builder()
                .output(out.path())
                .portable(portable)
                .idle_timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            let got = fetch("127.0.0.1", server.port(), &format!("f{size}"), &opts).unwrap();
            assert_eq!(got.bytes, size as u64);
            let on_disk = std::fs::read(&got.path).unwrap();
            assert!(
                on_disk == data,
                "{size} bytes differ (portable: {portable})"
            );
            assert_eq!(entries(out.path()), vec![format!("f{size}")]);
        }
    }
}

#[test]
fn progress_is_reported_to_the_end_on_both_paths() {
    let server = TestServer::start();
    let size = (2 << 20) + 3;
    server.put("p.bin", &pattern(size));
    for portable in PATHS {
        let out = tempfile::tempdir().unwrap();
        let opts = FetchOptions::builder()
            .output(out.path())
            .portable(portable)
            .build()
            .unwrap();
        let mut last = (0, 0);
        Fetch::new("127.0.0.1", server.port(), "p.bin")
            .options(&opts)
            .progress(|got, total| {
                assert!(got >= last.0, "progress went backwards");
                last = (got, total);
                ControlFlow::Continue(())
            })
            .to_file()
            .unwrap();
        assert_eq!(last, (size as u64, size as u64), "portable: {portable}");
    }
}

#[test]
fn aborting_from_progress_leaves_nothing_on_both_paths() {
    let server = TestServer::start();
    server.put("a.bin", &pattern(4 << 20));
    for portable in PATHS {
        let out = tempfile::tempdir().unwrap();
        let opts = FetchOptions::builder()
            .output(out.path())
            .portable(portable)
            .build()
            .unwrap();
        let err = Fetch::new("127.0.0.1", server.port(), "a.bin")
            .options(&opts)
            .progress(|got, _| {
                if got > 0 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .to_file()
            .unwrap_err();
        assert!(
            matches!(err, Error::Aborted),
            "portable {portable}: {err:?}"
        );
        assert!(entries(out.path()).is_empty(), "portable: {portable}");
    }
}

/// Runs `steps` against a fetch of "file.bin" on the given path; checks nothing is left.
fn fails_cleanly(steps: Vec<Step>, portable: bool) -> Error {
    let fake = FakeServer::start(steps);
    let out = tempfile::tempdir().unwrap();
    let opts = FetchOptions::builder()
        .output(out.path())
        .portable(portable)
        .idle_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).expect_err("fetch must fail");
    assert!(
        entries(out.path()).is_empty(),
        "left behind (portable {portable}): {:?}",
        entries(out.path())
    );
    err
}

#[test]
fn short_body_is_incomplete_on_both_paths() {
    for portable in PATHS {
        let mut bytes = found(300_000);
        bytes.extend_from_slice(&pattern(200_000));
        let err = fails_cleanly(vec![Step::Send(bytes)], portable);
        assert!(
            matches!(
                err,
                Error::Incomplete {
                    received: 200_000,
                    expected: 300_000
                }
            ),
            "portable {portable}: {err:?}"
        );
    }
}

#[test]
fn stall_mid_body_times_out_on_both_paths() {
    for portable in PATHS {
        let mut bytes = found(10_000);
        bytes.extend_from_slice(&[5u8; 1000]);
        let steps = vec![Step::Send(bytes), Step::Pause(Duration::from_secs(2))];
        let err = fails_cleanly(steps, portable);
        assert!(
            matches!(err, Error::Timeout { .. }),
            "portable {portable}: {err:?}"
        );
    }
}

#[test]
fn reset_mid_body_is_incomplete_on_both_paths() {
    for portable in PATHS {
        let fake = FakeServer::scripted(|s| {
            let mut bytes = found(50_000);
            bytes.extend_from_slice(&[9u8; 20_000]);
            s.write_all(&bytes).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            crate::support::reset(s.try_clone().unwrap());
        });
        let out = tempfile::tempdir().unwrap();
        let opts = FetchOptions::builder()
            .output(out.path())
            .portable(portable)
            .build()
            .unwrap();
        let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Incomplete {
                    expected: 50_000,
                    ..
                }
            ),
            "portable {portable}: {err:?}"
        );
        assert!(entries(out.path()).is_empty(), "portable: {portable}");
    }
}

#[test]
fn excess_data_is_refused_on_both_paths() {
    for portable in PATHS {
        let mut bytes = found(100_000);
        bytes.extend_from_slice(&pattern(100_001));
        let err = fails_cleanly(vec![Step::Send(bytes)], portable);
        assert!(
            matches!(err, Error::ExcessData { expected: 100_000 }),
            "portable {portable}: {err:?}"
        );
    }
}

#[test]
fn server_reads_a_request_that_arrives_in_pieces() {
    let server = TestServer::start();
    let data = pattern(5000);
    server.put("pieces.bin", &data);
    let req = request(b"pieces.bin");
    // All at once, then split inside the header, then split inside the name.
    for cut in [req.len(), 2, 8] {
        let mut s = raw(server.addr());
        s.write_all(&req[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        s.write_all(&req[cut..]).unwrap();
        let got = read_to_close(&mut s).expect("response");
        assert_eq!(&got[..8], &found(5000)[..], "cut at {cut}");
        assert!(got[8..] == data[..], "cut at {cut}");
    }
}

/// Segments the client has received on `s`: (all, those carrying data).
// TCP_INFO's segment counts are Linux's.
#[cfg(target_os = "linux")]
fn segments_in(s: &std::net::TcpStream) -> (u32, u32) {
    use std::os::fd::AsRawFd;
    let mut info = std::mem::MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the zeroed tcp_info it is given.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    // SAFETY: zero-initialised (a valid tcp_info) and filled in by getsockopt.
    let info = unsafe { info.assume_init() };
    (info.tcpi_segs_in, info.tcpi_data_segs_in)
}

// Counts segments with TCP_INFO, and the server clears TCP_QUICKACK: both Linux only.
#[cfg(target_os = "linux")]
#[test]
fn the_response_acknowledges_the_request() {
    let server = TestServer::start();
    server.put("small.bin", &pattern(1000));
    let req = request(b"small.bin");
    let mut seen = Vec::new();
    // A bare ACK still comes when the server takes longer than the delayed-ACK timer to
    // answer (a loaded machine): one connection without it is enough.
    for _ in 0..20 {
        let mut s = raw(server.addr());
        s.write_all(&req).unwrap();
        let got = read_to_close(&mut s).expect("response");
        assert_eq!(got.len(), 8 + 1000);
        let (all, data) = segments_in(&s);
        // Without data: the handshake's SYN-ACK, and nothing else.
        if all - data == 1 {
            return;
        }
        seen.push((all, data));
    }
    panic!("every response came after a bare ACK (segments in, with data): {seen:?}");
}
