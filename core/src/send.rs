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

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

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

/// Sends a StatusCode 0 response.
pub(crate) async fn send_not_found(
    stream: &mut TcpStream,
    stall: Duration,
) -> Result<(), SendError> {
    write_all(stream, &ResponseHeader::NotFound.encode(), stall).await
}

/// Sends StatusCode 1, `len`, and exactly `len` bytes of `file`. `sent` counts file bytes
/// that left, also when an error cuts the transfer short.
pub(crate) async fn send_file(
    stream: &mut TcpStream,
    file: &File,
    len: u32,
    stall: Duration,
    zero_copy: bool,
    sent: &mut u64,
) -> Result<(), SendError> {
    let header = ResponseHeader::Found(len).encode();
    let len = u64::from(len);
    #[cfg(target_os = "linux")]
    if zero_copy && len > SMALL_FILE {
        return linux::send_file(stream, file, header, len, stall, sent).await;
    }
    let _ = zero_copy;
    send_buffered(stream, file, header, len, stall, sent).await
}

/// The portable path: `pread` into a reused buffer, header in front of the first chunk.
async fn send_buffered(
    stream: &mut TcpStream,
    file: &File,
    header: [u8; RESPONSE_HEADER_LEN],
    len: u64,
    stall: Duration,
    sent: &mut u64,
) -> Result<(), SendError> {
    let first = len.min(CHUNK as u64) as usize;
    let mut buf = Vec::with_capacity(RESPONSE_HEADER_LEN + first);
    buf.extend_from_slice(&header);
    buf.resize(RESPONSE_HEADER_LEN + first, 0);
    read_exact_at(file, &mut buf[RESPONSE_HEADER_LEN..], 0)?;
    write_all(stream, &buf, stall).await?;
    *sent = first as u64;
    while *sent < len {
        let n = (len - *sent).min(CHUNK as u64) as usize;
        buf.resize(n, 0);
        read_exact_at(file, &mut buf[..n], *sent)?;
        write_all(stream, &buf[..n], stall).await?;
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

/// Writes all of `buf`; each write must make progress within `stall`.
async fn write_all(
    stream: &mut TcpStream,
    mut buf: &[u8],
    stall: Duration,
) -> Result<(), SendError> {
    while !buf.is_empty() {
        match timeout(stall, stream.write(buf)).await {
            Err(_) => return Err(SendError::Stalled),
            Ok(Ok(0)) => return Err(SendError::Io(io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(SendError::Io(e)),
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

    use tokio::io::Interest;
    use tokio::net::TcpStream;
    use tokio::time::timeout;

    use super::{SendError, RESPONSE_HEADER_LEN, SENDFILE_CAP};

    pub(super) async fn send_file(
        stream: &mut TcpStream,
        file: &File,
        header: [u8; RESPONSE_HEADER_LEN],
        len: u64,
        stall: Duration,
        sent: &mut u64,
    ) -> Result<(), SendError> {
        let sock = stream.as_raw_fd();
        let mut off = 0;
        while off < header.len() {
            let rest = &header[off..];
            let send = || {
                // SAFETY: `rest` is valid for reads of its length for the whole call.
                let n = unsafe {
                    libc::send(
                        sock,
                        rest.as_ptr().cast(),
                        rest.len(),
                        libc::MSG_MORE | libc::MSG_NOSIGNAL,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            };
            match timeout(stall, stream.async_io(Interest::WRITABLE, send)).await {
                Err(_) => return Err(SendError::Stalled),
                Ok(n) => off += n?,
            }
        }

        let fd = file.as_raw_fd();
        let mut offset: libc::off_t = 0;
        while *sent < len {
            let count = (len - *sent).min(SENDFILE_CAP) as usize;
            let sendfile = || {
                // SAFETY: both descriptors are open; `offset` is a valid off_t the kernel
                // advances by the bytes it sent.
                let n = unsafe { libc::sendfile(sock, fd, &mut offset, count) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as u64)
                }
            };
            match timeout(stall, stream.async_io(Interest::WRITABLE, sendfile)).await {
                Err(_) => return Err(SendError::Stalled),
                Ok(Ok(0)) => return Err(SendError::Shrank),
                Ok(Ok(n)) => *sent += n,
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(SendError::Io(e)),
            }
            // Let other connections on this worker run between chunks.
            tokio::task::consume_budget().await;
        }
        Ok(())
    }
}
