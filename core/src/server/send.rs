//! The server's send path: the 8-byte header and the file, with no progress for the
//! send-stall timeout ending the transfer.
//!
//! - A small file's response kept in memory by the open-file cache is written as it is.
//! - Larger files, where the system has `sendfile(2)` (Linux, macOS, FreeBSD), leave without
//!   a copy through user space. On Linux the header is queued with `MSG_MORE`, so that it
//!   shares the first segment with the data: the original `client.py` reads the header with a
//!   single `recv(8)`.
//! - Everything else (small files, every file on the portable path and on systems without
//!   `sendfile`) is read into a buffer right before each write, header in front of the first
//!   chunk; a small file leaves in a single write. The buffer belongs to the worker thread,
//!   not to the connection, and is never held while waiting for a client: what a write did
//!   not take is read from the file again when the socket has room. A client that stops
//!   reading therefore costs no buffer at all, however many of them there are.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::time::timeout;

use super::socket::Sock;
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};
use crate::sys;

/// Files up to this size are sent from a buffer in one write.
const SMALL_FILE: u64 = 64 * 1024;
/// Largest write of the buffered path, header included.
const CHUNK: usize = 256 * 1024;
/// Smallest write the buffered path shrinks to after writes that the socket took only in
/// part (a slow reader): less reading of bytes that do not fit.
const MIN_CHUNK: usize = 16 * 1024;
/// Most bytes handed to one `sendfile` call, so one fast client cannot hog a worker.
const SENDFILE_CAP: u64 = 2 * 1024 * 1024;
/// The response header's length, as a file offset.
const HEADER: u64 = RESPONSE_HEADER_LEN as u64;

thread_local! {
    /// The buffered path's buffer, one per thread, borrowed only between reading the file
    /// and writing to the socket (never across a wait).
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The system-specific send paths a server uses; the portable configuration turns both off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Paths {
    /// Large files go out with `sendfile` where the system has it.
    pub(crate) sendfile: bool,
    /// The last write of a response waits for the close that follows, to leave with the FIN
    /// in one segment (see [`Sock::try_write_last`]).
    pub(crate) hold: bool,
}

impl Paths {
    /// Both paths on, or (`portable`) both off.
    pub(crate) fn new(portable: bool) -> Paths {
        Paths {
            sendfile: !portable,
            hold: !portable,
        }
    }
}

/// Why sending stopped early.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The client made no progress reading for the send-stall timeout.
    Stalled,
    /// The file ended before the size given in the header.
    Shrank,
    /// Reading the file failed.
    File(io::Error),
    /// The socket failed (the client went away).
    Io(io::Error),
}

/// Sends a StatusCode 0 response.
pub(crate) async fn send_not_found(
    sock: &mut Sock,
    stall: Duration,
    paths: Paths,
) -> Result<(), SendError> {
    write_all(sock, &ResponseHeader::NotFound.encode(), stall, paths.hold).await
}

/// Sends StatusCode 1, `len`, and exactly `len` bytes of `file`, or `response` (that whole
/// response, header included, read before) when given. `sent` counts file bytes that left,
/// also when an error cuts the transfer short. `paths` says which system-specific ways out
/// may be taken.
pub(crate) async fn send_file(
    sock: &mut Sock,
    file: &File,
    response: Option<&[u8]>,
    len: u32,
    stall: Duration,
    paths: Paths,
    sent: &mut u64,
) -> Result<(), SendError> {
    let header = ResponseHeader::Found(len).encode();
    let len = u64::from(len);
    if let Some(response) = response {
        debug_assert_eq!(response.len() as u64, HEADER + len);
        write_all(sock, response, stall, paths.hold).await?;
        *sent = len;
        return Ok(());
    }
    let mut from = 0;
    if paths.sendfile && sys::SENDFILE && len > SMALL_FILE {
        match send_zero_copy(sock, file, &header, len, stall, sent).await {
            // The file cannot be sent this way (its file system, say): the header is out,
            // the rest goes through the buffer.
            Err(Unsupported) => from = HEADER,
            Ok(result) => return result,
        }
    }
    send_buffered(sock, file, &header, len, from, stall, paths.hold, sent).await
}

/// `sendfile` cannot send this file; nothing of it was sent.
struct Unsupported;

/// The header, held to share a segment with the first data where the system allows, then
/// the file with `sendfile`.
async fn send_zero_copy(
    sock: &mut Sock,
    file: &File,
    header: &[u8; RESPONSE_HEADER_LEN],
    len: u64,
    stall: Duration,
    sent: &mut u64,
) -> Result<Result<(), SendError>, Unsupported> {
    let mut off = 0;
    while off < header.len() {
        let rest = &header[off..];
        match now_or_within(sock, stall, |s| sys::send_held(s, rest)).await {
            Ok(n) => off += n,
            Err(e) => return Ok(Err(e)),
        }
    }
    while *sent < len {
        let at = *sent;
        let count = (len - at).min(SENDFILE_CAP) as usize;
        match now_or_within(sock, stall, |s| sys::sendfile(s, file, at, count)).await {
            Ok(0) => return Ok(Err(SendError::Shrank)),
            Ok(n) => *sent += n as u64,
            Err(SendError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(SendError::Io(e)) if at == 0 && sendfile_unsupported(&e) => {
                return Err(Unsupported)
            }
            Err(e) => return Ok(Err(e)),
        }
        // Let other connections on this worker run between chunks.
        tokio::task::consume_budget().await;
    }
    Ok(Ok(()))
}

/// A `sendfile` error that means "not for this file or socket" rather than a failure.
fn sendfile_unsupported(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::InvalidInput
    )
}

/// Runs `f` at once if the socket has room, else as soon as it has, within `stall`.
async fn now_or_within<R>(
    sock: &mut Sock,
    stall: Duration,
    mut f: impl FnMut(&socket2::Socket) -> io::Result<R>,
) -> Result<R, SendError> {
    loop {
        match sock.try_send_with(&mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(sock, stall).await?,
            result => return result.map_err(SendError::Io),
        }
    }
}

/// Waits until the socket has room, within `stall`.
async fn wait_writable(sock: &mut Sock, stall: Duration) -> Result<(), SendError> {
    match timeout(stall, sock.writable()).await {
        Err(_) => Err(SendError::Stalled),
        Ok(result) => result.map_err(SendError::Io),
    }
}

/// The buffered path: the response (header, then the file's `len` bytes) from byte `from`
/// of it on, each write read from the file just before it is made.
#[allow(clippy::too_many_arguments)]
async fn send_buffered(
    sock: &mut Sock,
    file: &File,
    header: &[u8; RESPONSE_HEADER_LEN],
    len: u64,
    from: u64,
    stall: Duration,
    hold: bool,
    sent: &mut u64,
) -> Result<(), SendError> {
    let total = HEADER + len;
    let mut pos = from;
    let mut window = CHUNK;
    while pos < total {
        let want = (total - pos).min(window as u64) as usize;
        let last = hold && pos + want as u64 == total;
        match write_from_file(sock, file, header, pos, want, last)? {
            None => wait_writable(sock, stall).await?,
            Some(n) => {
                pos += n as u64;
                *sent = pos.saturating_sub(HEADER);
                // Taken whole: the socket keeps up, grow back; taken in part: read no
                // more than it took last time.
                window = if n == want {
                    (window * 2).min(CHUNK)
                } else {
                    n.max(MIN_CHUNK)
                };
                if pos < total {
                    tokio::task::consume_budget().await;
                }
            }
        }
    }
    Ok(())
}

/// Reads `want` bytes of the response from byte `pos` into the thread's buffer and writes
/// what the socket takes now: `None` when it takes nothing.
fn write_from_file(
    sock: &Sock,
    file: &File,
    header: &[u8; RESPONSE_HEADER_LEN],
    pos: u64,
    want: usize,
    last: bool,
) -> Result<Option<usize>, SendError> {
    SCRATCH.with_borrow_mut(|buf| {
        buf.clear();
        if let Some(head) = usize::try_from(pos).ok().and_then(|p| header.get(p..)) {
            buf.extend_from_slice(&head[..head.len().min(want)]);
        }
        let start = buf.len();
        buf.resize(want, 0);
        read_exact_at(file, &mut buf[start..], pos.saturating_sub(HEADER))?;
        let written = if last {
            sock.try_write_last(buf)
        } else {
            sock.try_write(buf)
        };
        match written {
            Ok(0) => Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(SendError::Io(e)),
        }
    })
}

/// Fills `buf` from `offset`; a file that ends first has shrunk since it was measured.
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> Result<(), SendError> {
    while !buf.is_empty() {
        match sys::read_at(file, buf, offset) {
            Ok(0) => return Err(SendError::Shrank),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SendError::File(e)),
        }
    }
    Ok(())
}

/// Writes all of `buf` (a response kept in memory, or a header); each write must make
/// progress within `stall`. Writes that fit in the socket's buffer go out at once, without
/// a trip through the event loop. `last` marks the end of the response, held for the close
/// that follows (see [`Sock::try_write_last`]).
async fn write_all(
    sock: &mut Sock,
    mut buf: &[u8],
    stall: Duration,
    last: bool,
) -> Result<(), SendError> {
    while !buf.is_empty() {
        let written = if last {
            sock.try_write_last(buf)
        } else {
            sock.try_write(buf)
        };
        match written {
            Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(sock, stall).await?,
            Err(e) => return Err(SendError::Io(e)),
        }
    }
    Ok(())
}
