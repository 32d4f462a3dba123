//! The client's receive path: exactly DataLength bytes from the socket into a file or writer.
//!
//! One buffer is allocated per transfer and reused for every chunk.

use std::fs::File;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;

use crate::client::{is_disconnect, Connection, ReadError};
use crate::error::{Error, Result};

/// Largest read per system call.
const CHUNK: usize = 256 * 1024;

/// Receives `total` bytes into `file`; `path` names it in errors.
pub(crate) fn receive_to_file(
    conn: &mut Connection,
    file: &mut File,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: &Path,
) -> Result<()> {
    receive(conn, file, total, progress, Some(path))
}

/// Receives `total` bytes into `writer`.
pub(crate) fn receive_to_writer<W: Write + ?Sized>(
    conn: &mut Connection,
    writer: &mut W,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
) -> Result<()> {
    receive(conn, writer, total, progress, None)
}

fn receive<W: Write + ?Sized>(
    conn: &mut Connection,
    out: &mut W,
    total: u64,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    path: Option<&Path>,
) -> Result<()> {
    if progress(0, total).is_break() {
        return Err(Error::Aborted);
    }
    let mut buf = vec![0u8; (total.min(CHUNK as u64) as usize).max(1)];
    let mut received = 0u64;
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
