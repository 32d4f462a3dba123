//! What the blocking and the asynchronous client share besides their I/O: the request, the
//! time rules every read is made under, the assembly and checks of the response header, the
//! accounting of the data as it arrives, and the error each way of failing is reported as.
//! The two clients differ only in how they wait; every decision is made here.

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::{Duration, Instant};

use super::digest::Hashing;
use super::options::{FetchOptions, InterruptCheck};
use crate::error::{Error, NameProblem, Result, TimeoutPhase};
use crate::protocol::{self, ResponseHeader, RESPONSE_HEADER_LEN};

/// How often a wait (for the socket, or between attempts) ends early to run the interrupt
/// check and the time limits.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Largest read on the buffered paths.
pub(crate) const CHUNK: usize = 256 * 1024;

/// The progress callback as the receive paths call it: `(received, total)`, and
/// [`ControlFlow::Break`] to stop.
pub(crate) type ProgressFn<'p> = dyn FnMut(u64, u64) -> ControlFlow<()> + Send + 'p;

/// The request for `name`, or why the name cannot be sent.
pub(crate) fn encode_request(name: &str) -> Result<Vec<u8>> {
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

/// Checks `name` as opening a connection would, before anything else is done.
pub(crate) fn check_request_name(name: &str) -> Result<()> {
    encode_request(name).map(drop)
}

/// The fetch's limits on time, applied to one connection: the deadline counted from the
/// fetch's start (its first attempt), the rate from this connection's.
pub(crate) struct Limits {
    idle: Duration,
    /// When the whole fetch must be over, with the limit it came from.
    deadline: Option<(Instant, Duration)>,
    /// The minimum rate and the current window: its start and the bytes read before it.
    rate: Option<Rate>,
    interrupt: Option<InterruptCheck>,
    /// Bytes read on this connection so far, header included.
    read: u64,
}

struct Rate {
    bytes_per_sec: u64,
    window: Duration,
    since: Instant,
    before: u64,
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

/// Why connecting to one address failed.
pub(crate) enum Failed {
    /// The interrupt check said stop: no other address is tried.
    Interrupted,
    /// The limit on the whole fetch expired: no other address is tried.
    Limit(Duration),
    /// This address refused, failed or did not answer in time: the next is tried.
    Io(io::Error),
}

impl Limits {
    /// The limits of a connection made now, for a fetch that started at `start`.
    pub(crate) fn new(options: &FetchOptions, start: Instant) -> Self {
        Limits {
            idle: options.idle_timeout(),
            deadline: options
                .max_time()
                .and_then(|limit| Some((start.checked_add(limit)?, limit))),
            rate: options.min_rate().map(|(bytes_per_sec, window)| Rate {
                bytes_per_sec,
                window,
                since: Instant::now(),
                before: 0,
            }),
            interrupt: options.interrupt().cloned(),
            read: 0,
        }
    }

    /// The idle timeout: the longest wait for one read or write.
    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// Whether waits must end early to run the interrupt check or watch the deadline.
    pub(crate) fn watched(&self) -> bool {
        self.interrupt.is_some() || self.deadline.is_some()
    }

    /// The longest one wait for the socket lasts before the rules are checked again.
    pub(crate) fn poll(&self) -> Duration {
        if self.watched() || self.rate.is_some() {
            nonzero(self.idle.min(POLL))
        } else {
            nonzero(self.idle)
        }
    }

    /// Whether the interrupt check says stop.
    pub(crate) fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|check| check())
    }

    /// Before each wait for data: the interrupt check, then the whole-fetch deadline and the
    /// minimum rate as of now.
    pub(crate) fn before_read(&mut self) -> Result<(), ReadError> {
        if self.interrupted() {
            return Err(ReadError::Interrupted);
        }
        let now = Instant::now();
        if let Some((deadline, limit)) = self.deadline {
            if now >= deadline {
                return Err(ReadError::Limit(TimeoutPhase::Total { limit }));
            }
        }
        if let Some(rate) = &mut self.rate {
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

    /// Counts `n` bytes read.
    pub(crate) fn after_read(&mut self, n: usize) {
        self.read += n as u64;
    }

    /// After a wait for data, begun at `since`, that ended without any: [`ReadError::Idle`]
    /// once the idle timeout has passed, otherwise wait again.
    pub(crate) fn after_wait(&self, since: Instant) -> Result<(), ReadError> {
        if since.elapsed() >= self.idle {
            Err(ReadError::Idle)
        } else {
            Ok(())
        }
    }

    /// Before each wait for a connection begun at `since`, which may take `timeout`: the
    /// interrupt check and the whole-fetch deadline, then how long to wait this time (up to
    /// the poll interval when watched). A connection out of time fails as `TimedOut`.
    pub(crate) fn connect_wait(
        &self,
        since: Instant,
        timeout: Duration,
    ) -> Result<Duration, Failed> {
        if self.interrupted() {
            return Err(Failed::Interrupted);
        }
        if let Some((deadline, limit)) = self.deadline {
            if Instant::now() >= deadline {
                return Err(Failed::Limit(limit));
            }
        }
        let left = timeout.saturating_sub(since.elapsed());
        if left.is_zero() {
            return Err(Failed::Io(io::ErrorKind::TimedOut.into()));
        }
        Ok(if self.watched() { left.min(POLL) } else { left })
    }
}

/// The host to resolve: brackets around an IPv6 literal are accepted, as in URLs (`[::1]`).
pub(crate) use crate::config::bare_host;

/// `host` could not be resolved.
pub(crate) fn resolve_error(host: &str, source: io::Error) -> Error {
    Error::Resolve {
        host: host.to_owned(),
        source,
    }
}

/// The addresses of one host tried in turn, and what the last failure was.
pub(crate) struct Tried<'h> {
    host: &'h str,
    last: Option<(SocketAddr, io::Error)>,
}

impl<'h> Tried<'h> {
    /// No address of `host` tried yet.
    pub(crate) fn new(host: &'h str) -> Self {
        Tried { host, last: None }
    }

    /// `addr` could not be connected to: `Ok` when the next address is to be tried, the
    /// fetch's error when none is (interrupted, out of time).
    pub(crate) fn failed(&mut self, addr: SocketAddr, failed: Failed) -> Result<()> {
        match failed {
            Failed::Interrupted => Err(Error::Interrupted),
            Failed::Limit(limit) => Err(Error::Timeout {
                phase: TimeoutPhase::Total { limit },
            }),
            Failed::Io(e) => {
                self.last = Some((addr, e));
                Ok(())
            }
        }
    }

    /// The error once every address failed: the last one's.
    pub(crate) fn error(self) -> Error {
        match self.last {
            Some((addr, e)) if is_timeout(&e) => Error::Timeout {
                phase: TimeoutPhase::Connect { addr },
            },
            Some((addr, source)) => Error::Connect { addr, source },
            None => resolve_error(
                self.host,
                io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
            ),
        }
    }
}

/// The request could not be sent.
pub(crate) fn send_error(e: io::Error) -> Error {
    if is_timeout(&e) {
        Error::Timeout {
            phase: TimeoutPhase::Request,
        }
    } else if is_disconnect(&e) {
        Error::ServerClosed
    } else {
        Error::Io {
            path: None,
            source: e,
        }
    }
}

/// The response header as it arrives.
#[derive(Default)]
pub(crate) struct Header {
    bytes: [u8; RESPONSE_HEADER_LEN],
    got: usize,
}

impl Header {
    /// Where the next bytes of the header go, or `None` once it is whole.
    pub(crate) fn missing(&mut self) -> Option<&mut [u8]> {
        (self.got < RESPONSE_HEADER_LEN).then(|| &mut self.bytes[self.got..])
    }

    /// Takes the outcome of one read into [`Header::missing`].
    pub(crate) fn read(&mut self, read: Result<usize, ReadError>) -> Result<()> {
        let got = self.got;
        match read {
            Ok(0) if got == 0 => Err(Error::ServerClosed),
            Ok(0) => Err(Error::TruncatedHeader { received: got }),
            Ok(n) => {
                self.got += n;
                Ok(())
            }
            Err(ReadError::Idle) => Err(Error::Timeout {
                phase: TimeoutPhase::Response,
            }),
            Err(ReadError::Limit(phase)) => Err(Error::Timeout { phase }),
            Err(ReadError::Interrupted) => Err(Error::Interrupted),
            Err(ReadError::Io(e)) if is_disconnect(&e) && got == 0 => Err(Error::ServerClosed),
            Err(ReadError::Io(e)) if is_disconnect(&e) => {
                Err(Error::TruncatedHeader { received: got })
            }
            Err(ReadError::Io(source)) => Err(Error::Io { path: None, source }),
        }
    }

    /// The whole header's answer: the file's length, [`Error::NotFound`] for `name`, or
    /// [`Error::TooLarge`] when the length is above `max_size`.
    pub(crate) fn decode(&self, name: &str, max_size: Option<u64>) -> Result<u64> {
        let len = match ResponseHeader::decode(&self.bytes)? {
            ResponseHeader::NotFound => {
                return Err(Error::NotFound {
                    name: name.to_owned(),
                })
            }
            ResponseHeader::Found(len) => u64::from(len),
        };
        match max_size {
            Some(limit) if len > limit => Err(Error::TooLarge { size: len, limit }),
            _ => Ok(len),
        }
    }
}

/// The outcome of the read after the data: the server must close, and anything more is a
/// protocol error. A server that keeps the connection open past the idle timeout is
/// tolerated, since the data is whole.
pub(crate) fn end_of_response(read: Result<usize, ReadError>, expected: u64) -> Result<()> {
    match read {
        Ok(0) => Ok(()),
        Ok(_) => Err(Error::ExcessData { expected }),
        Err(ReadError::Interrupted) => Err(Error::Interrupted),
        Err(ReadError::Idle) | Err(ReadError::Limit(_)) | Err(ReadError::Io(_)) => Ok(()),
    }
}

/// The data of one attempt as it arrives: how much, its digest, and the progress callback.
pub(crate) struct Tally<'t> {
    received: u64,
    total: u64,
    progress: &'t mut ProgressFn<'t>,
    hash: Option<&'t mut Hashing>,
}

impl<'t> Tally<'t> {
    /// `total` bytes to come: tells `progress` so (with 0 received). `hash`, when given, is
    /// fed every byte passed to [`Tally::take`].
    pub(crate) fn start(
        total: u64,
        progress: &'t mut ProgressFn<'t>,
        hash: Option<&'t mut Hashing>,
    ) -> Result<Self> {
        let mut tally = Tally {
            received: 0,
            total,
            progress,
            hash,
        };
        tally.advance(0)?;
        Ok(tally)
    }

    /// Bytes received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// Bytes still to come.
    pub(crate) fn left(&self) -> u64 {
        self.total - self.received
    }

    /// Whether every byte has arrived.
    pub(crate) fn done(&self) -> bool {
        self.received == self.total
    }

    /// A buffer for the rest of the data: one chunk at most, one byte at least.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        vec![0u8; (self.left().min(CHUNK as u64) as usize).max(1)]
    }

    /// The outcome of one read of data: the bytes read, or the error it means now (a close is
    /// [`Error::Incomplete`]).
    pub(crate) fn checked(&self, read: Result<usize, ReadError>) -> Result<usize> {
        match read {
            Ok(0) => Err(Error::Incomplete {
                received: self.received,
                expected: self.total,
            }),
            Ok(n) => Ok(n),
            Err(e) => Err(read_error(e, self.received, self.total)),
        }
    }

    /// `chunk` has arrived and is stored: feeds the digest and reports the progress.
    pub(crate) fn take(&mut self, chunk: &[u8]) -> Result<()> {
        if let Some(hash) = self.hash.as_deref_mut() {
            hash.update(chunk);
        }
        self.advance(chunk.len())
    }

    /// `n` more bytes are stored (without passing through the process: no digest).
    pub(crate) fn advance(&mut self, n: usize) -> Result<()> {
        self.received += n as u64;
        match (self.progress)(self.received, self.total) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(Error::Aborted),
        }
    }
}

/// Makes room in `data` for more of the `total` bytes when its `received` bytes fill it.
/// Memory is taken as data arrives, doubling at most, so an announced length alone cannot
/// make the client allocate.
pub(crate) fn grow(data: &mut Vec<u8>, received: usize, total: u64) -> Result<()> {
    if data.len() == received {
        let left = total - received as u64;
        let room = usize::try_from(left.min(received.max(CHUNK) as u64)).unwrap_or(CHUNK);
        data.try_reserve_exact(room).map_err(|_| Error::Io {
            path: None,
            source: io::ErrorKind::OutOfMemory.into(),
        })?;
        data.resize(received + room, 0);
    }
    Ok(())
}

/// What a failed read of data means, `received` of `total` bytes in.
pub(crate) fn read_error(e: ReadError, received: u64, total: u64) -> Error {
    match e {
        ReadError::Idle => Error::Timeout {
            phase: TimeoutPhase::Data {
                received,
                expected: total,
            },
        },
        ReadError::Limit(phase) => Error::Timeout { phase },
        ReadError::Interrupted => Error::Interrupted,
        ReadError::Io(e) if is_disconnect(&e) => Error::Incomplete {
            received,
            expected: total,
        },
        ReadError::Io(source) => Error::Io { path: None, source },
    }
}

/// Writing received data to `path` (or a caller's writer, without one) failed.
pub(crate) fn write_error(path: Option<&Path>, source: io::Error) -> Error {
    Error::Io {
        path: path.map(Path::to_path_buf),
        source,
    }
}

pub(crate) fn nonzero(d: Duration) -> Duration {
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
