//! Shared pieces of the integration tests: a server on a temporary root, scripted fake
//! servers, and checks on what a failed fetch left behind.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use filefetch::{BackgroundServer, Server, ServerConfig, ServerConfigBuilder};

/// A running server on 127.0.0.1, port 0, serving a temporary directory.
pub struct TestServer {
    pub root: tempfile::TempDir,
    pub server: Option<BackgroundServer>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::with(|c| c)
    }

    pub fn with(configure: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder) -> TestServer {
        let root = tempfile::tempdir().unwrap();
        let config = configure(ServerConfig::builder().root(root.path()))
            .build()
            .unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(addr, config).unwrap().spawn().unwrap();
        TestServer {
            root,
            server: Some(server),
        }
    }

    pub fn port(&self) -> u16 {
        self.server.as_ref().unwrap().local_addr().port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().local_addr()
    }

    /// Writes a file below the root, creating its directories.
    pub fn put(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.root.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }
}

/// Deterministic, non-repeating-looking content of `len` bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9E37_79B9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The names in a directory, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A raw connection to the server with every wait bounded.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until the server closes; `None` when the read failed (reset or timeout).
pub fn read_to_close(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok().map(|_| out)
}

/// One step of a scripted fake server.
pub enum Step {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Wait this long (the connection stays open).
    Pause(Duration),
}

/// A fake server that accepts one connection, reads the request, plays `steps` and closes.
pub struct FakeServer {
    pub port: u16,
    thread: Option<JoinHandle<Vec<u8>>>,
}

impl FakeServer {
    pub fn start(steps: Vec<Step>) -> FakeServer {
        FakeServer::scripted(move |s| {
            for step in steps {
                match step {
                    Step::Send(bytes) => {
                        if s.write_all(&bytes).is_err() {
                            break;
                        }
                    }
                    Step::Pause(d) => std::thread::sleep(d),
                }
            }
        })
    }

    /// The name the client asked for.
    pub fn requested(mut self) -> Vec<u8> {
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A FileResponse header with StatusCode 1 and `len`.
pub fn found(len: u32) -> Vec<u8> {
    let mut h = vec![0x49, 0x7E, 2, 1];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

/// A raw FileRequest for `name`, FilenameLen taken from the name (which may be any bytes).
pub fn request(name: &[u8]) -> Vec<u8> {
    let mut req = vec![0x49, 0x7E, 1];
    req.extend_from_slice(&(name.len() as u16).to_be_bytes());
    req.extend_from_slice(name);
    req
}

/// The 8-byte StatusCode 0 response.
pub const NOT_FOUND: [u8; 8] = [0x49, 0x7E, 2, 0, 0, 0, 0, 0];

impl FakeServer {
    /// A fake server that accepts one connection, reads the request, then runs `script` on
    /// the stream; the connection closes when the script returns (unless it reset it).
    pub fn scripted(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut header = [0u8; 5];
            if s.read_exact(&mut header).is_err() {
                return Vec::new();
            }
            let n = usize::from(u16::from_be_bytes([header[3], header[4]]));
            let mut name = vec![0u8; n];
            let _ = s.read_exact(&mut name);
            script(&mut s);
            name
        });
        FakeServer {
            port,
            thread: Some(thread),
        }
    }
}

/// Ends a connection with a reset (RST) instead of an orderly close.
pub fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

/// Connections the server on `port` still holds (ESTABLISHED or CLOSE_WAIT on its side),
/// counted from /proc/net/tcp and /proc/net/tcp6. Listening sockets and TIME_WAIT do not
/// count: a connection in TIME_WAIT has been closed.
#[cfg(target_os = "linux")]
pub fn held_connections(port: u16) -> usize {
    let mut held = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            // 01 ESTABLISHED, 08 CLOSE_WAIT.
            if local_port == Some(port) && matches!(*state, "01" | "08") {
                held += 1;
            }
        }
    }
    held
}

/// The same count on Windows, from the system's TCP tables (IPv4 and IPv6), whose states and
/// ports mean what /proc/net/tcp's do.
#[cfg(windows)]
pub fn held_connections(port: u16) -> usize {
    use std::ffi::c_void;
    #[link(name = "iphlpapi")]
    extern "system" {
        fn GetExtendedTcpTable(
            table: *mut c_void,
            size: *mut u32,
            order: i32,
            family: u32,
            class: i32,
            reserved: u32,
        ) -> u32;
        fn GetTcp6Table(table: *mut c_void, size: *mut u32, order: i32) -> u32;
    }
    const AF_INET: u32 = 2;
    const TCP_TABLE_BASIC_ALL: i32 = 2;
    const ERROR_NOT_SUPPORTED: u32 = 50;
    const ERROR_INSUFFICIENT_BUFFER: u32 = 122;
    const ERROR_NO_DATA: u32 = 232;
    const MIB_TCP_STATE_ESTAB: u32 = 5;
    const MIB_TCP_STATE_CLOSE_WAIT: u32 = 8;
    // A table is a u32 count, then rows of u32s: MIB_TCPROW is the state, local address,
    // local port, remote address, remote port; MIB_TCP6ROW the state, 4 words of local
    // address, scope, local port, then the same for the remote end. Ports are in network
    // byte order in the low 16 bits. (The classes with owning processes are much slower.)
    let mut held = 0;
    for (ipv6, row_words, port_at) in [(false, 5, 2), (true, 13, 6)] {
        let mut table: Vec<u32> = Vec::new();
        let mut size = 0u32;
        let rc = loop {
            let buffer: *mut c_void = table.as_mut_ptr().cast();
            // SAFETY: `table` is writable for `size` bytes; the function writes at most that
            // much, or says how much it needs with ERROR_INSUFFICIENT_BUFFER.
            let rc = unsafe {
                if ipv6 {
                    GetTcp6Table(buffer, &mut size, 0)
                } else {
                    GetExtendedTcpTable(buffer, &mut size, 0, AF_INET, TCP_TABLE_BASIC_ALL, 0)
                }
            };
            if rc != ERROR_INSUFFICIENT_BUFFER {
                break rc;
            }
            // Room for more rows than asked: connections come and go meanwhile.
            size += 64 * 4 * row_words as u32;
            table = vec![0u32; size as usize / 4 + 1];
        };
        match rc {
            0 if !table.is_empty() => {}
            // No IPv6, or no connection at all.
            0 | ERROR_NOT_SUPPORTED | ERROR_NO_DATA => continue,
            _ => panic!(
                "the TCP table: {}",
                std::io::Error::from_raw_os_error(rc as i32)
            ),
        }
        let rows = table[0] as usize;
        for row in table[1..].chunks_exact(row_words).take(rows) {
            let local_port = u16::from_be(row[port_at] as u16);
            if local_port == port
                && matches!(row[0], MIB_TCP_STATE_ESTAB | MIB_TCP_STATE_CLOSE_WAIT)
            {
                held += 1;
            }
        }
    }
    held
}

/// Waits (at most `patience`) until the server on `port` holds no connection; panics with
/// the number still held otherwise.
#[cfg(any(target_os = "linux", windows))]
pub fn assert_no_connection_held(port: u16, patience: Duration) {
    let deadline = std::time::Instant::now() + patience;
    loop {
        let held = held_connections(port);
        if held == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server on port {port} still holds {held} connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Raises the soft limit on open files to the hard limit; returns that limit.
#[cfg(target_os = "linux")]
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(rc, 0);
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            ..limit
        };
        // SAFETY: setrlimit only reads the struct passed.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }, 0);
    }
    limit.rlim_max
}

/// Counts panics on the server's threads (named "filefetch-server"), from the first call
/// on: a panic in a connection task is caught by the runtime and would otherwise go unseen.
pub fn server_panics() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Once;
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("filefetch-server") {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

/// Makes `link` a symbolic link to the file `target` (relative targets are relative to the
/// link's directory). False where this system cannot make one: Windows without the privilege
/// to create links, and Wine 8, whose CreateSymbolicLink reports success and makes nothing.
/// The tests then skip what needs the link, and say so.
pub fn symlink_file(target: impl AsRef<Path>, link: impl AsRef<Path>) -> bool {
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(target.as_ref(), link.as_ref());
    #[cfg(windows)]
    let made = std::os::windows::fs::symlink_file(target.as_ref(), link.as_ref());
    link_made(made, link.as_ref())
}

/// [`symlink_file`] for a link to a directory (on Unix the same thing).
pub fn symlink_dir(target: impl AsRef<Path>, link: impl AsRef<Path>) -> bool {
    #[cfg(unix)]
    let made = std::os::unix::fs::symlink(target.as_ref(), link.as_ref());
    #[cfg(windows)]
    let made = std::os::windows::fs::symlink_dir(target.as_ref(), link.as_ref());
    link_made(made, link.as_ref())
}

fn link_made(made: std::io::Result<()>, link: &Path) -> bool {
    match made {
        Ok(()) => {
            let is_link = std::fs::symlink_metadata(link).is_ok_and(|m| m.is_symlink());
            assert!(is_link || cfg!(windows), "{link:?} is not a link");
            is_link
        }
        // ERROR_PRIVILEGE_NOT_HELD: Windows lets only some users create links.
        Err(e) if cfg!(windows) && e.raw_os_error() == Some(1314) => false,
        Err(e) => panic!("cannot link {link:?}: {e}"),
    }
}
