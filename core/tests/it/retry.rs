//! Retries, against a fake server that fails its first connections in each retryable way
//! (a close before the header, a reset or a close inside the data, a stall past the idle
//! timeout) and serves the file on the next: enough retries give the exact file and nothing
//! else, too few give the last attempt's error and nothing at all. A server's answer is never
//! retried, the time limit bounds every attempt and wait, and an interrupt ends a wait.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use filefetch::config::MAX_DURATION;
use filefetch::{Error, ErrorKind, Fetch, FetchOptions, FetchOptionsBuilder, TimeoutPhase};

use crate::support::{entries, found, pattern, reset, NOT_FOUND};

/// Upper bound for any wait of these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// What the fake server does with one connection once it has read the request.
type Script = Box<dyn FnOnce(TcpStream) + Send>;

/// A fake server on 127.0.0.1 that plays `scripts[i]` on its i-th connection and closes any
/// further one after reading its request, counting them all.
struct Flaky {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<usize>>,
}

impl Flaky {
    fn start(scripts: Vec<Script>) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut scripts = scripts.into_iter();
            let mut connections = 0;
            let deadline = Instant::now() + PATIENCE;
            loop {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        connections += 1;
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(PATIENCE)).unwrap();
                        read_request(&mut stream);
                        if let Some(script) = scripts.next() {
                            script(stream);
                        }
                    }
                    // Told to stop once the client is done: the connections it made have all
                    // been accepted by now (the backlog is empty).
                    Err(e) if e.kind() == IoKind::WouldBlock => {
                        if stopped.load(Ordering::SeqCst) || Instant::now() > deadline {
                            return connections;
                        }
                        thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Flaky {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections the client made; call once the fetch is over.
    fn connections(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Flaky {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) {
    let mut header = [0u8; 5];
    if stream.read_exact(&mut header).is_ok() {
        let mut name = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
        let _ = stream.read_exact(&mut name);
    }
}

const SIZE: usize = 100_000;

/// A way for a connection to fail, by name.
type Failure = (&'static str, fn() -> Script);

/// The ways a connection fails that are worth another attempt.
fn failures() -> Vec<Failure> {
    vec![
        ("close before the header", close),
        ("reset inside the data", reset_mid_body),
        ("close inside the data", short_body),
        ("stall past the idle timeout", stall),
    ]
}

fn close() -> Script {
    Box::new(drop)
}

fn reset_mid_body() -> Script {
    Box::new(|mut s| {
        let mut bytes = found(SIZE as u32);
        bytes.extend_from_slice(&pattern(SIZE)[..1000]);
        let _ = s.write_all(&bytes);
        thread::sleep(Duration::from_millis(50));
        reset(s);
    })
}

fn short_body() -> Script {
    Box::new(|mut s| {
        let mut bytes = found(SIZE as u32);
        bytes.extend_from_slice(&pattern(SIZE)[..1000]);
        let _ = s.write_all(&bytes);
    })
}

/// Sends nothing until the client gives up and closes.
fn stall() -> Script {
    Box::new(|mut s| {
        let mut buf = [0u8; 64];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    })
}

fn serve() -> Script {
    Box::new(|mut s| {
        let mut bytes = found(SIZE as u32);
        bytes.extend_from_slice(&pattern(SIZE));
        let _ = s.write_all(&bytes);
    })
}

fn answer(bytes: &'static [u8]) -> Script {
    Box::new(move |mut s| {
        let _ = s.write_all(bytes);
    })
}

/// The retries reported: each failed attempt's error kind and number.
type Reported = Arc<Mutex<Vec<(ErrorKind, u32)>>>;

/// Options retrying `retries` times without much waiting, with an idle timeout short enough
/// for the stalls, and a record of the retries reported.
fn retrying(retries: u32) -> (FetchOptionsBuilder, Reported) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let builder = FetchOptions::builder()
        .retries(retries)
        .retry_delay(Duration::from_millis(10))
        .idle_timeout(Duration::from_millis(500))
        .on_retry(move |error, attempt, _| record.lock().unwrap().push((error.kind(), attempt)));
    (builder, seen)
}

fn the_kind_of(failure: &str) -> impl Fn(ErrorKind) -> bool + '_ {
    move |kind| match failure {
        "close before the header" => kind == ErrorKind::Protocol,
        // The reset may overtake the bytes sent before it, header included.
        "reset inside the data" => matches!(kind, ErrorKind::Incomplete | ErrorKind::Protocol),
        "close inside the data" => kind == ErrorKind::Incomplete,
        "stall past the idle timeout" => kind == ErrorKind::TimedOut,
        _ => unreachable!(),
    }
}

#[test]
fn each_retryable_failure_is_retried_until_the_file_arrives() {
    for (failure, script) in failures() {
        let fake = Flaky::start(vec![script(), script(), serve()]);
        let out = tempfile::tempdir().unwrap();
        let (builder, seen) = retrying(2);
        let options = builder.output(out.path()).build().unwrap();
        let fetched = Fetch::new("127.0.0.1", fake.port, "file.bin")
            .options(&options)
            .to_file()
            .unwrap_or_else(|e| panic!("{failure}: {e:?}"));
        assert_eq!(fetched.bytes, SIZE as u64, "{failure}");
        assert_eq!(
            std::fs::read(&fetched.path).unwrap(),
            pattern(SIZE),
            "{failure}"
        );
        assert_eq!(entries(out.path()), ["file.bin"], "{failure}");
        assert_eq!(fake.connections(), 3, "{failure}");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{failure}: {seen:?}");
        for (i, (kind, attempt)) in seen.iter().enumerate() {
            assert_eq!(*attempt as usize, i + 1, "{failure}");
            assert!(the_kind_of(failure)(*kind), "{failure}: {kind:?}");
        }
    }
}

#[test]
fn too_few_retries_give_the_failure_and_leave_nothing() {
    for (failure, script) in failures() {
        let fake = Flaky::start(vec![script(), script(), serve()]);
        let out = tempfile::tempdir().unwrap();
        let (builder, seen) = retrying(1);
        let options = builder.output(out.path()).build().unwrap();
        let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
            .options(&options)
            .to_file()
            .expect_err(failure);
        assert!(the_kind_of(failure)(err.kind()), "{failure}: {err:?}");
        assert!(
            entries(out.path()).is_empty(),
            "{failure}: {:?}",
            entries(out.path())
        );
        assert_eq!(fake.connections(), 2, "{failure}");
        assert_eq!(seen.lock().unwrap().len(), 1, "{failure}");
    }
}

/// Different failures in turn: all are retried, and the error returned is the last one's.
#[test]
fn the_error_is_the_last_attempts() {
    let fake = Flaky::start(vec![close(), stall(), short_body(), serve()]);
    let out = tempfile::tempdir().unwrap();
    let (builder, _) = retrying(2);
    let options = builder.output(out.path()).build().unwrap();
    let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
        .options(&options)
        .to_file()
        .unwrap_err();
    assert!(
        matches!(err, Error::Incomplete { received: 1000, expected } if expected == SIZE as u64),
        "{err:?}"
    );
    assert!(entries(out.path()).is_empty());
    assert_eq!(fake.connections(), 3);
}

/// A server's answer is the same the next time: no such file and a malformed header are
/// final at once.
#[test]
fn answers_are_not_retried() {
    const BAD_MAGIC: &[u8] = &[0x12, 0x34, 2, 1, 0, 0, 0, 1, 0];
    for (bytes, kind) in [
        (&NOT_FOUND[..], ErrorKind::NotFound),
        (BAD_MAGIC, ErrorKind::Protocol),
    ] {
        let fake = Flaky::start(vec![answer(bytes), serve()]);
        let out = tempfile::tempdir().unwrap();
        let (builder, seen) = retrying(3);
        let options = builder.output(out.path()).build().unwrap();
        let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
            .options(&options)
            .to_file()
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{err:?}");
        assert!(entries(out.path()).is_empty());
        assert_eq!(fake.connections(), 1, "{kind:?}");
        assert!(seen.lock().unwrap().is_empty());
    }
}

#[test]
fn a_refused_connection_is_retried() {
    // A port that was free a moment ago and has no listener now.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (builder, seen) = retrying(2);
    let options = builder.retry_delay(Duration::ZERO).build().unwrap();
    let err = filefetch::fetch_bytes("127.0.0.1", port, "f", &options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err:?}");
    assert_eq!(
        *seen.lock().unwrap(),
        [(ErrorKind::Unreachable, 1), (ErrorKind::Unreachable, 2)]
    );
}

/// `max_time` bounds all the attempts and the waits between them: a server that always
/// closes, a hundred retries asked for, and the fetch ends after the few that fit.
#[test]
fn the_time_limit_bounds_all_attempts() {
    let fake = Flaky::start(vec![]);
    let (builder, seen) = retrying(100);
    let options = builder
        .retry_delay(Duration::from_millis(100))
        .max_time(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = filefetch::fetch_bytes("127.0.0.1", fake.port, "f", &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ServerClosed
                | Error::Timeout {
                    phase: TimeoutPhase::Total { .. }
                }
        ),
        "{err:?}"
    );
    let retries = seen.lock().unwrap().len();
    assert_eq!(fake.connections(), retries + 1);
    // 0.1 + 0.2 + 0.4 + 0.8 s of waiting (less up to a quarter) already passes the limit.
    assert!(retries < 6, "{retries} retries");
}

/// The time limit expiring is itself final: the limit is on the whole fetch.
#[test]
fn the_time_limit_expiring_is_not_retried() {
    let fake = Flaky::start(vec![stall(), serve()]);
    let (builder, seen) = retrying(5);
    let options = builder
        .idle_timeout(Duration::from_secs(10))
        .max_time(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = filefetch::fetch_bytes("127.0.0.1", fake.port, "f", &options).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::Total { .. }
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.connections(), 1);
    assert!(seen.lock().unwrap().is_empty());
}

/// An interrupt during the wait before a retry ends the fetch at once (the wait is an hour).
#[test]
fn an_interrupt_ends_the_wait() {
    let fake = Flaky::start(vec![close(), serve()]);
    let out = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (raise, check) = (stop.clone(), stop.clone());
    let options = FetchOptions::builder()
        .output(out.path())
        .retries(1)
        .retry_delay(Duration::from_secs(3600))
        .on_retry(move |_, _, _| raise.store(true, Ordering::SeqCst))
        .interrupt(move || check.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let port = fake.port;
    thread::spawn(move || {
        let _ = tx.send(
            Fetch::new("127.0.0.1", port, "file.bin")
                .options(&options)
                .to_file(),
        );
    });
    let result = rx
        .recv_timeout(PATIENCE)
        .expect("the wait was not interrupted");
    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert!(stop.load(Ordering::SeqCst));
    assert!(entries(out.path()).is_empty());
    assert_eq!(fake.connections(), 1);
}

/// A destination that appears while the fetch waits to retry is left alone.
#[test]
fn the_destination_is_checked_before_each_attempt() {
    let fake = Flaky::start(vec![short_body(), serve()]);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("file.bin");
    let mine = dest.clone();
    let options = FetchOptions::builder()
        .output(out.path())
        .retries(1)
        .retry_delay(Duration::ZERO)
        .on_retry(move |_, _, _| std::fs::write(&mine, b"mine").unwrap())
        .build()
        .unwrap();
    let err = Fetch::new("127.0.0.1", fake.port, "file.bin")
        .options(&options)
        .to_file()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DestinationExists, "{err:?}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"mine");
    assert_eq!(entries(out.path()), ["file.bin"]);
    assert_eq!(fake.connections(), 1);
}

/// Into memory, each attempt starts from an empty vector, and the progress from 0.
#[test]
fn to_vec_starts_again_from_nothing() {
    let fake = Flaky::start(vec![short_body(), reset_mid_body(), serve()]);
    let (builder, _) = retrying(2);
    let options = builder.build().unwrap();
    let mut reports = Vec::new();
    let data = Fetch::new("127.0.0.1", fake.port, "f")
        .options(&options)
        .progress(|received, total| {
            reports.push((received, total));
            ControlFlow::Continue(())
        })
        .to_vec()
        .unwrap();
    assert_eq!(data, pattern(SIZE));
    let total = SIZE as u64;
    // From 0 on every attempt that got a header (the reset one may not have).
    let starts = reports.iter().filter(|r| **r == (0, total)).count();
    assert!((2..=3).contains(&starts), "{reports:?}");
    assert_eq!(reports.last(), Some(&(total, total)));
    assert_eq!(fake.connections(), 3);
}

/// Into a writer, an attempt is retried only while nothing has reached the writer.
#[test]
fn to_writer_retries_only_before_any_data() {
    let fake = Flaky::start(vec![close(), stall(), serve()]);
    let (builder, _) = retrying(2);
    let options = builder.build().unwrap();
    let mut out = Vec::new();
    let size = Fetch::new("127.0.0.1", fake.port, "f")
        .options(&options)
        .to_writer(&mut out)
        .unwrap();
    assert_eq!(size, SIZE as u64);
    assert_eq!(out, pattern(SIZE));
    assert_eq!(fake.connections(), 3);

    let fake = Flaky::start(vec![short_body(), serve()]);
    let mut out = Vec::new();
    let err = Fetch::new("127.0.0.1", fake.port, "f")
        .options(&options)
        .to_writer(&mut out)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incomplete, "{err:?}");
    assert_eq!(out, pattern(SIZE)[..1000]);
    assert_eq!(fake.connections(), 1);
}

/// `open` retries up to the header; once the size is known a failure is final.
#[test]
fn open_retries_up_to_the_header() {
    let fake = Flaky::start(vec![close(), serve()]);
    let (builder, _) = retrying(1);
    let options = builder.build().unwrap();
    let response = Fetch::new("127.0.0.1", fake.port, "f")
        .options(&options)
        .open()
        .unwrap();
    let mut buf = vec![0u8; response.len() as usize];
    response.read_into(&mut buf).unwrap();
    assert_eq!(buf, pattern(SIZE));
    assert_eq!(fake.connections(), 2);

    let fake = Flaky::start(vec![short_body(), serve()]);
    let response = Fetch::new("127.0.0.1", fake.port, "f")
        .options(&options)
        .open()
        .unwrap();
    let mut buf = vec![0u8; response.len() as usize];
    let err = response.read_into(&mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incomplete, "{err:?}");
    assert_eq!(fake.connections(), 1);
}

#[test]
fn retry_settings_are_checked() {
    let defaults = FetchOptions::new();
    assert_eq!(defaults.retries(), 0);
    assert_eq!(defaults.retry_delay(), Duration::from_millis(250));
    let options = FetchOptions::builder()
        .retries(100)
        .retry_delay(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(options.retries(), 100);
    assert_eq!(options.retry_delay(), Duration::ZERO);
    for (builder, name) in [
        (FetchOptions::builder().retries(101), "retries"),
        (
            FetchOptions::builder().retry_delay(MAX_DURATION + Duration::from_secs(1)),
            "retry_delay",
        ),
    ] {
        match builder.build() {
            Err(Error::InvalidOption { option, .. }) => assert_eq!(option, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}
