//! The blocking client's receive paths: exactly DataLength bytes from the socket into a file,
//! a writer or memory.
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
use std::path::Path;

use super::connection::Connection;
use super::digest::Hashing;
use super::rules::{self, ProgressFn, ReadError, Tally, CHUNK};
use crate::error::{Error, Result};
use crate::sys::Splicer;

/// Receives `total` bytes into `file`; `path` names it in errors. `portable` forces the
/// buffered path where a zero-copy one exists, and so does `hash`, which is fed every byte.
pub(crate) fn receive_to_file(
    conn: &mut Connection,
    file: &mut File,
    total: u64,
    progress: &mut ProgressFn<'_>,
    path: &Path,
    portable: bool,
    hash: Option<&mut Hashing>,
) -> Result<()> {
    let splice = !portable && total > 0 && hash.is_none();
    let mut tally = Tally::start(total, progress, hash)?;
    if let Some(pipe) = splice.then(Splicer::new).flatten() {
        match splice_to_file(&pipe, conn, file, &mut tally, path)? {
            Spliced::All => return Ok(()),
            // Splicing is not supported here: carry on from where it stopped.
            Spliced::Unsupported => {}
        }
    }
    receive(conn, file, &mut tally, Some(path))
}

/// Receives `total` bytes into `writer`, feeding `hash` if given.
pub(crate) fn receive_to_writer<W: Write + ?Sized>(
    conn: &mut Connection,
    writer: &mut W,
    total: u64,
    progress: &mut ProgressFn<'_>,
    hash: Option<&mut Hashing>,
) -> Result<()> {
    let mut tally = Tally::start(total, progress, hash)?;
    receive(conn, writer, &mut tally, None)
}

/// Receives exactly `buf.len()` bytes (the announced length) straight into `buf`, feeding
/// `hash` if given.
pub(crate) fn receive_into(
    conn: &mut Connection,
    buf: &mut [u8],
    progress: &mut ProgressFn<'_>,
    hash: Option<&mut Hashing>,
) -> Result<()> {
    let mut tally = Tally::start(buf.len() as u64, progress, hash)?;
    while !tally.done() {
        let at = tally.received() as usize;
        let end = buf.len().min(at + CHUNK);
        let n = tally.checked(conn.read(&mut buf[at..end]))?;
        tally.take(&buf[at..at + n])?;
    }
    Ok(())
}

/// Receives `total` bytes into memory, read straight into the vector, feeding `hash` if
/// given.
pub(crate) fn receive_to_vec(
    conn: &mut Connection,
    total: u64,
    progress: &mut ProgressFn<'_>,
    hash: Option<&mut Hashing>,
) -> Result<Vec<u8>> {
    let mut data = Vec::new();
    let mut tally = Tally::start(total, progress, hash)?;
    while !tally.done() {
        let at = tally.received() as usize;
        rules::grow(&mut data, at, total)?;
        let n = tally.checked(conn.read(&mut data[at..]))?;
        tally.take(&data[at..at + n])?;
    }
    data.truncate(tally.received() as usize);
    Ok(data)
}

/// The buffered loop, from what `tally` has up to its total; `path` names the file written,
/// if it is one.
fn receive<W: Write + ?Sized>(
    conn: &mut Connection,
    out: &mut W,
    tally: &mut Tally<'_>,
    path: Option<&Path>,
) -> Result<()> {
    let mut buf = tally.buffer();
    while !tally.done() {
        let want = tally.left().min(buf.len() as u64) as usize;
        let n = tally.checked(conn.read(&mut buf[..want]))?;
        out.write_all(&buf[..n])
            .map_err(|source| rules::write_error(path, source))?;
        tally.take(&buf[..n])?;
    }
    Ok(())
}

/// How far splicing got.
enum Spliced {
    /// Every byte is in the file.
    All,
    /// The socket or the file does not support `splice`; what the tally counts is stored
    /// and the rest must be read the ordinary way.
    Unsupported,
}

/// Socket to pipe to file, the rest of what `tally` expects. Errors are reported as the
/// buffered path would report them (timeouts, resets, a short body, a full disk).
fn splice_to_file(
    pipe: &Splicer,
    conn: &mut Connection,
    file: &mut File,
    tally: &mut Tally<'_>,
    path: &Path,
) -> Result<Spliced> {
    while !tally.done() {
        let want = tally.left().min(pipe.capacity() as u64) as usize;
        // The pipe is empty here, so this waits only for the socket (SO_RCVTIMEO, set to
        // the idle or interrupt-poll interval, bounds each wait).
        let n = match conn.read_with(|sock| pipe.fill_from(sock, want)) {
            Err(ReadError::Io(e)) if Splicer::unsupported(&e) && tally.received() == 0 => {
                return Ok(Spliced::Unsupported);
            }
            read => tally.checked(read)?,
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
                    tally.advance(n)?;
                    return Ok(Spliced::Unsupported);
                }
                Err(source) => return Err(file_error(path, source)),
            }
        }
        tally.advance(n)?;
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
    rules::write_error(Some(path), source)
}
