//! The client on tokio: the same files, errors, limits, checks and retries as the blocking
//! client, and what only a future can do: be dropped at any await point (mid-body, while
//! waiting to retry) leaving nothing behind, and run by the hundred on one thread.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filefetch::protocol::DecodeError;
use filefetch::{
    fetch_async, fetch_bytes_async, fetch_to_async_writer, Error, ErrorKind, Fetch, FetchOptions,
    FetchOptionsBuilder, Sha256Digest, TimeoutPhase,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use crate::support::{entries, found, pattern, FakeServer, Step, TestServer};

/// Upper bound for any wait of these tests; reached only when something is broken.
const PATIENCE: Duration = Duration::from_secs(30);

/// The content an existing destination starts with; it must end with it too.
const PRECIOUS: &[u8] = b"precious, must survive";

/// Options writing into `dir`, patient enough for a loaded machine.
fn into(dir: &Path) -> FetchOptionsBuilder {
    FetchOptions::builder()
        .output(dir)
        .idle_timeout(Duration::from_secs(10))
}

/// Checks that `dir` holds exactly `expected` once a fetch is over or dropped. The temporary
/// file is deleted as the fetch ends; on Windows a write still in flight on a blocking
/// thread holds the file open, which keeps its name a moment longer, so there it is waited
/// for (boundedly).
async fn holds(dir: &Path, expected: &[&str]) {
    let patience = if cfg!(windows) {
        Duration::from_secs(5)
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + patience;
    loop {
        let now = entries(dir);
        if now == expected || Instant::now() >= deadline {
            assert_eq!(now, expected, "in {}", dir.display());
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn files_arrive_byte_for_byte() {
    let server = TestServer::start();
    let port = server.port();
    for size in [0usize, 1, (3 << 20) + 7] {
        let name = format!("dir/f{size}.bin");
        let data = pattern(size);
        server.put(&name, &data);

        let out = tempfile::tempdir().unwrap();
        let options = into(out.path()).sha256(true).build().unwrap();
        let fetched = fetch_async("127.0.0.1", port, &name, &options)
            .await
            .unwrap();
        assert_eq!(fetched.path, out.path().join(format!("f{size}.bin")));
        assert_eq!(fetched.bytes, size as u64);
        assert_eq!(fetched.sha256, Some(Sha256Digest::of(&data)));
        assert!(std::fs::read(&fetched.path).unwrap() == data, "{size}");
        holds(out.path(), &[format!("f{size}.bin").as_str()]).await;

        // Synced to disk, under another name.
        let dest = out.path().join("synced");
        let options = into(out.path()).output(&dest).fsync(true).build().unwrap();
        let fetched = fetch_async("127.0.0.1", port, &name, &options)
            .await
            .unwrap();
        assert_eq!(fetched.path, dest);
        assert_eq!(fetched.sha256, None);
        assert!(std::fs::read(&dest).unwrap() == data, "{size}");

        let got = fetch_bytes_async("127.0.0.1", port, &name, &options)
            .await
            .unwrap();
        assert!(got == data, "{size}");

        let mut written = Vec::new();
        let n = Fetch::new("127.0.0.1", port, &name)
            .options(&options)
            .expect_sha256(Sha256Digest::of(&data))
            .to_async_writer(&mut written)
            .await
            .unwrap();
        assert_eq!(n, size as u64);
        assert!(written == data, "{size}");

        // Into one of tokio's files, flushed by the fetch.
        let path = out.path().join("by-writer");
        let mut file = tokio::fs::File::create(&path).await.unwrap();
        let n = fetch_to_async_writer("127.0.0.1", port, &name, &options, &mut file)
            .await
            .unwrap();
        assert_eq!(n, size as u64);
        drop(file);
        assert!(std::fs::read(&path).unwrap() == data, "{size}");
    }
}

/// The progress callback sees 0 first and the total last; breaking stops the fetch with
/// nothing left.
#[tokio::test]
async fn progress_is_reported_and_can_stop_the_fetch() {
    let server = TestServer::start();
    let data = pattern(1 << 20);
    server.put("p.bin", &data);
    let out = tempfile::tempdir().unwrap();
    let options = into(out.path()).build().unwrap();
    let mut seen = Vec::new();
    let got = Fetch::new("127.0.0.1", server.port(), "p.bin")
        .options(&options)
        .progress(|received, total| {
            seen.push((received, total));
            ControlFlow::Continue(())
        })
        .to_vec_async()
        .await
        .unwrap();
    assert!(got == data);
    let total = data.len() as u64;
    assert_eq!(seen.first(), Some(&(0, total)));
    assert_eq!(seen.last(), Some(&(total, total)));
    assert!(seen.windows(2).all(|w| w[0].0 <= w[1].0), "{seen:?}");

    let err = Fetch::new("127.0.0.1", server.port(), "p.bin")
        .options(&options)
        .progress(|received, _| {
            if received > 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .to_file_async()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Aborted), "{err:?}");
    holds(out.path(), &[]).await;
}

#[tokio::test]
async fn a_missing_name_creates_nothing() {
    let server = TestServer::start();
    let out = tempfile::tempdir().unwrap();
    let options = into(out.path()).build().unwrap();
    let err = fetch_async("127.0.0.1", server.port(), "nope.txt", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { name } if name == "nope.txt"),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = fetch_bytes_async("127.0.0.1", server.port(), "nope.txt", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    holds(out.path(), &[]).await;
}

/// The host as a name, in brackets, or refusing: every address of the host is tried, and
/// the last one's failure is the error.
#[tokio::test]
async fn hosts_are_resolved_and_refusals_reported() {
    let server = TestServer::start();
    server.put("h.txt", b"host");
    let options = FetchOptions::new();
    for host in ["localhost", "[127.0.0.1]", "127.0.0.1"] {
        let got = fetch_bytes_async(host, server.port(), "h.txt", &options)
            .await
            .unwrap_or_else(|e| panic!("{host}: {e:?}"));
        assert_eq!(got, b"host", "{host}");
    }
    // A port that was free a moment ago and has no listener now.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let err = fetch_bytes_async("127.0.0.1", port, "h.txt", &options)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Unreachable);
}

/// Whether an error is the one expected.
type Expected = fn(&Error) -> bool;

/// Each broken response gives the blocking client's error, and no file.
#[tokio::test]
async fn broken_responses_give_their_errors_and_no_file() {
    let short_body = [found(1000), vec![7u8; 400]].concat();
    let excess = [found(4), b"abcdEXTRA".to_vec()].concat();
    let cases: Vec<(Vec<u8>, Expected)> = vec![
        (vec![], |e| matches!(e, Error::ServerClosed)),
        (vec![0x49, 0x7E, 2], |e| {
            matches!(e, Error::TruncatedHeader { received: 3 })
        }),
        (vec![0x12, 0x34, 2, 1, 0, 0, 0, 1, 0], |e| {
            matches!(e, Error::MalformedResponse(DecodeError::Magic(0x1234)))
        }),
        (vec![0x49, 0x7E, 2, 0, 0, 0, 0, 9], |e| {
            matches!(e, Error::MalformedResponse(DecodeError::DataLength(9)))
        }),
        (excess, |e| matches!(e, Error::ExcessData { expected: 4 })),
        (short_body, |e| {
            matches!(
                e,
                Error::Incomplete {
                    received: 400,
                    expected: 1000
                }
            )
        }),
    ];
    for (bytes, expected) in cases {
        let fake = FakeServer::start(vec![Step::Send(bytes.clone())]);
        let out = tempfile::tempdir().unwrap();
        let options = into(out.path()).build().unwrap();
        let err = fetch_async("127.0.0.1", fake.port, "dir/file.bin", &options)
            .await
            .unwrap_err();
        assert!(expected(&err), "{bytes:?}: {err:?}");
        assert_eq!(fake.requested(), b"dir/file.bin");
        holds(out.path(), &[]).await;
    }
}

/// A header announcing 1 MiB, then 50 bytes every 50 ms (1 kB/s) for up to 10 s: every read
/// is within the idle timeout, so only a limit on the whole fetch or on its rate ends it.
fn dripping() -> FakeServer {
    FakeServer::scripted(|s| {
        use std::io::Write;
        let _ = s.write_all(&found(1 << 20));
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(50));
            if s.write_all(&[b'x'; 50]).is_err() {
                return;
            }
        }
    })
}

#[tokio::test]
async fn every_timeout_phase() {
    // Nothing at all: the response header is waited for.
    let fake = FakeServer::start(vec![Step::Pause(Duration::from_secs(2))]);
    let out = tempfile::tempdir().unwrap();
    let quick = |b: FetchOptionsBuilder| b.idle_timeout(Duration::from_millis(200));
    let options = quick(into(out.path())).build().unwrap();
    let err = fetch_async("127.0.0.1", fake.port, "f", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::Response
            }
        ),
        "{err:?}"
    );
    drop(fake);

    // A stall inside the data.
    let body = [found(100), vec![1u8; 10]].concat();
    let fake = FakeServer::start(vec![Step::Send(body), Step::Pause(Duration::from_secs(2))]);
    let err = fetch_async("127.0.0.1", fake.port, "f", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                phase: TimeoutPhase::Data {
                    received: 10,
                    expected: 100
                }
            }
        ),
        "{err:?}"
    );
    holds(out.path(), &[]).await;
    drop(fake);

    // A trickle: cut by the limit on the whole fetch, and by the minimum rate.
    let limit = Duration::from_millis(500);
    for (builder, into_file) in [
        (into(out.path()).max_time(limit), true),
        (into(out.path()).max_time(limit), false),
        (into(out.path()).min_rate(5000, limit), true),
        (into(out.path()).min_rate(5000, limit), false),
    ] {
        let options = builder.build().unwrap();
        let fake = dripping();
        let err = if into_file {
            fetch_async("127.0.0.1", fake.port, "f", &options)
                .await
                .unwrap_err()
        } else {
            fetch_bytes_async("127.0.0.1", fake.port, "f", &options)
                .await
                .unwrap_err()
        };
        match (&err, options.max_time()) {
            (
                Error::Timeout {
                    phase: TimeoutPhase::Total { limit: got },
                },
                Some(max),
            ) => assert_eq!(*got, max),
            (
                Error::Timeout {
                    phase: TimeoutPhase::Rate { bytes_per_sec, .. },
                },
                None,
            ) => assert_eq!(*bytes_per_sec, 5000),
            other => panic!("{other:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::TimedOut);
        holds(out.path(), &[]).await;
    }
}

/// A listener whose backlog is full leaves further connection attempts pending: the
/// connect timeout ends the wait, and names the address.
// Linux drops the SYN when the backlog is full; Windows and the BSDs refuse it at once.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn connect_timeout_names_the_address() {
    use socket2::{Domain, Socket, Type};
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&any.into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let pending: Vec<Socket> = (0..4)
        .map(|_| {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.set_nonblocking(true).unwrap();
            let _ = s.connect(&addr.into());
            s
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let options = FetchOptions::builder()
        .connect_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = fetch_bytes_async("127.0.0.1", addr.port(), "f", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Timeout { phase: TimeoutPhase::Connect { addr: a } } if a == addr),
        "{err:?}"
    );
    drop(pending);
}

/// A DataLength above the maximum size fails from the header, before any data is read; at
/// the maximum the file arrives whole.
#[tokio::test]
async fn max_size_is_checked_against_the_header() {
    let body = pattern(1000);
    let serve = || FakeServer::start(vec![Step::Send([found(1000), body.clone()].concat())]);
    let out = tempfile::tempdir().unwrap();
    let small = into(out.path()).max_size(999).build().unwrap();
    let fake = serve();
    let err = fetch_async("127.0.0.1", fake.port, "f", &small)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                size: 1000,
                limit: 999
            }
        ),
        "{err:?}"
    );
    holds(out.path(), &[]).await;
    drop(fake);
    let fake = serve();
    let err = fetch_bytes_async("127.0.0.1", fake.port, "f", &small)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge, "{err:?}");
    drop(fake);

    let exact = small.to_builder().max_size(1000).build().unwrap();
    let fake = serve();
    let fetched = fetch_async("127.0.0.1", fake.port, "f", &exact)
        .await
        .unwrap();
    assert_eq!(std::fs::read(fetched.path).unwrap(), body);
}

/// The expected digest lets the file land; another keeps nothing, replaces nothing, and
/// returns no data.
#[tokio::test]
async fn sha256_checked_as_the_data_arrives() {
    let server = TestServer::start();
    let data = pattern((1 << 20) + 3);
    server.put("d.bin", &data);
    let port = server.port();
    let right = Sha256Digest::of(&data);
    let wrong = Sha256Digest::of(b"something else");

    let out = tempfile::tempdir().unwrap();
    let options = into(out.path()).build().unwrap();
    let fetched = Fetch::new("127.0.0.1", port, "d.bin")
        .options(&options)
        .expect_sha256(right)
        .to_file_async()
        .await
        .unwrap();
    assert_eq!(fetched.sha256, Some(right));
    assert!(std::fs::read(&fetched.path).unwrap() == data);

    let err = Fetch::new("127.0.0.1", port, "d.bin")
        .options(&options)
        .expect_sha256(wrong)
        .to_vec_async()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::ChecksumMismatch { expected, actual } if expected == wrong && actual == right),
        "{err:?}"
    );

    for overwrite in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("d.bin");
        let mut builder = into(out.path()).retries(3);
        if overwrite {
            std::fs::write(&dest, PRECIOUS).unwrap();
            builder = builder.output(&dest).overwrite(true);
        }
        let options = builder.build().unwrap();
        let err = Fetch::new("127.0.0.1", port, "d.bin")
            .options(&options)
            .expect_sha256(wrong)
            .to_file_async()
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ChecksumMismatch, "{err:?}");
        if overwrite {
            assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS);
            holds(out.path(), &["d.bin"]).await;
        } else {
            holds(out.path(), &[]).await;
        }
    }
}

#[tokio::test]
async fn an_existing_destination_is_replaced_only_when_asked() {
    let server = TestServer::start();
    server.put("keep.bin", b"from the server");
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("keep.bin");
    std::fs::write(&dest, PRECIOUS).unwrap();
    let options = into(out.path()).build().unwrap();
    let err = fetch_async("127.0.0.1", server.port(), "keep.bin", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::DestinationExists { path } if *path == dest),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS);
    holds(out.path(), &["keep.bin"]).await;

    let options = into(out.path()).overwrite(true).build().unwrap();
    let fetched = fetch_async("127.0.0.1", server.port(), "keep.bin", &options)
        .await
        .unwrap();
    assert_eq!(fetched.path, dest);
    assert_eq!(std::fs::read(&dest).unwrap(), b"from the server");
    holds(out.path(), &["keep.bin"]).await;
}

/// What a flaky server does with one connection, once it has read the request.
#[derive(Clone, Copy, Debug)]
enum Turn {
    /// Closes before the header.
    Close,
    /// Sends the header and half the data, then closes.
    Half,
    /// Sends the whole file.
    Serve,
}

const FLAKY_SIZE: usize = 200_000;

/// A server on the test's own runtime that plays `turns` on its connections in order (the
/// last turn on any further one), serving [`pattern`] of [`FLAKY_SIZE`] bytes; it counts the
/// connections.
async fn flaky(turns: Vec<Turn>) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        let data = [found(FLAKY_SIZE as u32), pattern(FLAKY_SIZE)].concat();
        while let Ok((mut stream, _)) = listener.accept().await {
            let index = counted.fetch_add(1, Ordering::SeqCst);
            let turn = turns[index.min(turns.len() - 1)];
            let mut request = [0u8; 5];
            if stream.read_exact(&mut request).await.is_err() {
                continue;
            }
            let mut name = vec![0u8; usize::from(u16::from_be_bytes([request[3], request[4]]))];
            let _ = stream.read_exact(&mut name).await;
            let reply = match turn {
                Turn::Close => &data[..0],
                Turn::Half => &data[..8 + FLAKY_SIZE / 2],
                Turn::Serve => &data[..],
            };
            let _ = stream.write_all(reply).await;
        }
    });
    (port, connections)
}

/// Options retrying `retries` times at once, recording each retry's error kind.
fn retrying(retries: u32) -> (FetchOptionsBuilder, Arc<Mutex<Vec<ErrorKind>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let builder = FetchOptions::builder()
        .retries(retries)
        .retry_delay(Duration::from_millis(10))
        .on_retry(move |error, _, _| record.lock().unwrap().push(error.kind()));
    (builder, seen)
}

#[tokio::test]
async fn failed_attempts_are_retried_from_nothing() {
    let (port, connections) = flaky(vec![Turn::Close, Turn::Half, Turn::Serve]).await;
    let out = tempfile::tempdir().unwrap();
    let (builder, seen) = retrying(2);
    let options = builder.output(out.path()).build().unwrap();
    let fetched = fetch_async("127.0.0.1", port, "file.bin", &options)
        .await
        .unwrap();
    assert!(std::fs::read(&fetched.path).unwrap() == pattern(FLAKY_SIZE));
    holds(out.path(), &["file.bin"]).await;
    assert_eq!(connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        [ErrorKind::Protocol, ErrorKind::Incomplete]
    );

    // One retry too few: the last attempt's error, and nothing kept.
    let (port, connections) = flaky(vec![Turn::Close, Turn::Half, Turn::Serve]).await;
    let (builder, _) = retrying(1);
    let options = builder.output(out.path()).overwrite(true).build().unwrap();
    let err = fetch_async("127.0.0.1", port, "file.bin", &options)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Incomplete { received, expected } if received == FLAKY_SIZE as u64 / 2 && expected == FLAKY_SIZE as u64),
        "{err:?}"
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    holds(out.path(), &["file.bin"]).await;
    assert!(std::fs::read(&fetched.path).unwrap() == pattern(FLAKY_SIZE));

    // Into memory.
    let (port, connections) = flaky(vec![Turn::Half, Turn::Close, Turn::Serve]).await;
    let (builder, _) = retrying(2);
    let got = fetch_bytes_async("127.0.0.1", port, "f", &builder.build().unwrap())
        .await
        .unwrap();
    assert!(got == pattern(FLAKY_SIZE));
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

/// Into a writer, an attempt is retried only while nothing has reached the writer.
#[tokio::test]
async fn a_writer_is_retried_only_before_any_data() {
    let (builder, _) = retrying(2);
    let options = builder.build().unwrap();
    let (port, connections) = flaky(vec![Turn::Close, Turn::Serve]).await;
    let mut out = Vec::new();
    let n = fetch_to_async_writer("127.0.0.1", port, "f", &options, &mut out)
        .await
        .unwrap();
    assert_eq!(n, FLAKY_SIZE as u64);
    assert!(out == pattern(FLAKY_SIZE));
    assert_eq!(connections.load(Ordering::SeqCst), 2);

    let (port, connections) = flaky(vec![Turn::Half, Turn::Serve]).await;
    let mut out = Vec::new();
    let err = fetch_to_async_writer("127.0.0.1", port, "f", &options, &mut out)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Incomplete, "{err:?}");
    assert!(out == pattern(FLAKY_SIZE)[..FLAKY_SIZE / 2]);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

/// The time limit bounds every attempt and wait; the interrupt check, and dropping the
/// future, end the wait before a retry at once.
#[tokio::test]
async fn waits_between_attempts_end_on_time() {
    let (port, connections) = flaky(vec![Turn::Close]).await;
    let (builder, seen) = retrying(100);
    let options = builder
        .retry_delay(Duration::from_millis(100))
        .max_time(Duration::from_secs(1))
        .build()
        .unwrap();
    let err = fetch_bytes_async("127.0.0.1", port, "f", &options)
        .await
        .unwrap_err();
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
    assert_eq!(connections.load(Ordering::SeqCst), retries + 1);
    // 0.1 + 0.2 + 0.4 + 0.8 s of waiting (less up to a quarter) already passes the limit.
    assert!(retries < 6, "{retries} retries");

    let out = tempfile::tempdir().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (raise, check) = (stop.clone(), stop.clone());
    let hour = into(out.path())
        .retries(1)
        .retry_delay(Duration::from_secs(3600))
        .build()
        .unwrap();
    let options = hour
        .to_builder()
        .on_retry(move |_, _, _| raise.store(true, Ordering::SeqCst))
        .interrupt(move || check.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let (port, connections) = flaky(vec![Turn::Close, Turn::Serve]).await;
    let fetch = fetch_async("127.0.0.1", port, "file.bin", &options);
    let result = tokio::time::timeout(PATIENCE, fetch)
        .await
        .expect("the wait was not interrupted");
    assert!(matches!(result, Err(Error::Interrupted)), "{result:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    let (port, connections) = flaky(vec![Turn::Half, Turn::Serve]).await;
    let dropped = tokio::time::timeout(
        Duration::from_millis(500),
        fetch_async("127.0.0.1", port, "file.bin", &hour),
    )
    .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    holds(out.path(), &[]).await;
}

/// The interrupt check stops a stalled download, as it does the blocking client's.
#[tokio::test]
async fn the_interrupt_check_stops_a_stalled_download() {
    let body = [found(100), vec![1u8; 10]].concat();
    let fake = FakeServer::start(vec![Step::Send(body), Step::Pause(Duration::from_secs(3))]);
    let out = tempfile::tempdir().unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let check = flag.clone();
    let options = into(out.path())
        .idle_timeout(PATIENCE)
        .interrupt(move || check.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let raise = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        flag.store(true, Ordering::SeqCst);
    });
    let err = fetch_async("127.0.0.1", fake.port, "file.bin", &options)
        .await
        .unwrap_err();
    raise.await.unwrap();
    assert!(matches!(err, Error::Interrupted), "{err:?}");
    holds(out.path(), &[]).await;
}

/// A server that sends the header of 1 MiB and half the data, then stalls (3 s at most).
fn half_then_stall() -> FakeServer {
    let half = [found(1 << 20), pattern(1 << 19)].concat();
    FakeServer::start(vec![Step::Send(half), Step::Pause(Duration::from_secs(3))])
}

/// A progress callback that, once half the data has arrived, sends what `dir` holds then.
fn on_half(
    dir: PathBuf,
) -> (
    impl FnMut(u64, u64) -> ControlFlow<()> + Send,
    oneshot::Receiver<Vec<String>>,
) {
    let (tx, rx) = oneshot::channel();
    let mut tx = Some(tx);
    let progress = move |received: u64, total: u64| {
        if received >= total / 2 {
            if let Some(tx) = tx.take() {
                let _ = tx.send(entries(&dir));
            }
        }
        ControlFlow::Continue(())
    };
    (progress, rx)
}

/// Checks what `dir` held mid-transfer: the destination's temporary file, and `also`.
fn only_a_temporary_file_and(held: &[String], also: &[&str]) {
    let temporary: Vec<&String> = held
        .iter()
        .filter(|name| !also.contains(&name.as_str()))
        .collect();
    assert_eq!(temporary.len(), 1, "{held:?}");
    assert!(
        temporary[0].starts_with(".filefetch-") && temporary[0].ends_with(".part"),
        "{held:?}"
    );
}

/// Dropping the future mid-body (a timeout around it, or the end of a `select!`) removes
/// the temporary file at once; no destination appears, an existing one stays as it was.
#[tokio::test]
async fn a_dropped_fetch_leaves_nothing_behind() {
    for (overwrite, by_timeout) in [(false, false), (true, false), (false, true), (true, true)] {
        let fake = half_then_stall();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("file.bin");
        let mut builder = into(out.path()).idle_timeout(PATIENCE);
        if overwrite {
            std::fs::write(&dest, PRECIOUS).unwrap();
            builder = builder.output(&dest).overwrite(true);
        }
        let options = builder.build().unwrap();
        let (progress, half) = on_half(out.path().to_path_buf());
        let fetch = Fetch::new("127.0.0.1", fake.port, "file.bin")
            .options(&options)
            .progress(progress)
            .to_file_async();
        let held = if by_timeout {
            // The data stops at half: the timeout fires while the fetch waits for more.
            let timed_out = tokio::time::timeout(Duration::from_secs(1), fetch).await;
            assert!(timed_out.is_err(), "{timed_out:?}");
            half.await.expect("half the data arrived")
        } else {
            let mut fetch = std::pin::pin!(fetch);
            tokio::select! {
                done = &mut fetch => panic!("the fetch ended: {done:?}"),
                held = half => held.unwrap(),
            }
        };
        let also: &[&str] = if overwrite { &["file.bin"] } else { &[] };
        only_a_temporary_file_and(&held, also);
        holds(out.path(), also).await;
        if overwrite {
            assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS);
        }
    }
}

/// An aborted task is a dropped future: a spawned fetch (owning everything it uses) stops
/// where it is, and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_task_leaves_nothing_behind() {
    let fake = half_then_stall();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("file.bin");
    std::fs::write(&dest, PRECIOUS).unwrap();
    let options = into(out.path())
        .output(&dest)
        .overwrite(true)
        .idle_timeout(PATIENCE)
        .build()
        .unwrap();
    let (progress, half) = on_half(out.path().to_path_buf());
    let task = tokio::spawn(
        Fetch::new_owned("127.0.0.1", fake.port, String::from("file.bin"))
            .options_owned(options)
            .progress(progress)
            .to_file_async(),
    );
    let held = tokio::time::timeout(PATIENCE, half)
        .await
        .expect("half the data arrived in time")
        .unwrap();
    only_a_temporary_file_and(&held, &["file.bin"]);
    task.abort();
    let ended = task.await.unwrap_err();
    assert!(ended.is_cancelled(), "{ended:?}");
    holds(out.path(), &["file.bin"]).await;
    assert_eq!(std::fs::read(&dest).unwrap(), PRECIOUS);
}

/// A hundred fetches from core's own server at once, on a runtime with a single thread:
/// every file arrives whole, into a file or memory.
#[tokio::test]
async fn a_hundred_at_once_on_one_thread() {
    assert_eq!(
        tokio::runtime::Handle::current().runtime_flavor(),
        tokio::runtime::RuntimeFlavor::CurrentThread
    );
    let server = TestServer::start();
    let files: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            let data = pattern(1 + i * 997);
            let name = format!("f{i:03}.bin");
            server.put(&name, &data);
            (name, data)
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let options = into(out.path()).build().unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (name, data)) in files.iter().cloned().enumerate() {
        let fetch =
            Fetch::new_owned("127.0.0.1", server.port(), name).options_owned(options.clone());
        if i % 2 == 0 {
            let path = out.path().join(format!("f{i:03}.bin"));
            tasks.spawn(async move {
                let fetched = fetch.to_file_async().await.unwrap();
                assert_eq!(fetched.path, path);
                assert!(std::fs::read(&path).unwrap() == data, "{i}");
            });
        } else {
            tasks.spawn(async move {
                assert!(fetch.to_vec_async().await.unwrap() == data, "{i}");
            });
        }
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap();
        done += 1;
    }
    assert_eq!(done, 100);
    let landed: Vec<String> = (0..100)
        .step_by(2)
        .map(|i| format!("f{i:03}.bin"))
        .collect();
    assert_eq!(entries(out.path()), landed);
}

/// A server that answers none of `count` requests before all of them have arrived (within
/// [`PATIENCE`]), then each with [`pattern`] of one more byte than the number it names; it
/// returns how many arrived. Fetches made one after another (or a thread blocked by one)
/// would never see an answer.
fn all_at_once(count: usize) -> (u16, std::thread::JoinHandle<usize>) {
    use std::io::{ErrorKind as IoKind, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let thread = std::thread::spawn(move || {
        let deadline = Instant::now() + PATIENCE;
        let mut waiting = Vec::new();
        while waiting.len() < count && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => waiting.push(stream),
                Err(e) if e.kind() == IoKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
        let arrived = waiting.len();
        if arrived < count {
            return arrived;
        }
        for mut stream in waiting {
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut request = [0u8; 5 + 3];
            stream.read_exact(&mut request).unwrap();
            let index: usize = std::str::from_utf8(&request[5..]).unwrap().parse().unwrap();
            let _ = stream.write_all(&[found(index as u32 + 1), pattern(index + 1)].concat());
        }
        arrived
    });
    (port, thread)
}

/// On one thread, a hundred fetches are under way at once.
#[tokio::test]
async fn a_hundred_under_way_together() {
    let (port, server) = all_at_once(100);
    let options = FetchOptions::builder()
        .idle_timeout(PATIENCE)
        .build()
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let fetch =
            Fetch::new_owned("127.0.0.1", port, format!("{i:03}")).options_owned(options.clone());
        tasks.spawn(async move { (i, fetch.to_vec_async().await) });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, got) = joined.unwrap();
        assert!(got.unwrap() == pattern(i + 1), "{i}");
    }
    assert_eq!(server.join().unwrap(), 100);
}
