//! The server's send path: the 8-byte header and the file, with no progress for the
//! send-stall timeout ending the transfer.
//!
//! Small files (and every file on the portable path) are read into one buffer behind the
//! header and leave in a single write. Larger files on Linux go out with `sendfile(2)`, the
//! header queued with `MSG_MORE` so that it shares the first segment with the data: the
//! original `client.py` reads the header with a single `recv(8)`.

use std::fs::File;
use std::io;
use std::time::Duration;

use tokio::time::timeout;

use crate::conn::Sock;
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};

/// Files up to this size are sent from a buffer in one write.
const SMALL_FILE: u64 = 64 * 1024;
/// Buffer size of the portable path.
const CHUNK: usize = 256 * 1024;
/// Most bytes handed to one `sendfile` call, so one fast client cannot hog a worker.
#[cfg(target_os = "linux")]
const SENDFILE_CAP: u64 = 2 * 1024 * 1024;

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

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        SendError::Io(e)
    }
}

/// Sends a StatusCode 0 response. With `hold`, the bytes wait for the close that follows (see
/// [`Sock::try_write_last`]).
pub(crate) async fn send_not_found(
    sock: &mut Sock,
    stall: Duration,
    hold: bool,
) -> Result<(), SendError> {
    write_all(sock, &ResponseHeader::NotFound.encode(), stall, hold).await
}

/// Sends StatusCode 1, `len`, and exactly `len` bytes of `file`, or `response` (that whole
/// response, header included, read before) when given. `sent` counts file bytes that left,
/// also when an error cuts the transfer short. With `fast`, large files go out with
/// `sendfile` and the last write of a small one waits for the close that follows, to leave
/// with the FIN in one segment.
pub(crate) async fn send_file(
    sock: &mut Sock,
    file: &File,
    response: Option<&[u8]>,
    len: u32,
    stall: Duration,
    fast: bool,
    sent: &mut u64,
) -> Result<(), SendError> {
    let header = ResponseHeader::Found(len).encode();
    let len = u64::from(len);
    if let Some(response) = response {
        debug_assert_eq!(response.len() as u64, RESPONSE_HEADER_LEN as u64 + len);
        write_all(sock, response, stall, fast).await?;
        *sent = len;
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    if fast && len > SMALL_FILE {
        return linux::send_file(sock, file, header, len, stall, sent).await;
    }
    send_buffered(sock, file, header, len, stall, fast, sent).await
}

/// The portable path: `pread` into a reused buffer, header in front of the first chunk.
async fn send_buffered(
    sock: &mut Sock,
    file: &File,
    header: [u8; RESPONSE_HEADER_LEN],
    len: u64,
    stall: Duration,
    hold: bool,
    sent: &mut u64,
) -> Result<(), SendError> {
    let first = len.min(CHUNK as u64) as usize;
    let mut buf = Vec::with_capacity(RESPONSE_HEADER_LEN + first);
    buf.extend_from_slice(&header);
    buf.resize(RESPONSE_HEADER_LEN + first, 0);
    read_exact_at(file, &mut buf[RESPONSE_HEADER_LEN..], 0)?;
    write_all(sock, &buf, stall, hold && first as u64 == len).await?;
    *sent = first as u64;
    while *sent < len {
        let n = (len - *sent).min(CHUNK as u64) as usize;
        buf.resize(n, 0);
        read_exact_at(file, &mut buf[..n], *sent)?;
        write_all(sock, &buf[..n], stall, hold && *sent + n as u64 == len).await?;
        *sent += n as u64;
    }
    Ok(())
}

/// Fills `buf` from `offset`; a file that ends first has shrunk since it was measured.
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> Result<(), SendError> {
    while !buf.is_empty() {
        match read_at(file, buf, offset) {
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

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

/// Writes all of `buf`; each write must make progress within `stall`. Writes that fit in the
/// socket's buffer go out at once, without a trip through the event loop. `last` marks the
/// end of the response, held for the close that follows (see [`Sock::try_write_last`]).
async fn write_all(
    sock: &mut Sock,
    mut buf: &[u8],
    stall: Duration,
    last: bool,
) -> Result<(), SendError> {
    while !buf.is_empty() {
        let now = if last {
            sock.try_write_last(buf)
        } else {
            sock.try_write(buf)
        };
        let written = match now {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let wait = async {
                    if last {
                        sock.write_last(buf).await
                    } else {
                        sock.write(buf).await
                    }
                };
                match timeout(stall, wait).await {
                    Err(_) => return Err(SendError::Stalled),
                    Ok(result) => result,
                }
            }
            result => result,
        };
        match written {
            Ok(0) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(n) => buf = &buf[n..],
            Err(e) => return Err(SendError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use tokio::time::timeout;

    use super::{SendError, RESPONSE_HEADER_LEN, SENDFILE_CAP};
    use crate::conn::{send_more, Sock};

    pub(super) async fn send_file(
        sock: &mut Sock,
        file: &File,
        header: [u8; RESPONSE_HEADER_LEN],
        len: u64,
        stall: Duration,
        sent: &mut u64,
    ) -> Result<(), SendError> {
        let fd = sock.raw_fd();
        let mut off = 0;
        while off < header.len() {
            let rest = &header[off..];
            // Held (MSG_MORE) to share a segment with the first data.
            let send = || send_more(fd, rest);
            off += now_or_within(sock, stall, send).await?;
        }

        let file_fd = file.as_raw_fd();
        let mut offset: libc::off_t = 0;
        while *sent < len {
            let count = (len - *sent).min(SENDFILE_CAP) as usize;
            let sendfile = || {
                // SAFETY: both descriptors are open; `offset` is a valid off_t the kernel
                // advances by the bytes it sent.
                let n = unsafe { libc::sendfile(fd, file_fd, &mut offset, count) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            };
            match now_or_within(sock, stall, sendfile).await {
                Ok(0) => return Err(SendError::Shrank),
                Ok(n) => *sent += n,
                Err(SendError::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            // Let other connections on this worker run between chunks.
            tokio::task::consume_budget().await;
        }
        Ok(())
    }

    /// Runs `f` at once if the socket has room, else as soon as it has, within `stall`.
    async fn now_or_within<R>(
        sock: &mut Sock,
        stall: Duration,
        mut f: impl FnMut() -> io::Result<R>,
    ) -> Result<R, SendError> {
        match sock.try_send_with(&mut f) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match timeout(stall, sock.send_with(f)).await {
                    Err(_) => Err(SendError::Stalled),
                    Ok(result) => Ok(result?),
                }
            }
            result => Ok(result?),
        }
    }
}
