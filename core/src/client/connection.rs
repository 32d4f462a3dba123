//! One client connection: resolve and connect, send the request, and read under the fetch's
//! time rules (the idle timeout, the whole-fetch limit, the minimum rate, the interrupt check).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::options::{FetchOptions, InterruptCheck};
use crate::error::{Error, NameProblem, Result, TimeoutPhase};
use crate::protocol::{self, ResponseHeader, RESPONSE_HEADER_LEN};
use crate::sys;

/// How often a blocked read (or a wait between attempts) wakes up to run the interrupt check
/// and the time limits.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// The fetch's limits on time: the deadline counted from the fetch's start (its first
/// attempt), the rate from this connection's.
struct Limits {
    idle: Duration,
    /// When the whole fetch must be over, with the limit it came from.
    deadline: Option<(Instant, Duration)>,
    /// The minimum rate and the current window: its start and the bytes read before it.
    rate: Option<Rate>,
    interrupt: Option<InterruptCheck>,
}

struct Rate {
    bytes_per_sec: u64,
    window: Duration,
    since: Instant,
    before: u64,
}

/// A connection with the fetch's time rules applied to every read.
pub(crate) struct Connection {
    stream: TcpStream,
    limits: Limits,
    /// Bytes read so far, header included.
    read: u64,
}

/// Why a read on the connection failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// No data for the idle timeout.
    Idle,
    /// A time limit of the whole fetch expired (its phase says which).
    Limit(TimeoutPhase),
    /// The interrupt check said stop.
    Interrupted,
    /// The socket failed (reset, ...).
    Io(io::Error),
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
        let request = encode_request(name)?;
        let deadline = options
            .max_time()
            .and_then(|limit| Some((start.checked_add(limit)?, limit)));
        let limits = Limits {
            idle: options.idle_timeout(),
            deadline,
            rate: options.min_rate().map(|(bytes_per_sec, window)| Rate {
                bytes_per_sec,
                window,
                since: Instant::now(),
                before: 0,
            }),
            interrupt: options.interrupt().cloned(),
        };
        let stream = connect(host, port, options.connect_timeout(), &limits)?;
        let watched = limits.interrupt.is_some() || limits.deadline.is_some();
        let poll = if watched || limits.rate.is_some() {
            limits.idle.min(POLL)
        } else {
            limits.idle
        };
        let set = |s: &TcpStream| -> io::Result<()> {
            s.set_read_timeout(Some(nonzero(poll)))?;
            s.set_write_timeout(Some(nonzero(limits.idle)))?;
            s.set_nodelay(true)
        };
        set(&stream).map_err(|source| Error::Io { path: None, source })?;
        let mut conn = Connection {
            stream,
            limits,
            read: 0,
        };
        conn.send(&request)?;
        Ok(conn)
    }

    fn send(&mut self, request: &[u8]) -> Result<()> {
        match self.stream.write_all(request) {
            Ok(()) => Ok(()),
            Err(e) if is_timeout(&e) => Err(Error::Timeout {
                phase: TimeoutPhase::Request,
            }),
            Err(e) if is_disconnect(&e) => Err(Error::ServerClosed),
            Err(source) => Err(Error::Io { path: None, source }),
        }
    }

    /// Reads the response header: the file's length, or [`Error::NotFound`] for `name`.
    pub(crate) fn read_header(&mut self, name: &str) -> Result<u64> {
        let mut header = [0u8; RESPONSE_HEADER_LEN];
        let mut got = 0;
        while got < header.len() {
            match self.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Err(Error::ServerClosed),
                Ok(0) => return Err(Error::TruncatedHeader { received: got }),
                Ok(n) => got += n,
                Err(ReadError::Idle) => {
                    return Err(Error::Timeout {
                        phase: TimeoutPhase::Response,
                    })
                }
                Err(ReadError::Limit(phase)) => return Err(Error::Timeout { phase }),
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
        match ResponseHeader::decode(&header)? {
            ResponseHeader::NotFound => Err(Error::NotFound {
                name: name.to_owned(),
            }),
            ResponseHeader::Found(len) => Ok(u64::from(len)),
        }
    }

    /// After the data the server must close: anything more is a protocol error. A server that
    /// keeps the connection open past the idle timeout is tolerated, since the data is whole.
    pub(crate) fn expect_end(&mut self, expected: u64) -> Result<()> {
        let mut probe = [0u8; 1];
        match self.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::ExcessData { expected }),
            Err(ReadError::Interrupted) => Err(Error::Interrupted),
            Err(ReadError::Idle) | Err(ReadError::Limit(_)) | Err(ReadError::Io(_)) => Ok(()),
        }
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
        let start = Instant::now();
        loop {
            if self.interrupted() {
                return Err(ReadError::Interrupted);
            }
            self.check_limits(Instant::now())?;
            match op(&self.stream) {
                Ok(n) => {
                    self.read += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    if start.elapsed() >= self.limits.idle {
                        return Err(ReadError::Idle);
                    }
                }
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// The whole-fetch deadline and the minimum rate, as of `now`.
    fn check_limits(&mut self, now: Instant) -> Result<(), ReadError> {
        if let Some((deadline, limit)) = self.limits.deadline {
            if now >= deadline {
                return Err(ReadError::Limit(TimeoutPhase::Total { limit }));
            }
        }
        if let Some(rate) = &mut self.limits.rate {
            let elapsed = now.saturating_duration_since(rate.since);
            if elapsed >= rate.window {
                let wanted = (rate.bytes_per_sec as f64 * rate.window.as_secs_f64()) as u64;
                if self.read - rate.before < wanted {
                    return Err(ReadError::Limit(TimeoutPhase::Rate {
                        bytes_per_sec: rate.bytes_per_sec,
                        window: rate.window,
                    }));
                }
                rate.since = now;
                rate.before = self.read;
            }
        }
        Ok(())
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.limits.interrupt.as_ref().is_some_and(|check| check())
    }
}

/// The request for `name`, or why the name cannot be sent.
fn encode_request(name: &str) -> Result<Vec<u8>> {
    let reason = if name.is_empty() {
        NameProblem::Empty
    } else if name.contains('\0') {
        NameProblem::Nul
    } else {
        // Within the protocol's limit, the name can always be encoded.
        match protocol::encode_request(name.as_bytes()) {
            Some(request) => return Ok(request),
            None => NameProblem::TooLong { len: name.len() },
        }
    };
    Err(Error::InvalidName { reason })
}

/// Checks `name` as [`Connection::open`] would, before anything else is done.
pub(crate) fn check_request_name(name: &str) -> Result<()> {
    encode_request(name).map(drop)
}

fn connect(host: &str, port: u16, timeout: Duration, limits: &Limits) -> Result<TcpStream> {
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
        let attempt = if limits.interrupt.is_some() || limits.deadline.is_some() {
            connect_watched(addr, timeout, limits)
        } else {
            TcpStream::connect_timeout(addr, nonzero(timeout)).map_err(Failed::Io)
        };
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(Failed::Interrupted) => return Err(Error::Interrupted),
            Err(Failed::Limit(limit)) => {
                return Err(Error::Timeout {
                    phase: TimeoutPhase::Total { limit },
                })
            }
            Err(Failed::Io(e)) => last = Some((*addr, e)),
        }
    }
    match last {
        Some((addr, e)) if is_timeout(&e) => Err(Error::Timeout {
            phase: TimeoutPhase::Connect { addr },
        }),
        Some((addr, source)) => Err(Error::Connect { addr, source }),
        None => Err(Error::Resolve {
            host: host.to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
        }),
    }
}

enum Failed {
    Interrupted,
    Limit(Duration),
    Io(io::Error),
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
            let start = Instant::now();
            loop {
                if limits.interrupt.as_ref().is_some_and(|check| check()) {
                    return Err(Failed::Interrupted);
                }
                let now = Instant::now();
                if let Some((deadline, limit)) = limits.deadline {
                    if now >= deadline {
                        return Err(Failed::Limit(limit));
                    }
                }
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(Failed::Io(io::ErrorKind::TimedOut.into()));
                }
                if sys::wait_writable(&socket, left.min(POLL)).map_err(Failed::Io)? {
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
