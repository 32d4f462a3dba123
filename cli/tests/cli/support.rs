//! Running the `filefetch` binary and fake servers, with every wait bounded.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Upper bound for anything a test waits for; reached only when something is broken.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The `filefetch` command, run in `dir`.
pub fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_filefetch"));
    cmd.current_dir(dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A child process that is killed and reaped if the test ends before it does.
pub struct Running {
    child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Running {
        // A program file just written (the copy the fault tests run as "nobody") can be
        // "busy" for a moment: a child forked by another test thread meanwhile holds the
        // writing descriptor until its own exec. Retry that, briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut child = loop {
            match cmd.spawn() {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                        && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(10));
                }
                result => break result.expect("start filefetch"),
            }
        };
        let stdout = Lines::read(child.stdout.take().unwrap());
        let stderr = Lines::read(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
        }
    }

    // Only the signal tests (Unix) need it.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to end, at most [`PATIENCE`].
    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "filefetch did not exit in time");
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process (where there are no signals to stop it more gently).
    #[cfg_attr(unix, allow(dead_code))]
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal to the process.
    #[cfg(unix)]
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).unwrap();
        // SAFETY: kill(2) only sends a signal; the pid is our own child, not yet reaped
        // (it is reaped in `wait` or on drop, after the last signal).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The lines a child writes to one of its pipes, collected by a thread.
pub struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn read(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most [`PATIENCE`]) for a line matching `pred` and returns it.
    pub fn wait_for(&mut self, pred: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| pred(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no matching line in time; saw {:?}", self.seen)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("stream ended without a matching line; saw {:?}", self.seen)
                }
            }
        }
    }

    /// Everything written, once the pipe has closed (at most [`PATIENCE`]).
    pub fn all(&mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("pipe not closed in time"),
            }
        }
        self.seen.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// `filefetch serve 0 --bind 127.0.0.1 --root ROOT [extra...]`, running, and its port.
/// Requests get a generous deadline, so that a busy machine fails no test.
pub fn serve(root: &Path, extra: &[&str]) -> (Running, u16) {
    let mut cmd = command(root);
    cmd.args([
        "serve",
        "0",
        "--bind",
        "127.0.0.1",
        "--request-timeout",
        "10",
    ])
    .arg("--root")
    .arg(root)
    .args(extra);
    let mut server = Running::spawn(cmd);
    let (addr, line) = listening(&mut server);
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    let root_shown = line.split("(root: ").nth(1).unwrap().trim_end_matches(')');
    assert_eq!(
        Path::new(root_shown),
        root.canonicalize().unwrap(),
        "{line}"
    );
    (server, addr.port())
}

/// Waits for a server's `listening on ADDR (root: DIR)` line; returns the address and the line.
pub fn listening(server: &mut Running) -> (SocketAddr, String) {
    let line = server.stdout.wait_for(|l| l.starts_with("listening on "));
    let addr: SocketAddr = line["listening on ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("address in the listening line");
    (addr, line)
}

/// What a finished `filefetch fetch` did.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `filefetch fetch 127.0.0.1 PORT NAME [extra...]` in `dir` to its end. Unless
/// `extra` sets one, the idle timeout is generous, so that a busy machine fails no test.
pub fn fetch(dir: &Path, port: u16, name: &str, extra: &[&str]) -> Outcome {
    let mut cmd = command(dir);
    cmd.args(["fetch", "127.0.0.1", &port.to_string(), name])
        .args(extra);
    if !extra.contains(&"--timeout") {
        cmd.args(["--timeout", "10"]);
    }
    run(cmd)
}

/// Runs `filefetch ARGS...` in `dir` to its end.
pub fn filefetch(dir: &Path, args: &[&str]) -> Outcome {
    let mut cmd = command(dir);
    cmd.args(args);
    run(cmd)
}

/// Runs `cmd` to its end (at most PATIENCE) and collects what it did.
pub fn run(cmd: Command) -> Outcome {
    let mut child = Running::spawn(cmd);
    let status = child.wait();
    Outcome {
        code: status.code(),
        stdout: child.stdout.all(),
        stderr: child.stderr.all(),
    }
}

/// The names in `dir`, sorted.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `len` bytes that are not all alike, the same on every run.
pub fn sample(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A one-connection server on 127.0.0.1 that plays a scripted (broken) peer.
pub struct FakeServer {
    pub port: u16,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Accepts one connection, reads the request, then runs `script` on the stream. After
    /// the script returns, the connection is closed.
    pub fn start(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let thread = thread::spawn(move || {
            let Some(mut stream) = accept(&listener) else {
                return;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(PATIENCE)).unwrap();
            read_request(&mut stream);
            script(&mut stream);
        });
        FakeServer {
            port,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            if !thread::panicking() {
                thread.join().expect("fake server failed");
            }
        }
    }
}

fn accept(listener: &TcpListener) -> Option<TcpStream> {
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

/// Reads one FileRequest: the 5-byte header and the name it announces.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header).expect("request header");
    assert_eq!(header[..3], [0x49, 0x7E, 1]);
    let mut name = vec![0u8; usize::from(u16::from_be_bytes([header[3], header[4]]))];
    stream.read_exact(&mut name).expect("request name");
    name
}

/// Waits, at most [`PATIENCE`], for the client to close the connection.
pub fn until_client_closes(stream: &mut TcpStream) {
    let mut buf = [0u8; 64];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

/// A FileResponse header: found, announcing `len` bytes.
pub fn found_header(len: u32) -> Vec<u8> {
    let mut header = vec![0x49, 0x7E, 2, 1];
    header.extend_from_slice(&len.to_be_bytes());
    header
}

/// Writes and flushes, ignoring a client that already left.
pub fn send(stream: &mut TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
}

/// Waits (at most [`PATIENCE`]) until `dir` holds an entry whose name matches `pred`.
#[cfg_attr(not(unix), allow(dead_code))]
pub fn wait_for_entry(dir: &Path, pred: impl Fn(&str) -> bool) -> PathBuf {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(name) = listing(dir).into_iter().find(|n| pred(n)) {
            return dir.join(name);
        }
        assert!(Instant::now() < deadline, "no matching entry in {dir:?}");
        thread::sleep(Duration::from_millis(10));
    }
}
