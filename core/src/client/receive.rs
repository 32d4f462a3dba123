//! The client's receive path: exactly DataLength bytes from the socket into a file or writer.
//!
//! On Linux a download into a file moves through a pipe with `splice(2)`: the socket's pages
//! go into the pipe without a copy, and from the pipe into the file with the only copy the
//! kernel needs. Elsewhere, into a writer, or when asked for the portable path, the data is
//! read into one buffer, allocated once per transfer and reused for every chunk. Into memory,
//! the data is read straight into the caller's buffer, sized from DataLength.
//!
//! When a SHA-256 digest is wanted, it is computed from each chunk as it arrives, so the file
//! is never read back. That needs the data in the process, which `splice` avoids: a digest
//! forces the buffered path.

use std::fs::File;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::Path;

use super::connection::{is_disconnect, Connection, ReadError};
use super::digest::Hashing;
use crate::error::{Error, Result, TimeoutPhase};
use crate::sys::Splicer;

/// Largest read per system call on the buffered path.
const CHUNK: usize = 256 * 1024;

/// Receives `total` bytes into `file`; `path` names it in errors. `portable` forces the
/// buffered path where a zero-copy one exists, and so does `hash`, which is fed every byte.
pub(crate) fn receive_to_file(
    conn: &mut Connection,
    file: &mut File,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: &Path,
    portable: bool,
    hash: Option<&mut Hashing>,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    let mut received = 0;
    let splicer = if portable || total == 0 || hash.is_some() {
        None
    } else {
        Splicer::new()
    };
    if let Some(pipe) = splicer {
        match splice_to_file(&pipe, conn, file, total, progress, path)? {
            Spliced::All => return Ok(()),
            // Splicing is not supported here: carry on from where it stopped.
            Spliced::Unsupported { received: got } => received = got,
        }
    }
    receive(conn, file, received, total, progress, Some(path), hash)
}

/// Receives `total` bytes into `writer`, feeding `hash` if given.
pub(crate) fn receive_to_writer<W: Write + ?Sized>(
    conn: &mut Connection,
    writer: &mut W,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    hash: Option<&mut Hashing>,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    receive(conn, writer, 0, total, progress, None, hash)
}

/// Receives exactly `buf.len()` bytes (the announced length) straight into `buf`, feeding
/// `hash` if given.
pub(crate) fn receive_into(
    conn: &mut Connection,
    buf: &mut [u8],
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    mut hash: Option<&mut Hashing>,
) -> Result<()> {
    let total = buf.len() as u64;
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    let mut received = 0;
    while received < buf.len() {
        let end = buf.len().min(received + CHUNK);
        match conn.read(&mut buf[received..end]) {
            Ok(0) => {
                return Err(Error::Incomplete {
                    received: received as u64,
                    expected: total,
                })
            }
            Ok(n) => {
                if let Some(hash) = hash.as_deref_mut() {
                    hash.update(&buf[received..received + n]);
                }
                received += n;
            }
            Err(e) => return Err(read_error(e, received as u64, total)),
        }
        if progress(received as u64, total).is_break() {
            return Err(Error::Aborted);
        }
    }
    Ok(())
}

/// Receives `total` bytes into `data`, read straight into it, feeding `hash` if given.
/// Memory is taken as data arrives, doubling at most, so an announced length alone cannot
/// make the client allocate.
pub(crate) fn receive_to_vec(
    conn: &mut Connection,
    data: &mut Vec<u8>,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    mut hash: Option<&mut Hashing>,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    let mut received = 0usize;
    while (received as u64) < total {
        if data.len() == received {
            let left = total - received as u64;
            let room = usize::try_from(left.min(received.max(CHUNK) as u64)).unwrap_or(CHUNK);
            data.try_reserve_exact(room).map_err(|_| Error::Io {
                path: None,
                source: io::ErrorKind::OutOfMemory.into(),
            })?;
            data.resize(received + room, 0);
        }
        match conn.read(&mut data[received..]) {
            Ok(0) => {
                data.truncate(received);
                return Err(Error::Incomplete {
                    received: received as u64,
                    expected: total,
                });
            }
            Ok(n) => {
                if let Some(hash) = hash.as_deref_mut() {
                    hash.update(&data[received..received + n]);
                }
                received += n;
            }
            Err(e) => {
                data.truncate(received);
                return Err(read_error(e, received as u64, total));
            }
        }
        if progress(received as u64, total).is_break() {
            return Err(Error::Aborted);
        }
    }
    data.truncate(received);
    Ok(())
}

/// The buffered loop, from `received` bytes already stored up to `total`. `hash`, when
/// given, is fed every byte from here on (so `received` is 0 when there is one).
fn receive<W: Write + ?Sized>(
    conn: &mut Connection,
    out: &mut W,
    mut received: u64,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: Option<&Path>,
    mut hash: Option<&mut Hashing>,
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
        if let Some(hash) = hash.as_deref_mut() {
            hash.update(&buf[..n]);
        }
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

/// How far splicing got.
enum Spliced {
    /// Every byte is in the file.
    All,
    /// The socket or the file does not support `splice`; `received` bytes are stored and
    /// the rest must be read the ordinary way.
    Unsupported { received: u64 },
}

/// Socket to pipe to file, `total` bytes. Errors are reported as the buffered path would
/// report them (timeouts, resets, a short body, a full disk).
fn splice_to_file(
    pipe: &Splicer,
    conn: &mut Connection,
    file: &mut File,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: &Path,
) -> Result<Spliced> {
    let mut received = 0u64;
    while received < total {
        let want = (total - received).min(pipe.capacity() as u64) as usize;
        // The pipe is empty here, so this waits only for the socket (SO_RCVTIMEO, set to
        // the idle or interrupt-poll interval, bounds each wait).
        let n = match conn.read_with(|sock| pipe.fill_from(sock, want)) {
            Ok(0) => {
                return Err(Error::Incomplete {
                    received,
                    expected: total,
                })
            }
            Ok(n) => n,
            Err(ReadError::Io(e)) if Splicer::unsupported(&e) && received == 0 => {
                return Ok(Spliced::Unsupported { received });
            }
            Err(e) => return Err(read_error(e, received, total)),
        };
        let mut left = n;
        while left > 0 {
            match pipe.drain_to(file, left) {
                Ok(0) => return Err(file_error(path, io::ErrorKind::WriteZero.into())),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if Splicer::unsupported(&e) && left == n => {
                    // The file system cannot take spliced pages: copy what the pipe holds
                    // and let the buffered loop do the rest.
                    drain(pipe, file, left, path)?;
                    received += n as u64;
                    if progress(received, total).is_break() {
                        return Err(Error::Aborted);
                    }
                    return Ok(Spliced::Unsupported { received });
                }
                Err(source) => return Err(file_error(path, source)),
            }
        }
        received += n as u64;
        if progress(received, total).is_break() {
            return Err(Error::Aborted);
        }
    }
    Ok(Spliced::All)
}

/// Copies `len` bytes from the pipe into the file with read and write.
fn drain(pipe: &Splicer, file: &mut File, mut len: usize, path: &Path) -> Result<()> {
    let mut buf = vec![0u8; len.min(CHUNK)];
    while len > 0 {
        let want = len.min(buf.len());
        let n = match pipe.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Io { path: None, source }),
        };
        file.write_all(&buf[..n])
            .map_err(|source| file_error(path, source))?;
        len -= n;
    }
    Ok(())
}

fn file_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: Some(path.to_path_buf()),
        source,
    }
}
