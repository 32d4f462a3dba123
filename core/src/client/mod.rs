//! The blocking client: connect, send one FileRequest, receive the FileResponse.
//!
//! [`Fetch`] is the one way in: it names the file and takes the [`FetchOptions`] and a
//! progress callback, then delivers to a file ([`Fetch::to_file`]), a writer, memory, or a
//! buffer of the caller's ([`Fetch::open`]). Downloads to a file go into a temporary file
//! beside the destination and are moved into place, without replacing anything, only once
//! exactly DataLength bytes have arrived: a destination appears whole or not at all.
//!
//! - `options`: the settings and their builder;
//! - `connection`: connecting, the request, reads under the time rules;
//! - `receive`: the data paths (zero-copy into a file where the system has one);
//! - `destination`: the destination path and the temporary file.

mod connection;
mod destination;
mod options;
mod receive;

use std::borrow::Cow;
use std::io::Write;
use std::ops::ControlFlow;

pub use destination::{destination, Fetched};
pub use options::{FetchOptions, FetchOptionsBuilder, InterruptCheck};

use crate::error::{Error, Result};
use connection::Connection;

/// A progress callback: `(received, total)` as data arrives; [`ControlFlow::Break`] stops
/// the fetch with [`Error::Aborted`]. `Send`, so that a fetch can move between threads (or
/// run with a binding's interpreter lock released).
type Progress<'a> = Box<dyn FnMut(u64, u64) -> ControlFlow<()> + Send + 'a>;

/// One fetch of `name` from `host:port`: set it up, then say where the data goes.
///
/// `host` is a name or an IPv4/IPv6 literal (brackets allowed: `[::1]`); every address it
/// resolves to is tried in turn.
///
/// ```no_run
/// use std::ops::ControlFlow;
/// use filefetch::{Fetch, FetchOptions};
///
/// let options = FetchOptions::builder().output("downloads/").build()?;
/// let fetched = Fetch::new("files.example.org", 5000, "report.pdf")
///     .options(&options)
///     .progress(|received, total| {
///         eprint!("\r{received}/{total}");
///         ControlFlow::Continue(())
///     })
///     .to_file()?;
/// println!("saved {} bytes as {}", fetched.bytes, fetched.path.display());
/// # Ok::<(), filefetch::Error>(())
/// ```
pub struct Fetch<'a> {
    host: &'a str,
    port: u16,
    name: &'a str,
    options: Cow<'a, FetchOptions>,
    progress: Option<Progress<'a>>,
}

impl std::fmt::Debug for Fetch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("options", &self.options)
            .field("progress", &self.progress.as_ref().map(|_| "FnMut"))
            .finish()
    }
}

impl<'a> Fetch<'a> {
    /// A fetch of `name` from `host:port` with the default options.
    pub fn new(host: &'a str, port: u16, name: &'a str) -> Self {
        Fetch {
            host,
            port,
            name,
            options: Cow::Owned(FetchOptions::default()),
            progress: None,
        }
    }

    /// Uses `options` instead of the defaults.
    pub fn options(mut self, options: &'a FetchOptions) -> Self {
        self.options = Cow::Borrowed(options);
        self
    }

    /// Calls `progress(received, total)` as data arrives, first with `received` 0;
    /// returning [`ControlFlow::Break`] stops the fetch with [`Error::Aborted`], leaving
    /// nothing behind.
    pub fn progress(
        mut self,
        progress: impl FnMut(u64, u64) -> ControlFlow<()> + Send + 'a,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Downloads into a local file: [`FetchOptions::output`], or the name's last component
    /// in the current directory. An existing destination is refused (before connecting, and
    /// again when the file is moved into place) unless overwriting was asked for.
    pub fn to_file(self) -> Result<Fetched> {
        connection::check_request_name(self.name)?;
        let dest = destination(self.name, self.options.output())?;
        destination::check_free(&dest, &self.options)?;
        let options = self.options.clone();
        let mut response = self.open()?;
        let total = response.len;
        destination::receive_file(
            &mut response.conn,
            total,
            dest,
            &options,
            &mut response.progress,
        )
    }

    /// Downloads into any writer (memory, a pipe, a socket) and returns the size. Data is
    /// written as it arrives, so after an error the writer may hold part of the file; use
    /// [`Fetch::to_file`] for all-or-nothing files.
    pub fn to_writer<W: Write + ?Sized>(self, writer: &mut W) -> Result<u64> {
        let mut response = self.open()?;
        let total = response.len;
        receive::receive_to_writer(&mut response.conn, writer, total, &mut response.progress)?;
        response.conn.expect_end(total)?;
        Ok(total)
    }

    /// Downloads into memory. Memory is taken as data arrives (at most
    /// [`FetchOptions::max_size`] when set), and the data is read straight into the vector.
    pub fn to_vec(self) -> Result<Vec<u8>> {
        let mut response = self.open()?;
        let total = response.len;
        let mut data = Vec::new();
        receive::receive_to_vec(&mut response.conn, &mut data, total, &mut response.progress)?;
        response.conn.expect_end(total)?;
        Ok(data)
    }

    /// Connects, sends the request and reads the response header, for a caller that wants
    /// to choose the buffer once the size is known ([`Response::read_into`]). A file larger
    /// than [`FetchOptions::max_size`] fails here with [`Error::TooLarge`].
    pub fn open(self) -> Result<Response<'a>> {
        let mut conn = Connection::open(self.host, self.port, self.name, &self.options)?;
        let len = conn.read_header(self.name)?;
        if let Some(limit) = self.options.max_size() {
            if len > limit {
                return Err(Error::TooLarge { size: len, limit });
            }
        }
        Ok(Response {
            conn,
            len,
            progress: self
                .progress
                .unwrap_or_else(|| Box::new(|_, _| ControlFlow::Continue(()))),
        })
    }
}

/// A response whose header has arrived: the file's size is known, its data is yet to come.
pub struct Response<'a> {
    conn: Connection,
    len: u64,
    progress: Progress<'a>,
}

impl std::fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response").field("len", &self.len).finish()
    }
}

impl Response<'_> {
    /// The file's size, as the server announced it.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Receives the data straight into `buf`, which must be exactly [`Response::len`] bytes
    /// long (a different length is an [`Error::InvalidOption`] and reads nothing).
    pub fn read_into(mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 != self.len {
            return Err(Error::invalid(
                "buffer",
                format!("is {} bytes, the file {}", buf.len(), self.len),
            ));
        }
        receive::receive_into(&mut self.conn, buf, &mut self.progress)?;
        self.conn.expect_end(self.len)
    }
}

/// Downloads `name` into a local file; see [`Fetch::to_file`].
pub fn fetch(host: &str, port: u16, name: &str, options: &FetchOptions) -> Result<Fetched> {
    Fetch::new(host, port, name).options(options).to_file()
}

/// Downloads `name` into any writer; see [`Fetch::to_writer`].
pub fn fetch_to_writer<W: Write + ?Sized>(
    host: &str,
    port: u16,
    name: &str,
    options: &FetchOptions,
    writer: &mut W,
) -> Result<u64> {
    Fetch::new(host, port, name)
        .options(options)
        .to_writer(writer)
}

/// Downloads `name` into memory; see [`Fetch::to_vec`].
pub fn fetch_bytes(host: &str, port: u16, name: &str, options: &FetchOptions) -> Result<Vec<u8>> {
    Fetch::new(host, port, name).options(options).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameProblem;

    #[test]
    fn request_names_checked_before_connecting() {
        let opts = FetchOptions::new();
        // Nothing listens on port 9 here; the name fails first.
        for (bad, reason) in [
            (String::new(), NameProblem::Empty),
            ("a".repeat(1025), NameProblem::TooLong { len: 1025 }),
            ("a\0b".into(), NameProblem::Nul),
        ] {
            match fetch_bytes("127.0.0.1", 9, &bad, &opts) {
                Err(Error::InvalidName { reason: got }) => assert_eq!(got, reason),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }
}
