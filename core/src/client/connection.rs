//! One blocking client connection: resolve and connect, send the request, and read under the
//! fetch's time rules (the idle timeout, the whole-fetch limit, the minimum rate, the
//! interrupt check), which [`rules`](super::rules) decides.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::options::FetchOptions;
use super::rules::{self, is_timeout, nonzero, Failed, Header, Limits, ReadError, Tried};
use crate::error::{Error, Result};
use crate::sys;

/// A connection with the fetch's time rules applied to every read.
pub(crate) struct Connection {
    stream: TcpStream,
    limits: Limits,
}

impl Connection {
    /// Connects to `host:port` and sends the request for `name`, for a fetch that started
    /// at `start` (the limit on the whole fetch counts from there, across retries).
    pub(crate) fn open(
        host: &str,
        port: u16,
        name: &str,
        options: &FetchOptions,
        start: Instant,
    ) -> Result<Connection> {
        let request = rules::encode_request(name)?;
        let limits = Limits::new(options, start);
        let stream = connect(host, port, options.connect_timeout(), &limits)?;
        let set = |s: &TcpStream| -> io::Result<()> {
            s.set_read_timeout(Some(limits.poll()))?;
            s.set_write_timeout(Some(nonzero(limits.idle())))?;
            s.set_nodelay(true)
        };
        set(&stream).map_err(|source| Error::Io { path: None, source })?;
        let mut conn = Connection { stream, limits };
        conn.stream.write_all(&request).map_err(rules::send_error)?;
        Ok(conn)
    }

    /// Reads the response header: the file's length, or [`Error::NotFound`] for `name`, or
    /// [`Error::TooLarge`] above `max_size`.
    pub(crate) fn read_header(&mut self, name: &str, max_size: Option<u64>) -> Result<u64> {
        let mut header = Header::default();
        while let Some(missing) = header.missing() {
            let read = self.read(missing);
            header.read(read)?;
        }
        header.decode(name, max_size)
    }

    /// After the data the server must close: anything more is a protocol error.
    pub(crate) fn expect_end(&mut self, expected: u64) -> Result<()> {
        let mut probe = [0u8; 1];
        rules::end_of_response(self.read(&mut probe), expected)
    }

    /// One read, under the fetch's time rules.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        self.read_with(|mut stream| stream.read(buf))
    }

    /// Runs `op`, a read-like call on the socket (`read`, `splice`), under the fetch's time
    /// rules: the socket's receive timeout makes it return `WouldBlock` each poll interval,
    /// and it is retried until the idle timeout or a limit of the whole fetch.
    pub(crate) fn read_with(
        &mut self,
        mut op: impl FnMut(&TcpStream) -> io::Result<usize>,
    ) -> Result<usize, ReadError> {
        let since = Instant::now();
        loop {
            self.limits.before_read()?;
            match op(&self.stream) {
                Ok(n) => {
                    self.limits.after_read(n);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => self.limits.after_wait(since)?,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Resolves `host` and connects to each of its addresses in turn until one answers.
fn connect(host: &str, port: u16, timeout: Duration, limits: &Limits) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (rules::bare_host(host), port)
        .to_socket_addrs()
        .map_err(|source| rules::resolve_error(host, source))?
        .collect();
    let mut tried = Tried::new(host);
    for addr in addrs {
        let attempt = if limits.watched() {
            connect_watched(&addr, timeout, limits)
        } else {
            TcpStream::connect_timeout(&addr, nonzero(timeout)).map_err(Failed::Io)
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(failed) => tried.failed(addr, failed)?,
        }
    }
    Err(tried.error())
}

/// Connects while running the interrupt check and watching the whole-fetch deadline every
/// poll interval.
fn connect_watched(
    addr: &SocketAddr,
    timeout: Duration,
    limits: &Limits,
) -> Result<TcpStream, Failed> {
    use socket2::{Domain, Protocol, Socket, Type};

    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(Failed::Io)?;
    socket.set_nonblocking(true).map_err(Failed::Io)?;
    match socket.connect(&(*addr).into()) {
        Ok(()) => {}
        Err(e) if sys::connect_in_progress(&e) => {
            let since = Instant::now();
            loop {
                let wait = limits.connect_wait(since, timeout)?;
                if sys::wait_writable(&socket, wait).map_err(Failed::Io)? {
                    if let Some(e) = socket.take_error().map_err(Failed::Io)? {
                        return Err(Failed::Io(e));
                    }
                    break;
                }
            }
        }
        Err(e) => return Err(Failed::Io(e)),
    }
    socket.set_nonblocking(false).map_err(Failed::Io)?;
    Ok(socket.into())
}
