//! The blocking client: connect, send one FileRequest, receive the FileResponse.
//!
//! Downloads to a file go into a temporary file beside the destination and are moved into
//! place, without replacing anything, only once exactly DataLength bytes have arrived. Every
//! failure removes the temporary file: a destination either appears whole or not at all.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::protocol::{self, ResponseHeader, RESPONSE_HEADER_LEN};
use crate::recv;
use crate::sys;

/// The protocol's rule: every read gives up after one second without data.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a connection attempt to one address may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a blocked read wakes up to run the interrupt check.
const INTERRUPT_POLL: Duration = Duration::from_millis(50);

/// A check run while waiting; returning `true` stops the fetch with [`Error::Interrupted`].
pub type InterruptCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// How a fetch behaves. Build with [`FetchOptions::new`] and the setters.
#[derive(Clone)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Longest wait for any read or write to make progress (1 s by default).
    pub idle_timeout: Duration,
    /// Longest wait for a connection to one address (5 s by default).
    pub connect_timeout: Duration,
    /// Where to write the file. `None`: the requested name's last component in the current
    /// directory. An existing directory: that component inside it.
    pub output: Option<PathBuf>,
    /// Replace an existing destination (atomically) instead of refusing.
    pub overwrite: bool,
    /// Flush the file to stable storage before moving it into place.
    pub fsync: bool,
    /// Polled about every 50 ms while waiting for data; `true` aborts the fetch.
    pub interrupt: Option<InterruptCheck>,
    /// Use the portable receive path (read into a buffer, then write) even where a
    /// zero-copy one exists (`splice` on Linux).
    pub portable: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            output: None,
            overwrite: false,
            fsync: false,
            interrupt: None,
            portable: false,
        }
    }
}

impl fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchOptions")
            .field("idle_timeout", &self.idle_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("output", &self.output)
            .field("overwrite", &self.overwrite)
            .field("fsync", &self.fsync)
            .field("interrupt", &self.interrupt.as_ref().map(|_| "Fn"))
            .field("portable", &self.portable)
            .finish()
    }
}

impl FetchOptions {
    /// The defaults: 1 s idle timeout, 5 s connect timeout, no overwrite.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the idle timeout applied to every read and write.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Sets the connect timeout (per address tried).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets where the file is written.
    pub fn output(mut self, path: impl Into<PathBuf>) -> Self {
        self.output = Some(path.into());
        self
    }

    /// Allows replacing an existing destination.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Asks for the data to be flushed to disk before the file appears.
    pub fn fsync(mut self, fsync: bool) -> Self {
        self.fsync = fsync;
        self
    }

    /// Sets a check polled while waiting; when it returns `true` the fetch stops cleanly.
    pub fn interrupt(mut self, check: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.interrupt = Some(Arc::new(check));
        self
    }

    /// Forces the portable receive path.
    pub fn portable(mut self, portable: bool) -> Self {
        self.portable = portable;
        self
    }
}

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Where the file now is.
    pub path: PathBuf,
    /// Its size in bytes (the DataLength the server announced and sent).
    pub bytes: u64,
}

/// Downloads `name` from `host:port` into a local file.
///
/// `host` is a name or an IPv4/IPv6 literal; every address it resolves to is tried in turn.
/// The destination is chosen by [`FetchOptions::output`]; it is never overwritten unless
/// [`FetchOptions::overwrite`] is set, and it appears only when the whole file arrived.
pub fn fetch(host: &str, port: u16, name: &str, options: &FetchOptions) -> Result<Fetched> {
    fetch_with_progress(host, port, name, options, |_, _| ControlFlow::Continue(()))
}

/// Like [`fetch`], calling `progress(received, total)` as data arrives.
///
/// Returning [`ControlFlow::Break`] stops the download with [`Error::Aborted`]; nothing is
/// left behind.
pub fn fetch_with_progress(
    host: &str,
    port: u16,
    name: &str,
    options: &FetchOptions,
    mut progress: impl FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<Fetched> {
    check_request_name(name)?;
    let dest = destination(name, options.output.as_deref())?;
    if !options.overwrite {
        refuse_existing(&dest)?;
    }
    let mut conn = Connection::open(host, port, name, options)?;
    let total = match conn.read_header(name)? {
        ResponseHeader::NotFound => {
            return Err(Error::NotFound {
                name: name.to_owned(),
            })
        }
        ResponseHeader::Found(len) => u64::from(len),
    };

    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new();
    temp.prefix(".filefetch-").suffix(".part");
    if let Some(permissions) = sys::new_file_permissions() {
        temp.permissions(permissions);
    }
    let mut temp = temp.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
    // From here on, returning early drops `temp`, which deletes the partial file.
    let temp_path = temp.path().to_path_buf();
    recv::receive_to_file(
        &mut conn,
        temp.as_file_mut(),
        total,
        &mut progress,
        &temp_path,
        options.portable,
    )?;
    conn.expect_end(total)?;
    if options.fsync {
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io(temp.path(), e))?;
    }
    let persisted = if options.overwrite {
        temp.persist(&dest)
    } else {
        temp.persist_noclobber(&dest)
    };
    match persisted {
        Ok(_) => Ok(Fetched {
            path: dest,
            bytes: total,
        }),
        // The temporary file inside the error is dropped, and so deleted, here.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(Error::DestinationExists { path: dest })
        }
        Err(e) => Err(Error::io(&dest, e.error)),
    }
}

/// Downloads `name` into any writer (memory, a pipe, a socket) and returns its size.
///
/// Data is written as it arrives, so after an error the writer may hold part of the file;
/// use [`fetch`] for all-or-nothing files.
pub fn fetch_to_writer<W: Write + ?Sized>(
    host: &str,
    port: u16,
    name: &str,
    options: &FetchOptions,
    writer: &mut W,
) -> Result<u64> {
    fetch_to_writer_with_progress(host, port, name, options, writer, |_, _| {
        ControlFlow::Continue(())
    })
}

/// Like [`fetch_to_writer`], calling `progress(received, total)` as data arrives.
pub fn fetch_to_writer_with_progress<W: Write + ?Sized>(
    host: &str,
    port: u16,
    name: &str,
    options: &FetchOptions,
    writer: &mut W,
    mut progress: impl FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<u64> {
    check_request_name(name)?;
    let mut conn = Connection::open(host, port, name, options)?;
    let total = match conn.read_header(name)? {
        ResponseHeader::NotFound => {
            return Err(Error::NotFound {
                name: name.to_owned(),
            })
        }
        ResponseHeader::Found(len) => u64::from(len),
    };
    recv::receive_to_writer(&mut conn, writer, total, &mut progress)?;
    conn.expect_end(total)?;
    Ok(total)
}

/// Downloads `name` into memory.
pub fn fetch_bytes(host: &str, port: u16, name: &str, options: &FetchOptions) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    fetch_to_writer(host, port, name, options, &mut data)?;
    Ok(data)
}

fn check_request_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidName {
            reason: "name is empty".into(),
        });
    }
    if name.len() > protocol::MAX_NAME_LEN {
        return Err(Error::InvalidName {
            reason: format!(
                "name is {} bytes, the protocol allows {}",
                name.len(),
                protocol::MAX_NAME_LEN
            ),
        });
    }
    if name.contains('\0') {
        return Err(Error::InvalidName {
            reason: "name contains a NUL byte".into(),
        });
    }
    Ok(())
}

/// The local path a download of `name` goes to.
///
/// Only the last component of `name` is used, so a server (or a name with `..`) can never
/// steer the file outside the directory chosen.
pub fn destination(name: &str, output: Option<&Path>) -> Result<PathBuf> {
    let leaf = || -> Result<&str> {
        let leaf = name.rsplit('/').next().unwrap_or("");
        if leaf.is_empty() || leaf == "." || leaf == ".." || leaf.contains('\\') {
            return Err(Error::InvalidName {
                reason: format!("{name:?} does not end in a file name; give an output path"),
            });
        }
        Ok(leaf)
    };
    match output {
        Some(out) if out.is_dir() => Ok(out.join(leaf()?)),
        Some(out) => Ok(out.to_path_buf()),
        None => Ok(PathBuf::from(leaf()?)),
    }
}

fn refuse_existing(dest: &Path) -> Result<()> {
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(Error::DestinationExists {
            path: dest.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// One client connection with the idle-timeout and interrupt rules applied to every read.
pub(crate) struct Connection {
    stream: TcpStream,
    idle: Duration,
    interrupt: Option<InterruptCheck>,
}

impl Connection {
    fn open(host: &str, port: u16, name: &str, options: &FetchOptions) -> Result<Connection> {
        let request =
            protocol::encode_request(name.as_bytes()).ok_or_else(|| Error::InvalidName {
                reason: "name length out of range".into(),
            })?;
        let stream = connect(host, port, options)?;
        let poll = match options.interrupt {
            Some(_) => options.idle_timeout.min(INTERRUPT_POLL),
            None => options.idle_timeout,
        };
        let set = |s: &TcpStream| -> io::Result<()> {
            s.set_read_timeout(Some(nonzero(poll)))?;
            s.set_write_timeout(Some(nonzero(options.idle_timeout)))?;
            s.set_nodelay(true)
        };
        set(&stream).map_err(|source| Error::Io { path: None, source })?;
        let mut conn = Connection {
            stream,
            idle: options.idle_timeout,
            interrupt: options.interrupt.clone(),
        };
        conn.send(&request)?;
        Ok(conn)
    }

    fn send(&mut self, request: &[u8]) -> Result<()> {
        match self.stream.write_all(request) {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => Err(Error::Timeout {
                during: "sending the request".into(),
            }),
            Err(e) if is_disconnect(&e) => Err(Error::ServerClosed),
            Err(source) => Err(Error::Io { path: None, source }),
        }
    }

    fn read_header(&mut self, _name: &str) -> Result<ResponseHeader> {
        let mut header = [0u8; RESPONSE_HEADER_LEN];
        let mut got = 0;
        while got < header.len() {
            match self.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Err(Error::ServerClosed),
                Ok(0) => return Err(Error::TruncatedHeader { received: got }),
                Ok(n) => got += n,
                Err(ReadError::Idle) => {
                    return Err(Error::Timeout {
                        during: "waiting for the response".into(),
                    })
                }
                Err(ReadError::Interrupted) => return Err(Error::Interrupted),
                Err(ReadError::Io(e)) if is_disconnect(&e) && got == 0 => {
                    return Err(Error::ServerClosed)
                }
                Err(ReadError::Io(e)) if is_disconnect(&e) => {
                    return Err(Error::TruncatedHeader { received: got })
                }
                Err(ReadError::Io(source)) => return Err(Error::Io { path: None, source }),
            }
        }
        Ok(ResponseHeader::decode(&header)?)
    }

    /// After the data the server must close: anything more is a protocol error. A server that
    /// keeps the connection open past the idle timeout is tolerated, since the data is whole.
    fn expect_end(&mut self, expected: u64) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::ExcessData { expected }),
            Err(ReadError::Interrupted) => Err(Error::Interrupted),
            Err(ReadError::Idle) | Err(ReadError::Io(_)) => Ok(()),
        }
    }

    /// One read, waiting at most the idle timeout for data, running the interrupt check
    /// every poll interval.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.read_with(|mut stream| stream.read(buf))
    }

    /// Runs `op`, a read-like call on the socket (`read`, `splice`), under the same rules
    /// as [`Connection::read`]: the socket's receive timeout makes it return `WouldBlock`
    /// each poll interval, and it is retried until the idle timeout.
    pub(crate) fn read_with(
        &mut self,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Result<usize, ReadError> {
        let start = Instant::now();
        loop {
            if self.interrupted() {
                return Err(ReadError::Interrupted);
            }
            match op(&self.stream) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if start.elapsed() >= self.idle {
                        return Err(ReadError::Idle);
                    }
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|check| check())
    }
}

/// Why a read on the connection failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// No data for the idle timeout.
    Idle,
    /// The interrupt check said stop.
    Interrupted,
    /// The socket failed (reset, ...).
    Io(io::Error),
}

fn connect(host: &str, port: u16, options: &FetchOptions) -> Result<TcpStream> {
    // Brackets around IPv6 literals are accepted, as in URLs: "[::1]".
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|source| Error::Resolve {
            host: host.to_owned(),
            source,
        })?
        .collect();
    let mut last = None;
    for addr in &addrs {
        let attempt = match &options.interrupt {
            Some(check) => connect_interruptible(addr, options.connect_timeout, check.as_ref()),
            None => TcpStream::connect_timeout(addr, nonzero(options.connect_timeout)),
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(Error::Interrupted),
            Err(e) => last = Some((*addr, e)),
        }
    }
    match last {
        Some((addr, e)) if is_timeout(&e) => Err(Error::Timeout {
            during: format!("connecting to {addr}"),
        }),
        Some((addr, source)) => Err(Error::Connect { addr, source }),
        None => Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
        }),
    }
}

/// Connects while running the interrupt check every poll interval; an interruption is
/// reported as [`io::ErrorKind::Interrupted`].
fn connect_interruptible(
    addr: &SocketAddr,
    timeout: Duration,
    interrupted: &(dyn Fn() -> bool + Send + Sync),
) -> io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    match socket.connect(&(*addr).into()) {
        Ok(()) => {}
        Err(e) if sys::connect_in_progress(&e) => {
            let start = Instant::now();
            loop {
                if interrupted() {
                    return Err(io::ErrorKind::Interrupted.into());
                }
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                if sys::wait_writable(&socket, left.min(INTERRUPT_POLL))? {
                    if let Some(e) = socket.take_error()? {
                        return Err(e);
                    }
                    break;
                }
            }
        }
        Err(e) => return Err(e),
    }
    socket.set_nonblocking(false)?;
    Ok(socket.into())
}

fn nonzero(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}

pub(crate) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_uses_last_component_only() {
        assert_eq!(destination("a.txt", None).unwrap(), PathBuf::from("a.txt"));
        assert_eq!(
            destination("x/y/z.bin", None).unwrap(),
            PathBuf::from("z.bin")
        );
        assert_eq!(
            destination("../../etc/passwd", None).unwrap(),
            PathBuf::from("passwd")
        );
        for bad in ["dir/", "..", "a/..", ".", "/"] {
            assert!(
                matches!(destination(bad, None), Err(Error::InvalidName { .. })),
                "{bad}"
            );
        }
        let out = tempfile::tempdir().unwrap();
        assert_eq!(
            destination("d/f", Some(out.path())).unwrap(),
            out.path().join("f")
        );
        assert_eq!(
            destination("dir/", Some(&out.path().join("new"))).unwrap(),
            out.path().join("new")
        );
    }

    #[test]
    fn request_names_checked_before_connecting() {
        let opts = FetchOptions::new();
        // Port 9 on a reserved address would fail differently; the name fails first.
        for bad in [String::new(), "a".repeat(1025), "a\0b".into()] {
            assert!(matches!(
                fetch_bytes("127.0.0.1", 9, &bad, &opts),
                Err(Error::InvalidName { .. })
            ));
        }
    }
}
