//! `filefetch fetch --retry`: a server that fails the first connections and then serves;
//! the file with enough retries, the failure's exit code and nothing left with too few, and
//! one line on stderr for each retry.

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::tempdir;

use crate::support::{fetch, filefetch, found_header, listing, sample, send, PATIENCE};

/// What the fake server does with one connection once it has read the request.
type Script = Box<dyn FnOnce(&mut TcpStream) + Send>;

/// A server on 127.0.0.1 that plays `scripts[i]` on its i-th connection and closes any
/// further one after its request, counting them all.
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
                        let mut header = [0u8; 5];
                        if stream.read_exact(&mut header).is_ok() {
                            let len = u16::from_be_bytes([header[3], header[4]]);
                            let _ = stream.read_exact(&mut vec![0u8; usize::from(len)]);
                        }
                        if let Some(script) = scripts.next() {
                            script(&mut stream);
                        }
                    }
                    // Told to stop once the command has ended: every connection it made is
                    // accepted by then.
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
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

    /// How many connections were made; call once the command has ended.
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

/// Closes before any response.
fn close() -> Script {
    Box::new(|_| {})
}

/// Announces 100 bytes, sends 10 and closes.
fn short() -> Script {
    Box::new(|s| {
        send(s, &found_header(100));
        send(s, &[b'x'; 10]);
    })
}

fn serve(data: &[u8]) -> Script {
    let mut bytes = found_header(data.len() as u32);
    bytes.extend_from_slice(data);
    Box::new(move |s| send(s, &bytes))
}

#[test]
fn enough_retries_fetch_the_file() {
    let data = sample(5000);
    let server = Flaky::start(vec![close(), short(), serve(&data)]);
    let dir = tempdir().unwrap();
    let out = fetch(
        dir.path(),
        server.port,
        "f",
        &["--retry", "2", "--retry-delay", "0.01"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), data);
    assert_eq!(listing(dir.path()), ["f"]);
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].starts_with(
            "filefetch: attempt 1 failed (server closed the connection without a response); \
             retrying in 0.0"
        ),
        "{out:?}"
    );
    assert!(lines[0].ends_with(" s (2 left)"), "{out:?}");
    assert!(
        lines[1].starts_with(
            "filefetch: attempt 2 failed (transfer incomplete: 10 of 100 bytes); retrying in"
        ),
        "{out:?}"
    );
    assert!(lines[1].ends_with(" s (1 left)"), "{out:?}");
    assert!(out.stdout.starts_with("received 5000 bytes"), "{out:?}");
    assert_eq!(server.connections(), 3);
}

#[test]
fn too_few_retries_exit_with_the_last_failure_and_leave_nothing() {
    let server = Flaky::start(vec![close(), short(), serve(b"never")]);
    let dir = tempdir().unwrap();
    let out = fetch(
        dir.path(),
        server.port,
        "f",
        &["--retry", "1", "--retry-delay", "0.01"],
    );
    assert_eq!(out.code, Some(7), "{out:?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{out:?}");
    assert!(
        lines[0].starts_with("filefetch: attempt 1 failed"),
        "{out:?}"
    );
    assert!(lines[0].ends_with(" s (1 left)"), "{out:?}");
    assert_eq!(
        lines[1],
        "filefetch: error: transfer incomplete: 10 of 100 bytes"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    assert_eq!(server.connections(), 2);
}

#[test]
fn quiet_retries_silently() {
    let data = sample(100);
    let server = Flaky::start(vec![short(), serve(&data)]);
    let dir = tempdir().unwrap();
    let out = fetch(
        dir.path(),
        server.port,
        "f",
        &["--retry", "1", "--retry-delay", "0", "-q"],
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stderr, "");
    assert_eq!(out.stdout, "");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), data);
    assert_eq!(server.connections(), 2);
}

/// "No such file" is the server's answer, and asking again would get it again.
#[test]
fn not_found_is_not_retried() {
    let server = Flaky::start(vec![Box::new(|s| send(s, &[0x49, 0x7E, 2, 0, 0, 0, 0, 0]))]);
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), server.port, "f", &["--retry", "3"]);
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_eq!(out.stderr, "filefetch: error: server has no such file: f\n");
    assert!(listing(dir.path()).is_empty());
    assert_eq!(server.connections(), 1);
}

/// The range is the library's to check: a usage error naming the setting.
#[test]
fn retry_values_are_checked_and_documented() {
    let dir = tempdir().unwrap();
    let out = filefetch(
        dir.path(),
        &["fetch", "127.0.0.1", "9", "f", "--retry", "101"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("invalid retries"), "{out:?}");
    let out = filefetch(
        dir.path(),
        &["fetch", "127.0.0.1", "9", "f", "--retry-delay", "-1"],
    );
    assert_eq!(out.code, Some(2), "{out:?}");
    let help = filefetch(dir.path(), &["fetch", "--help"]);
    assert!(help.stdout.contains("--retry <N>"), "{help:?}");
    assert!(help.stdout.contains("--retry-delay <SECS>"), "{help:?}");
}
