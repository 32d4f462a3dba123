//! The client against broken servers, scripted in process: servers that close, reset, lie or
//! stall at every point of the response, or drip data. Each fault gives its own error kind,
//! no file (partial or temporary) is ever left behind, and an existing file is never
//! touched, even one the fetch was allowed to overwrite.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use filefetch::protocol::DecodeError;
use filefetch::{fetch, Error, FetchOptions};

use crate::support::{entries, found, pattern, reset, FakeServer, Step};

/// Runs a fetch of "file.bin" against `steps` into an empty directory; returns the error and
/// checks the directory is still empty.
fn fails_cleanly(steps: Vec<Step>, timeout: Duration) -> Error {
    let fake = FakeServer::start(steps);
    let out = tempfile::tempdir().unwrap();
    let opts = FetchOptions::builder()
        .output(out.path())
        .idle_timeout(timeout)
        .build()
        .unwrap();
    let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).expect_err("fetch must fail");
    assert!(
        entries(out.path()).is_empty(),
        "left behind: {:?}",
        entries(out.path())
    );
    assert_eq!(fake.requested(), b"file.bin");
    err
}

fn quick() -> Duration {
    Duration::from_secs(2)
}

#[test]
fn closed_before_any_response() {
    let err = fails_cleanly(vec![], quick());
    assert!(matches!(err, Error::ServerClosed), "{err:?}");
}

#[test]
fn closed_inside_the_header() {
    let err = fails_cleanly(vec![Step::Send(vec![0x49, 0x7E, 2])], quick());
    assert!(
        matches!(err, Error::TruncatedHeader { received: 3 }),
        "{err:?}"
    );
}

#[test]
fn closed_mid_transfer() {
    let mut bytes = found(1000);
    bytes.extend_from_slice(&[7u8; 400]);
    let err = fails_cleanly(vec![Step::Send(bytes)], quick());
    assert!(
        matches!(
            err,
            Error::Incomplete {
                received: 400,
                expected: 1000
            }
        ),
        "{err:?}"
    );
}

#[test]
fn short_body_in_pieces() {
    let steps = vec![
        Step::Send(found(10)),
        Step::Pause(Duration::from_millis(50)),
        Step::Send(vec![1, 2, 3]),
        Step::Pause(Duration::from_millis(50)),
        Step::Send(vec![4]),
    ];
    let err = fails_cleanly(steps, quick());
    assert!(
        matches!(
            err,
            Error::Incomplete {
                received: 4,
                expected: 10
            }
        ),
        "{err:?}"
    );
}

#[test]
fn bad_magic() {
    let err = fails_cleanly(
        vec![Step::Send(vec![0x12, 0x34, 2, 1, 0, 0, 0, 1, 0])],
        quick(),
    );
    assert!(
        matches!(err, Error::MalformedResponse(DecodeError::Magic(0x1234))),
        "{err:?}"
    );
    assert!(err.to_string().contains("magic"));
}

#[test]
fn bad_type() {
    let err = fails_cleanly(
        vec![Step::Send(vec![0x49, 0x7E, 1, 1, 0, 0, 0, 0])],
        quick(),
    );
    assert!(
        matches!(
            err,
            Error::MalformedResponse(DecodeError::Type {
                found: 1,
                expected: 2
            })
        ),
        "{err:?}"
    );
}

#[test]
fn bad_status() {
    let err = fails_cleanly(
        vec![Step::Send(vec![0x49, 0x7E, 2, 7, 0, 0, 0, 0])],
        quick(),
    );
    assert!(
        matches!(err, Error::MalformedResponse(DecodeError::Status(7))),
        "{err:?}"
    );
}

#[test]
fn status_zero_creates_nothing() {
    let err = fails_cleanly(
        vec![Step::Send(vec![0x49, 0x7E, 2, 0, 0, 0, 0, 0])],
        quick(),
    );
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[test]
fn more_data_than_announced() {
    let mut bytes = found(4);
    bytes.extend_from_slice(b"abcdEXTRA");
    let err = fails_cleanly(vec![Step::Send(bytes)], quick());
    assert!(matches!(err, Error::ExcessData { expected: 4 }), "{err:?}");
}

#[test]
fn stall_before_the_header_times_out() {
    let err = fails_cleanly(
        vec![Step::Pause(Duration::from_secs(2))],
        Duration::from_millis(200),
    );
    assert!(err.is_timeout(), "{err:?}");
}

#[test]
fn stall_mid_body_times_out() {
    let mut bytes = found(100);
    bytes.extend_from_slice(&[1u8; 10]);
    let steps = vec![Step::Send(bytes), Step::Pause(Duration::from_secs(2))];
    let err = fails_cleanly(steps, Duration::from_millis(200));
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.to_string().contains("10 of 100"), "{err}");
}

#[test]
fn interrupt_check_stops_a_stalled_download() {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut bytes = found(100);
    bytes.extend_from_slice(&[1u8; 10]);
    let fake = FakeServer::start(vec![Step::Send(bytes), Step::Pause(Duration::from_secs(3))]);
    let out = tempfile::tempdir().unwrap();
    let f = flag.clone();
    let opts = FetchOptions::builder()
        .output(out.path())
        .idle_timeout(Duration::from_secs(30))
        .interrupt(move || f.load(std::sync::atomic::Ordering::Relaxed))
        .build()
        .unwrap();
    let setter = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
        })
    };
    let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).unwrap_err();
    setter.join().unwrap();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    assert!(entries(out.path()).is_empty());
}

#[test]
fn failure_leaves_an_existing_file_alone_when_overwriting() {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("keep.bin");
    std::fs::write(&dest, b"original").unwrap();
    let mut bytes = found(50);
    bytes.extend_from_slice(&[9u8; 20]);
    let fake = FakeServer::start(vec![Step::Send(bytes)]);
    let opts = FetchOptions::builder()
        .output(&dest)
        .overwrite(true)
        .idle_timeout(quick())
        .build()
        .unwrap();
    let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).unwrap_err();
    assert!(matches!(err, Error::Incomplete { .. }), "{err:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"original");
    assert_eq!(entries(out.path()), vec!["keep.bin"]);
}

#[test]
fn connection_refused() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = tempfile::tempdir().unwrap();
    let err = fetch(
        "127.0.0.1",
        port,
        "x",
        &FetchOptions::builder().output(out.path()).build().unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(entries(out.path()).is_empty());
}

/// A destination directory where nothing can be created (even by root): the error names the
/// directory and nothing appears.
// /proc/self/fdinfo is Linux's; elsewhere no directory refuses even an administrator.
#[cfg(target_os = "linux")]
#[test]
fn unwritable_destination_directory() {
    let mut bytes = found(3);
    bytes.extend_from_slice(b"abc");
    let fake = FakeServer::start(vec![Step::Send(bytes)]);
    let opts = FetchOptions::builder()
        .output("/proc/self/fdinfo/")
        .build()
        .unwrap();
    let err = fetch("127.0.0.1", fake.port, "x", &opts).unwrap_err();
    match &err {
        Error::Io { path: Some(p), .. } => assert!(p.starts_with("/proc/self/fdinfo")),
        other => panic!("{other:?}"),
    }
}

/// With an interrupt check set, connecting goes through the interruptible path: it still
/// connects, and it still reports a refused connection as such.
#[test]
fn interruptible_connect_connects_and_reports_refusal() {
    let mut bytes = found(2);
    bytes.extend_from_slice(b"ok");
    let fake = FakeServer::start(vec![Step::Send(bytes)]);
    let opts = FetchOptions::builder().interrupt(|| false).build().unwrap();
    let got = filefetch::fetch_bytes("127.0.0.1", fake.port, "file.bin", &opts).unwrap();
    assert_eq!(got, b"ok");

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = filefetch::fetch_bytes("127.0.0.1", port, "x", &opts).unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
}

/// An interrupt raised while connecting stops at once. A listener whose backlog is full
/// leaves further connection attempts pending, which gives the check time to run.
// Linux drops the SYN when the backlog is full; Windows and the BSDs refuse it at once.
#[cfg(target_os = "linux")]
#[test]
fn interrupt_while_connecting() {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let port = listener.local_addr().unwrap().as_socket().unwrap().port();
    // Fill the backlog (never accepted), so the next SYN is dropped and connect pends.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&listener.local_addr().unwrap());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(100));
    // The backlog really is full: a plain connection attempt pends and times out.
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let plain = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300));
    assert!(
        matches!(&plain, Err(e) if e.kind() == std::io::ErrorKind::TimedOut),
        "backlog not full: {plain:?}"
    );
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = calls.clone();
    let opts = FetchOptions::builder()
        .connect_timeout(Duration::from_secs(30))
        .interrupt(move || c.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= 3)
        .build()
        .unwrap();
    let err = filefetch::fetch_bytes("127.0.0.1", port, "x", &opts).unwrap_err();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    drop(fillers);
}

/// A header announcing 1 MiB, then a byte every 100 ms for up to 20 s: each read is within
/// the idle timeout, so only a limit on the whole fetch or on its rate can end it.
fn drip() -> Vec<Step> {
    let mut steps = vec![Step::Send(found(1 << 20))];
    for _ in 0..200 {
        steps.push(Step::Send(b"x".to_vec()));
        steps.push(Step::Pause(Duration::from_millis(100)));
    }
    steps
}

/// The whole-fetch limit and the minimum rate end a dripping transfer with a timeout naming
/// the rule, into a file (nothing left) and into memory.
#[test]
fn dripping_server_is_cut_by_max_time_and_min_rate() {
    use filefetch::{Fetch, TimeoutPhase};
    let limits = [
        FetchOptions::builder().max_time(Duration::from_millis(500)),
        FetchOptions::builder().min_rate(1000, Duration::from_millis(500)),
    ];
    for builder in limits {
        let fake = FakeServer::start(drip());
        let out = tempfile::tempdir().unwrap();
        let opts = builder
            .idle_timeout(Duration::from_secs(5))
            .output(out.path())
            .build()
            .unwrap();
        let err = fetch("127.0.0.1", fake.port, "file.bin", &opts).unwrap_err();
        match (&err, opts.max_time()) {
            (
                Error::Timeout {
                    phase: TimeoutPhase::Total { limit },
                },
                Some(max),
            ) => {
                assert_eq!(*limit, max)
            }
            (
                Error::Timeout {
                    phase: TimeoutPhase::Rate { bytes_per_sec, .. },
                },
                None,
            ) => {
                assert_eq!(*bytes_per_sec, 1000)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.kind(), filefetch::ErrorKind::TimedOut);
        assert!(entries(out.path()).is_empty());
        drop(fake);
        let fake = FakeServer::start(drip());
        let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
            .options(&opts)
            .to_vec()
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
    }
}

/// A DataLength above the maximum size fails from the header, before any data is read, with
/// nothing left behind; at the maximum the file arrives whole, into a file, memory, or a
/// buffer the caller sized.
#[test]
fn max_size_is_checked_against_the_header() {
    use filefetch::{ErrorKind, Fetch};
    let body = vec![5u8; 1000];
    let serve = || FakeServer::start(vec![Step::Send([found(1000), body.clone()].concat())]);
    let out = tempfile::tempdir().unwrap();
    let small = FetchOptions::builder()
        .max_size(999)
        .output(out.path())
        .build()
        .unwrap();
    let fake = serve();
    match fetch("127.0.0.1", fake.port, "file.bin", &small) {
        Err(
            e @ Error::TooLarge {
                size: 1000,
                limit: 999,
            },
        ) => {
            assert_eq!(e.kind(), ErrorKind::TooLarge)
        }
        other => panic!("{other:?}"),
    }
    assert!(entries(out.path()).is_empty());
    drop(fake);
    let fake = serve();
    let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
        .options(&small)
        .to_vec()
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
    drop(fake);

    let exact = small.to_builder().max_size(1000).build().unwrap();
    let fake = serve();
    let got = fetch("127.0.0.1", fake.port, "file.bin", &exact).unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), body);
    drop(fake);
    let fake = serve();
    let got = Fetch::new("127.0.0.1", fake.port, "file.bin")
        .options(&exact)
        .to_vec()
        .unwrap();
    assert_eq!(got, body);
    drop(fake);
    let fake = serve();
    let response = Fetch::new("127.0.0.1", fake.port, "file.bin")
        .options(&exact)
        .open()
        .unwrap();
    assert_eq!(response.len(), 1000);
    let mut buf = vec![0u8; 1000];
    response.read_into(&mut buf).unwrap();
    assert_eq!(buf, body);
}

/// A buffer of the wrong size is refused before anything is read into it.
#[test]
fn read_into_needs_the_announced_size() {
    let fake = FakeServer::start(vec![Step::Send([found(4), b"data".to_vec()].concat())]);
    let response = filefetch::Fetch::new("127.0.0.1", fake.port, "file.bin")
        .open()
        .unwrap();
    let mut buf = [0u8; 3];
    match response.read_into(&mut buf) {
        Err(Error::InvalidOption {
            option: "buffer", ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(buf, [0; 3]);
}

/// The content an existing destination starts with; it must end with it too.
const PRECIOUS: &[u8] = b"precious, must survive";

type Script = Arc<dyn Fn(&mut TcpStream) + Send + Sync>;

/// Runs `script` as the server twice: once into an empty directory, once over an existing
/// file with overwriting allowed. Both must fail; the empty directory stays empty, the
/// existing file keeps its content and stays alone. Returns both errors.
fn fails_both_ways(script: Script, idle: Duration) -> [Error; 2] {
    let run = |overwrite: bool| {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("file.bin");
        let mut opts = FetchOptions::builder().idle_timeout(idle);
        if overwrite {
            std::fs::write(&dest, PRECIOUS).unwrap();
            opts = opts.output(&dest).overwrite(true);
        } else {
            opts = opts.output(out.path());
        }
        let opts = opts.build().unwrap();
        let script = script.clone();
        let fake = FakeServer::scripted(move |s| script(s));
        let err =
            fetch("127.0.0.1", fake.port, "dir/file.bin", &opts).expect_err("the fetch must fail");
        assert_eq!(fake.requested(), b"dir/file.bin");
        if overwrite {
            assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS, "{err:?}");
            assert_eq!(entries(out.path()), ["file.bin"], "{err:?}");
        } else {
            assert!(
                entries(out.path()).is_empty(),
                "{err:?} left {:?}",
                entries(out.path())
            );
        }
        err
    };
    [run(false), run(true)]
}

fn send(bytes: Vec<u8>) -> Script {
    Arc::new(move |s: &mut TcpStream| {
        let _ = s.write_all(&bytes);
    })
}

fn patient() -> Duration {
    Duration::from_secs(5)
}

#[test]
fn header_cut_at_every_offset() {
    for cut in 1..8 {
        let mut header = found(10);
        header.truncate(cut);
        for err in fails_both_ways(send(header), patient()) {
            assert!(
                matches!(err, Error::TruncatedHeader { received } if received == cut),
                "cut at {cut}: {err:?}"
            );
        }
    }
}

#[test]
fn reset_before_inside_and_after_the_header() {
    let before: Script = Arc::new(|s: &mut TcpStream| reset(s.try_clone().unwrap()));
    for err in fails_both_ways(before, patient()) {
        assert!(matches!(err, Error::ServerClosed), "{err:?}");
    }
    let inside: Script = Arc::new(|s: &mut TcpStream| {
        s.write_all(&found(10)[..5]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        reset(s.try_clone().unwrap());
    });
    for err in fails_both_ways(inside, patient()) {
        // The reset may overtake the bytes sent before it.
        assert!(
            matches!(
                err,
                Error::TruncatedHeader { received: 5 } | Error::ServerClosed
            ),
            "{err:?}"
        );
    }
    let in_body: Script = Arc::new(|s: &mut TcpStream| {
        let mut bytes = found(1 << 20);
        bytes.extend_from_slice(&[5u8; 1000]);
        s.write_all(&bytes).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        reset(s.try_clone().unwrap());
    });
    for err in fails_both_ways(in_body, patient()) {
        assert!(
            matches!(err, Error::Incomplete { received, expected: 1_048_576 } if received <= 1000),
            "{err:?}"
        );
    }
}

#[test]
fn every_bad_header_field() {
    let header = |magic: u16, kind: u8, status: u8, len: u32| {
        let mut h = magic.to_be_bytes().to_vec();
        h.extend_from_slice(&[kind, status]);
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(b"data");
        h
    };
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (header(0x0000, 2, 1, 4), DecodeError::Magic(0x0000)),
        (header(0x7E49, 2, 1, 4), DecodeError::Magic(0x7E49)),
        (header(0x497F, 2, 1, 4), DecodeError::Magic(0x497F)),
        (header(0xFFFF, 2, 1, 4), DecodeError::Magic(0xFFFF)),
        (
            header(0x497E, 0, 1, 4),
            DecodeError::Type {
                found: 0,
                expected: 2,
            },
        ),
        (
            header(0x497E, 1, 1, 4),
            DecodeError::Type {
                found: 1,
                expected: 2,
            },
        ),
        (
            header(0x497E, 3, 1, 4),
            DecodeError::Type {
                found: 3,
                expected: 2,
            },
        ),
        (
            header(0x497E, 0xFF, 1, 4),
            DecodeError::Type {
                found: 0xFF,
                expected: 2,
            },
        ),
        (header(0x497E, 2, 2, 4), DecodeError::Status(2)),
        (header(0x497E, 2, 0x80, 4), DecodeError::Status(0x80)),
        (header(0x497E, 2, 0xFF, 0), DecodeError::Status(0xFF)),
        (header(0x497E, 2, 0, 1), DecodeError::DataLength(1)),
        (
            header(0x497E, 2, 0, u32::MAX),
            DecodeError::DataLength(u32::MAX),
        ),
    ];
    for (bytes, want) in cases {
        for err in fails_both_ways(send(bytes), patient()) {
            assert!(
                matches!(&err, Error::MalformedResponse(got) if *got == want),
                "want {want:?}, got {err:?}"
            );
        }
    }
}

#[test]
fn more_bytes_than_data_length() {
    let empty_plus_one = {
        let mut b = found(0);
        b.push(b'!');
        b
    };
    let large_plus_one = {
        let mut b = found(1 << 20);
        b.extend_from_slice(&pattern((1 << 20) + 1));
        b
    };
    for (bytes, expected) in [(empty_plus_one, 0), (large_plus_one, 1 << 20)] {
        for err in fails_both_ways(send(bytes), patient()) {
            assert!(
                matches!(err, Error::ExcessData { expected: e } if e == expected),
                "{err:?}"
            );
        }
    }
    // The excess arrives on its own, a moment after the data.
    let late: Script = Arc::new(|s: &mut TcpStream| {
        let mut b = found(100);
        b.extend_from_slice(&[1u8; 100]);
        s.write_all(&b).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let _ = s.write_all(b"late");
    });
    for err in fails_both_ways(late, patient()) {
        assert!(
            matches!(err, Error::ExcessData { expected: 100 }),
            "{err:?}"
        );
    }
}

#[test]
fn stalls_inside_the_header_and_right_after_it() {
    let stall_after = |bytes: Vec<u8>| -> Script {
        Arc::new(move |s: &mut TcpStream| {
            s.write_all(&bytes).unwrap();
            std::thread::sleep(Duration::from_millis(1500));
        })
    };
    let short = Duration::from_millis(200);
    for err in fails_both_ways(stall_after(found(10)[..5].to_vec()), short) {
        assert!(err.is_timeout(), "{err:?}");
    }
    for err in fails_both_ways(stall_after(found(10)), short) {
        assert!(err.is_timeout(), "{err:?}");
        assert!(err.to_string().contains("0 of 10"), "{err}");
    }
}

/// A server that sends all the data and then neither closes nor sends more: the file is
/// whole, so it is kept once the idle timeout has passed.
#[test]
fn complete_data_without_a_close_is_kept() {
    let fake = FakeServer::scripted(|s| {
        let mut b = found(5);
        b.extend_from_slice(b"whole");
        s.write_all(&b).unwrap();
        std::thread::sleep(Duration::from_millis(1000));
    });
    let out = tempfile::tempdir().unwrap();
    let opts = FetchOptions::builder()
        .output(out.path())
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let got = fetch("127.0.0.1", fake.port, "w.txt", &opts).unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), b"whole");
    assert_eq!(entries(out.path()), ["w.txt"]);
}

/// An interrupt while waiting for the header, and one in the middle of the body, over an
/// existing file: nothing is left but that file, unchanged.
#[test]
fn interrupted_over_an_existing_file() {
    for with_data in [false, true] {
        let flag = Arc::new(AtomicBool::new(false));
        let raised = flag.clone();
        let script: Script = Arc::new(move |s: &mut TcpStream| {
            if with_data {
                let mut b = found(1000);
                b.extend_from_slice(&[3u8; 10]);
                s.write_all(&b).unwrap();
            }
            std::thread::sleep(Duration::from_millis(100));
            raised.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1500));
        });
        let fake = FakeServer::scripted(move |s| script(s));
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("keep.bin");
        std::fs::write(&dest, PRECIOUS).unwrap();
        let check = flag.clone();
        let opts = FetchOptions::builder()
            .output(&dest)
            .overwrite(true)
            .idle_timeout(Duration::from_secs(30))
            .interrupt(move || check.load(Ordering::SeqCst))
            .build()
            .unwrap();
        let err = fetch("127.0.0.1", fake.port, "f", &opts).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err:?}");
        assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS);
        assert_eq!(entries(out.path()), ["keep.bin"]);
    }
}
