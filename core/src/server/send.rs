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
//!
//! Under a rate limit every path asks its [`Pace`] before each write and writes no more than
//! it allows (`sendfile` included, in paced chunks), giving back what the socket did not
//! take; without one, `Pace` allows every write whole at once.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::time::timeout;

use super::pace::Pace;
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
    pace: &mut Pace<'_>,
) -> Result<(), SendError> {
    let header = ResponseHeader::NotFound.encode();
    write_all(sock, &header, stall, paths.hold, pace).await
}

/// Sends StatusCode 1, `len`, and exactly `len` bytes of `file`, or `response` (that whole
/// response, header included, read before) when given. `sent` counts file bytes that left,
/// also when an error cuts the transfer short. `paths` says which system-specific ways out
/// may be taken; `pace` says how fast.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_file(
    sock: &mut Sock,
    file: &File,
    response: Option<&[u8]>,
    len: u32,
    stall: Duration,
    paths: Paths,
    pace: &mut Pace<'_>,
    sent: &mut u64,
) -> Result<(), SendError> {
    let header = ResponseHeader::Found(len).encode();
    let len = u64::from(len);
    if let Some(response) = response {
        debug_assert_eq!(response.len() as u64, HEADER + len);
        write_all(sock, response, stall, paths.hold, pace).await?;
        *sent = len;
        return Ok(());
    }
    let mut from = 0;
    if paths.sendfile && sys::SENDFILE && len > SMALL_FILE {
        match send_zero_copy(sock, file, &header, len, stall, pace, sent).await {
            // The file cannot be sent this way (its file system, say): the header is out,
            // the rest goes through the buffer.
            Err(Unsupported) => from = HEADER,
            Ok(result) => return result,
        }
    }
    send_buffered(
        sock, file, &header, len, from, stall, paths.hold, pace, sent,
    )
    .await
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
    pace: &mut Pace<'_>,
    sent: &mut u64,
) -> Result<Result<(), SendError>, Unsupported> {
    let mut off = 0;
    while off < header.len() {
        let rest = &header[off..];
        match paced(sock, stall, pace, rest.len(), |s, n| {
            sys::send_held(s, &rest[..n])
        })
        .await
        {
            Ok(n) => off += n,
            Err(e) => return Ok(Err(e)),
        }
    }
    while *sent < len {
        let at = *sent;
        let count = (len - at).min(SENDFILE_CAP) as usize;
        match paced(sock, stall, pace, count, |s, n| {
            sys::sendfile(s, file, at, n)
        })
        .await
        {
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

/// Runs the write `f` for at most `want` bytes (`f` is told how many it may write, and
/// returns how many it wrote) at once if the socket has room, else as soon as it has, within
/// `stall`; and no sooner than `pace` allows those bytes. The bytes reserved are given back
/// while waiting for room, so a stalled client holds none of the server's rate.
async fn paced(
    sock: &mut Sock,
    stall: Duration,
    pace: &mut Pace<'_>,
    want: usize,
    mut f: impl FnMut(&socket2::Socket, usize) -> io::Result<usize>,
) -> Result<usize, SendError> {
    loop {
        let allowed = pace.allow(want).await;
        match sock.try_send_with(|s| f(s, allowed)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                pace.unused(allowed);
                wait_writable(sock, stall).await?;
            }
            Ok(n) => {
                pace.unused(allowed.saturating_sub(n));
                return Ok(n);
            }
            Err(e) => {
                pace.unused(allowed);
                return Err(SendError::Io(e));
            }
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

/// Sends StatusCode 1, `len`, and the `len` bytes `body` yields, each chunk asked for only
/// once the socket has taken the one before (so a slow client slows the source down). A
/// source that fails, stalls past `stall`, or ends short or long cuts the transfer before
/// `len` bytes: the client sees it incomplete.
#[cfg(feature = "object-store")]
pub(crate) async fn send_stream<E>(
    sock: &mut Sock,
    len: u32,
    mut body: impl futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    stall: Duration,
    pace: &mut Pace<'_>,
    sent: &mut u64,
) -> Result<(), SendError>
where
    E: std::error::Error + Send + Sync + 'static,
{
    use futures_util::StreamExt;

    let total = u64::from(len);
    let mut header = Some(ResponseHeader::Found(len).encode());
    loop {
        let next = match timeout(stall, body.next()).await {
            Err(_) => {
                return Err(SendError::File(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the store sent nothing for the send timeout",
                )))
            }
            Ok(next) => next,
        };
        let chunk = match next {
            None => break,
            Some(Ok(chunk)) => chunk,
            Some(Err(e)) => return Err(SendError::File(io::Error::other(e))),
        };
        if *sent + chunk.len() as u64 > total {
            return Err(SendError::File(io::Error::other(
                "the object grew while being sent",
            )));
        }
        if let Some(header) = header.take() {
            // Held back (`MSG_MORE` on Linux) until the first chunk's write, so that both
            // leave together without copying the chunk behind the header.
            write_all(sock, &header, stall, true, pace).await?;
        }
        write_all(sock, &chunk, stall, false, pace).await?;
        *sent += chunk.len() as u64;
    }
    if let Some(header) = header {
        write_all(sock, &header, stall, false, pace).await?;
    }
    if *sent < total {
        return Err(SendError::Shrank);
    }
    Ok(())
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
    pace: &mut Pace<'_>,
    sent: &mut u64,
) -> Result<(), SendError> {
    let total = HEADER + len;
    let mut pos = from;
    let mut window = CHUNK;
    while pos < total {
        let want = pace.allow((total - pos).min(window as u64) as usize).await;
        let last = hold && pos + want as u64 == total;
        let written = write_from_file(sock, file, header, pos, want, last);
        let took = match &written {
            Ok(Some(n)) => *n,
            _ => 0,
        };
        pace.unused(want - took);
        match written? {
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
/// a trip through the event loop. `hold` holds the bytes back for what follows (see
/// [`Sock::try_write_last`]): the close after the end of a response, or the next write.
async fn write_all(
    sock: &mut Sock,
    mut buf: &[u8],
    stall: Duration,
    hold: bool,
    pace: &mut Pace<'_>,
) -> Result<(), SendError> {
    while !buf.is_empty() {
        let allowed = pace.allow(buf.len()).await;
        let chunk = &buf[..allowed];
        let written = if hold && allowed == buf.len() {
            sock.try_write_last(chunk)
        } else {
            sock.try_write(chunk)
        };
        let took = match &written {
            Ok(n) => *n,
            Err(_) => 0,
        };
        pace.unused(allowed - took);
        match written {
            Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(sock, stall).await?,
            Err(e) => return Err(SendError::Io(e)),
        }
    }
    Ok(())
}
