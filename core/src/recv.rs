//! The client's receive path: exactly DataLength bytes from the socket into a file or writer.
//!
//! On Linux a download into a file moves through a pipe with `splice(2)`: the socket's pages
//! go into the pipe without a copy, and from the pipe into the file with the only copy the
//! kernel needs. Elsewhere, into a writer, or when asked for the portable path, the data is
//! read into one buffer, allocated once per transfer and reused for every chunk.

use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use crate::client::{is_disconnect, Connection, ReadError};
use crate::error::{Error, Result};

/// Largest read per system call on the buffered path.
const CHUNK: usize = 256 * 1024;

/// Receives `total` bytes into `file`; `path` names it in errors. `portable` forces the
/// buffered path where a zero-copy one exists.
pub(crate) fn receive_to_file(
    conn: &mut Connection,
    file: &mut File,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: &Path,
    portable: bool,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    let mut received = 0;
    #[cfg(target_os = "linux")]
    if !portable && total > 0 {
        match linux::splice_to_file(conn, file, total, progress, path)? {
            linux::Spliced::All => return Ok(()),
            // Splicing is not supported here: carry on from where it stopped.
            linux::Spliced::Unsupported { received: got } => received = got,
        }
    }
    let _ = portable;
    receive(conn, file, received, total, progress, Some(path))
}

/// Receives `total` bytes into `writer`.
pub(crate) fn receive_to_writer<W: Write + ?Sized>(
    conn: &mut Connection,
    writer: &mut W,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    receive(conn, writer, 0, total, progress, None)
}

/// The buffered loop, from `received` bytes already stored up to `total`.
fn receive<W: Write + ?Sized>(
    conn: &mut Connection,
    out: &mut W,
    mut received: u64,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: Option<&Path>,
) -> Result<()> {
    let mut buf = vec![0u8; ((total - received).min(CHUNK as u64) as usize).max(1)];
    while received < total {
        let want = (total - received).min(buf.len() as u64) as usize;
        let n = match conn.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Error::Incomplete {
                    received,
                    expected: total,
                })
            }
            Ok(n) => n,
            Err(e) => return Err(read_error(e, received, total)),
        };
        out.write_all(&buf[..n]).map_err(|source| Error::Io {
            path: path.map(Path::to_path_buf),
            source,
        })?;
        received += n as u64;
        if progress(received, total).is_break() {
            return Err(Error::Aborted);
        }
    }
    Ok(())
}

pub(crate) fn read_error(e: ReadError, received: u64, total: u64) -> Error {
    match e {
        ReadError::Idle => Error::Timeout {
            during: format!("receiving data ({received} of {total} bytes arrived)"),
        },
        ReadError::Interrupted => Error::Interrupted,
        ReadError::Io(e) if is_disconnect(&e) => Error::Incomplete {
            received,
            expected: total,
        },
        ReadError::Io(source) => Error::Io { path: None, source },
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io;
    use std::ops::ControlFlow;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::path::Path;

    use super::read_error;
    use crate::client::Connection;
    use crate::error::{Error, Result};

    /// Pipe capacity asked for: fewer, larger splices. The kernel may grant less.
    const PIPE_SIZE: libc::c_int = 1024 * 1024;

    /// How far splicing got.
    pub(super) enum Spliced {
        /// Every byte is in the file.
        All,
        /// The socket or the file does not support `splice`; `received` bytes are stored and
        /// the rest must be read the ordinary way.
        Unsupported { received: u64 },
    }

    /// A pipe whose two ends close on drop.
    struct Pipe {
        read: OwnedFd,
        write: OwnedFd,
        capacity: usize,
    }

    impl Pipe {
        fn new() -> io::Result<Pipe> {
            let mut fds = [0 as RawFd; 2];
            // SAFETY: `fds` has room for the two descriptors pipe2 writes.
            if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
            let (read, write) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // SAFETY: F_SETPIPE_SZ / F_GETPIPE_SZ take an int and touch only the pipe.
            let capacity = unsafe {
                libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
                libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
            };
            let capacity = usize::try_from(capacity).unwrap_or(0).max(4096);
            Ok(Pipe {
                read,
                write,
                capacity,
            })
        }
    }

    fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
        // SAFETY: both descriptors are open for the call; null offsets mean "the current
        // position", which splice requires for the pipe and the socket.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    /// Socket to pipe to file, `total` bytes. Errors are reported as the buffered path
    /// would report them (timeouts, resets, a short body, a full disk).
    pub(super) fn splice_to_file(
        conn: &mut Connection,
        file: &mut File,
        total: u64,
        progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
        path: &Path,
    ) -> Result<Spliced> {
        let Ok(pipe) = Pipe::new() else {
            return Ok(Spliced::Unsupported { received: 0 });
        };
        let file_fd = file.as_raw_fd();
        let pipe_in = pipe.write.as_raw_fd();
        let pipe_out = pipe.read.as_raw_fd();
        let mut received = 0u64;
        while received < total {
            let want = (total - received).min(pipe.capacity as u64) as usize;
            // The pipe is empty here, so this waits only for the socket (SO_RCVTIMEO, set to
            // the idle or interrupt-poll interval, bounds each wait).
            let n = match conn.read_with(|sock| splice(sock.as_raw_fd(), pipe_in, want)) {
                Ok(0) => {
                    return Err(Error::Incomplete {
                        received,
                        expected: total,
                    })
                }
                Ok(n) => n,
                Err(crate::client::ReadError::Io(e)) if unsupported(&e) && received == 0 => {
                    return Ok(Spliced::Unsupported { received });
                }
                Err(e) => return Err(read_error(e, received, total)),
            };
            let mut left = n;
            while left > 0 {
                match splice(pipe_out, file_fd, left) {
                    Ok(0) => {
                        return Err(Error::Io {
                            path: Some(path.to_path_buf()),
                            source: io::ErrorKind::WriteZero.into(),
                        })
                    }
                    Ok(m) => left -= m,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if unsupported(&e) && left == n => {
                        // The file system cannot take spliced pages: copy what the pipe
                        // holds and let the buffered loop do the rest.
                        drain(pipe_out, file, left, path)?;
                        received += n as u64;
                        if progress(received, total).is_break() {
                            return Err(Error::Aborted);
                        }
                        return Ok(Spliced::Unsupported { received });
                    }
                    Err(source) => {
                        return Err(Error::Io {
                            path: Some(path.to_path_buf()),
                            source,
                        })
                    }
                }
            }
            received += n as u64;
            if progress(received, total).is_break() {
                return Err(Error::Aborted);
            }
        }
        Ok(Spliced::All)
    }

    fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
        )
    }

    /// Copies `len` bytes from the pipe into the file with read and write.
    fn drain(pipe_out: RawFd, file: &mut File, mut len: usize, path: &Path) -> Result<()> {
        use std::io::{Read, Write};
        // SAFETY: the descriptor stays open (owned by the pipe) for the borrowed File's life;
        // ManuallyDrop keeps the File from closing it.
        let mut pipe = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(pipe_out) });
        let mut buf = vec![0u8; len.min(super::CHUNK)];
        while len > 0 {
            let want = len.min(buf.len());
            let n = match pipe.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(Error::Io { path: None, source }),
            };
            file.write_all(&buf[..n]).map_err(|source| Error::Io {
                path: Some(path.to_path_buf()),
                source,
            })?;
            len -= n;
        }
        Ok(())
    }
}
