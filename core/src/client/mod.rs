//! The client: connect, send one FileRequest, receive the FileResponse; blocking, or on tokio.
//!
//! [`Fetch`] is the one way in: it names the file and takes the [`FetchOptions`] and a
//! progress callback, then delivers to a file ([`Fetch::to_file`]), a writer, memory, or a
//! buffer of the caller's ([`Fetch::open`]). Downloads to a file go into a temporary file
//! beside the destination and are moved into place, without replacing anything, only once
//! exactly DataLength bytes have arrived: a destination appears whole or not at all. A failed
//! attempt may be retried ([`FetchOptionsBuilder::retries`]), each time from the start.
//! [`FetchMany`] fetches a list of files, several at a time. A fetch can check the data
//! against a SHA-256 digest ([`Fetch::expect_sha256`]) or report the digest
//! ([`FetchOptionsBuilder::sha256`]).
//!
//! The same fetch runs on a tokio runtime with [`Fetch::to_file_async`],
//! [`Fetch::to_vec_async`] and [`Fetch::to_async_writer`] (or [`fetch_async`],
//! [`fetch_bytes_async`] and [`fetch_to_async_writer`]): the same options, checks, errors and
//! retries, no thread per fetch, and a future that can be dropped at any point, leaving
//! nothing behind.
//!
//! - `options`: the settings and their builder;
//! - `rules`: what both clients decide alike, without I/O: the request, the time rules, the
//!   response header, the accounting of the data, what each failure is reported as;
//! - `connection`: the blocking connection, the request, reads under the time rules;
//! - `receive`: the blocking data paths (zero-copy into a file where the system has one);
//! - `asynchronous`: the connection, data paths and fetches on tokio;
//! - `destination`: the destination path, the temporary file and its landing;
//! - `retry`: which failures are retried, and the wait between attempts;
//! - `digest`: the SHA-256 digest, its hexadecimal form, and `sha256sum`'s lists;
//! - `many`: many files at once, on a bounded number of threads.

mod asynchronous;
mod connection;
mod destination;
mod digest;
mod many;
mod options;
mod receive;
mod retry;
mod rules;

use std::borrow::Cow;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use asynchronous::{fetch_async, fetch_bytes_async, fetch_to_async_writer};
pub use destination::{destination, Fetched};
pub use digest::{Sha256Digest, Sha256Sums};
pub use many::{fetch_many, FetchMany};
pub use options::{FetchOptions, FetchOptionsBuilder, InterruptCheck};

use crate::error::{Error, Result};
use connection::Connection;
use digest::Hashing;
use retry::Retries;

/// A progress callback: `(received, total)` as data arrives; [`ControlFlow::Break`] stops
/// the fetch with [`Error::Aborted`]. `Send`, so that a fetch can move between threads (or
/// run with a binding's interpreter lock released).
type Progress<'a> = Box<dyn FnMut(u64, u64) -> ControlFlow<()> + Send + 'a>;

/// Told of each retry of one fetch, besides the options' own hook (see
/// [`FetchOptionsBuilder::on_retry`]): how [`FetchMany`] names the file that is retried.
type RetryReport<'a> = Box<dyn Fn(&Error, u32, Duration) + Send + Sync + 'a>;

/// One fetch of `name` from `host:port`: set it up, then say where the data goes.
///
/// `host` is a name or an IPv4/IPv6 literal (brackets allowed: `[::1]`); every address it
/// resolves to is tried in turn. [`Fetch::new`] borrows the names and [`Fetch::options`] the
/// options; [`Fetch::new_owned`] and [`Fetch::options_owned`] take them, for a fetch (and its
/// future) that borrows nothing.
///
/// # Retries
///
/// With [`FetchOptionsBuilder::retries`], an attempt that fails in a way the next may not
/// (the host unreachable, the connection closed before the response or cut short, a timeout
/// other than the limit on the whole fetch) is followed by another, after a wait that
/// doubles each time. A server's answer (no such file, a malformed header) is never
/// retried, and [`FetchOptionsBuilder::max_time`] bounds all the attempts and waits
/// together. Each attempt starts from nothing: [`Fetch::to_file`] removes the failed
/// attempt's temporary file and checks the destination again, [`Fetch::to_vec`] starts from
/// an empty vector, and the progress callback starts again from 0. [`Fetch::to_writer`]
/// retries only while nothing has reached the writer, and [`Fetch::open`] only up to the
/// header. The error returned is the last attempt's.
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
    plan: Plan<'a>,
    progress: Option<Progress<'a>>,
}

/// What a fetch asks for and how, apart from its progress callback (which is called, never
/// shared): what every attempt reads, and what an asynchronous fetch holds across its waits.
struct Plan<'a> {
    host: Cow<'a, str>,
    port: u16,
    name: Cow<'a, str>,
    options: Cow<'a, FetchOptions>,
    expected: Option<Sha256Digest>,
    retry_report: Option<RetryReport<'a>>,
}

impl std::fmt::Debug for Fetch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = &self.plan;
        f.debug_struct("Fetch")
            .field("host", &plan.host)
            .field("port", &plan.port)
            .field("name", &plan.name)
            .field("options", &plan.options)
            .field("progress", &self.progress.as_ref().map(|_| "FnMut"))
            .field("expected", &plan.expected)
            .finish_non_exhaustive()
    }
}

impl Fetch<'static> {
    /// A fetch of `name` from `host:port` with the default options, owning both names: with
    /// [`Fetch::options_owned`] (and a progress callback that borrows nothing) the fetch,
    /// and the future of an asynchronous one, is `'static`, as `tokio::spawn` requires.
    ///
    /// ```no_run
    /// use filefetch::{Fetch, FetchOptions};
    ///
    /// # async fn run(host: String, names: Vec<String>) -> filefetch::Result<()> {
    /// let options = FetchOptions::builder().output("downloads/").build()?;
    /// let mut tasks = tokio::task::JoinSet::new();
    /// for name in names {
    ///     let fetch = Fetch::new_owned(host.clone(), 5000, name).options_owned(options.clone());
    ///     tasks.spawn(fetch.to_file_async());
    /// }
    /// while let Some(done) = tasks.join_next().await {
    ///     let fetched = done.expect("no fetch panics")?;
    ///     println!("{}", fetched.path.display());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn new_owned(host: impl Into<String>, port: u16, name: impl Into<String>) -> Self {
        Fetch::with(Cow::Owned(host.into()), port, Cow::Owned(name.into()))
    }
}

impl<'a> Fetch<'a> {
    /// A fetch of `name` from `host:port` with the default options.
    pub fn new(host: &'a str, port: u16, name: &'a str) -> Self {
        Fetch::with(Cow::Borrowed(host), port, Cow::Borrowed(name))
    }

    fn with(host: Cow<'a, str>, port: u16, name: Cow<'a, str>) -> Self {
        Fetch {
            plan: Plan {
                host,
                port,
                name,
                options: Cow::Owned(FetchOptions::default()),
                expected: None,
                retry_report: None,
            },
            progress: None,
        }
    }

    /// Uses `options` instead of the defaults.
    pub fn options(mut self, options: &'a FetchOptions) -> Self {
        self.plan.options = Cow::Borrowed(options);
        self
    }

    /// Uses `options` instead of the defaults, taking them (a [`FetchOptions`] is cheap to
    /// clone: its callbacks are shared).
    pub fn options_owned(mut self, options: FetchOptions) -> Self {
        self.plan.options = Cow::Owned(options);
        self
    }

    /// Calls `progress(received, total)` as data arrives, first with `received` 0 (and again
    /// from 0 on each retry); returning [`ControlFlow::Break`] stops the fetch with
    /// [`Error::Aborted`], leaving nothing behind.
    pub fn progress(
        mut self,
        progress: impl FnMut(u64, u64) -> ControlFlow<()> + Send + 'a,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Checks the data against `digest`, its expected SHA-256, computed as the data arrives
    /// (so on the buffered receive path: see [`FetchOptionsBuilder::sha256`]). Data with
    /// another digest fails with [`Error::ChecksumMismatch`], which is not retried:
    /// [`Fetch::to_file`] then leaves nothing behind and keeps an existing destination as it
    /// was (even when overwriting), [`Fetch::to_vec`] returns no data, and
    /// [`Fetch::to_writer`] and [`Response::read_into`] return the error once all the data
    /// has been delivered (check it before trusting what they wrote).
    ///
    /// ```no_run
    /// use filefetch::{Fetch, Sha256Digest};
    /// let digest: Sha256Digest =
    ///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".parse()?;
    /// let fetched = Fetch::new("files.example.org", 5000, "abc.txt")
    ///     .expect_sha256(digest)
    ///     .to_file()?;
    /// assert_eq!(fetched.sha256, Some(digest));
    /// # Ok::<(), filefetch::Error>(())
    /// ```
    pub fn expect_sha256(mut self, digest: impl Into<Sha256Digest>) -> Self {
        self.plan.expected = Some(digest.into());
        self
    }

    /// Calls `report` before each retry, after the options' own hook.
    fn report_retries(mut self, report: impl Fn(&Error, u32, Duration) + Send + Sync + 'a) -> Self {
        self.plan.retry_report = Some(Box::new(report));
        self
    }

    /// What the fetch asks for, and its progress callback (or one that does nothing).
    fn into_parts(self) -> (Plan<'a>, Progress<'a>) {
        let progress = self
            .progress
            .unwrap_or_else(|| Box::new(|_, _| ControlFlow::Continue(())));
        (self.plan, progress)
    }

    /// Downloads into a local file: [`FetchOptions::output`], or the name's last component
    /// in the current directory. An existing destination is refused (before each attempt,
    /// and again when the file is moved into place) unless overwriting was asked for.
    pub fn to_file(self) -> Result<Fetched> {
        let (plan, mut progress) = self.into_parts();
        rules::check_request_name(&plan.name)?;
        let dest = destination(&plan.name, plan.options.output())?;
        let mut retries = plan.retries();
        loop {
            // A failed attempt's temporary file is gone when `receive_file` returns.
            let attempt = destination::check_free(&dest, plan.options.overwrite()).and_then(|()| {
                let (mut conn, total) = plan.connect(retries.start())?;
                destination::receive_file(
                    &mut conn,
                    total,
                    dest.clone(),
                    &plan.options,
                    &mut progress,
                    plan.expected,
                )
            });
            match attempt {
                Ok(fetched) => return Ok(fetched),
                Err(e) => retries.again(e)?,
            }
        }
    }

    /// Downloads into any writer (memory, a pipe, a socket) and returns the size. Data is
    /// written as it arrives, so after an error the writer may hold part of the file; use
    /// [`Fetch::to_file`] for all-or-nothing files. For the same reason a failed attempt is
    /// retried only if none of its data reached the writer.
    pub fn to_writer<W: Write + ?Sized>(self, writer: &mut W) -> Result<u64> {
        let (plan, mut progress) = self.into_parts();
        let mut retries = plan.retries();
        loop {
            let mut counted = Counted { writer, written: 0 };
            let attempt = plan.connect(retries.start()).and_then(|(mut conn, total)| {
                let mut hash = plan.hashing();
                receive::receive_to_writer(
                    &mut conn,
                    &mut counted,
                    total,
                    &mut progress,
                    hash.as_mut(),
                )?;
                conn.expect_end(total)?;
                digest::check(hash, plan.expected)?;
                Ok(total)
            });
            match attempt {
                Ok(total) => return Ok(total),
                // Another attempt would write the same bytes again.
                Err(e) if counted.written > 0 => return Err(e),
                Err(e) => retries.again(e)?,
            }
        }
    }

    /// Downloads into memory. Memory is taken as data arrives (at most
    /// [`FetchOptions::max_size`] when set), and the data is read straight into the vector.
    pub fn to_vec(self) -> Result<Vec<u8>> {
        let (plan, mut progress) = self.into_parts();
        let mut retries = plan.retries();
        loop {
            let attempt = plan.connect(retries.start()).and_then(|(mut conn, total)| {
                let mut hash = plan.hashing();
                let data = receive::receive_to_vec(&mut conn, total, &mut progress, hash.as_mut())?;
                conn.expect_end(total)?;
                digest::check(hash, plan.expected)?;
                Ok(data)
            });
            match attempt {
                Ok(data) => return Ok(data),
                Err(e) => retries.again(e)?,
            }
        }
    }

    /// Connects, sends the request and reads the response header, for a caller that wants
    /// to choose the buffer once the size is known ([`Response::read_into`]). A file larger
    /// than [`FetchOptions::max_size`] fails here with [`Error::TooLarge`]. Retries, when
    /// asked for, happen here: once the header has arrived, a failure is final.
    pub fn open(self) -> Result<Response<'a>> {
        let (plan, progress) = self.into_parts();
        let mut retries = plan.retries();
        let (conn, len) = loop {
            match plan.connect(retries.start()) {
                Ok(opened) => break opened,
                Err(e) => retries.again(e)?,
            }
        };
        Ok(Response {
            conn,
            len,
            progress,
            expected: plan.expected,
        })
    }
}

impl Plan<'_> {
    /// The attempts of this fetch, starting now.
    fn retries(&self) -> Retries<'_> {
        Retries::new(&self.options, self.retry_report.as_deref())
    }

    /// The running digest of an attempt's data, when one is expected.
    fn hashing(&self) -> Option<Hashing> {
        self.expected.map(|_| Hashing::default())
    }

    /// One attempt up to the response header, for a fetch that started at `start`: the
    /// connection and the file's size.
    fn connect(&self, start: Instant) -> Result<(Connection, u64)> {
        let mut conn = Connection::open(&self.host, self.port, &self.name, &self.options, start)?;
        let len = conn.read_header(&self.name, self.options.max_size())?;
        Ok((conn, len))
    }
}

/// A writer that counts the bytes it passed on: a blocking one, or one of tokio's.
struct Counted<'w, W: ?Sized> {
    writer: &'w mut W,
    written: u64,
}

impl<W: Write + ?Sized> Write for Counted<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl<W: tokio::io::AsyncWrite + Unpin + ?Sized> tokio::io::AsyncWrite for Counted<'_, W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut *this.writer).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.written += n as u64;
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().writer).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().writer).poll_shutdown(cx)
    }
}

/// A response whose header has arrived: the file's size is known, its data is yet to come.
pub struct Response<'a> {
    conn: Connection,
    len: u64,
    progress: Progress<'a>,
    expected: Option<Sha256Digest>,
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
    /// long (a different length is an [`Error::InvalidOption`] and reads nothing). With
    /// [`Fetch::expect_sha256`], data with another digest fails with
    /// [`Error::ChecksumMismatch`] once `buf` is filled.
    pub fn read_into(mut self, buf: &mut [u8]) -> Result<()> {
        if buf.len() as u64 != self.len {
            return Err(Error::invalid(
                "buffer",
                format!("is {} bytes, the file {}", buf.len(), self.len),
            ));
        }
        let mut hash = self.expected.map(|_| Hashing::default());
        receive::receive_into(&mut self.conn, buf, &mut self.progress, hash.as_mut())?;
        self.conn.expect_end(self.len)?;
        digest::check(hash, self.expected).map(drop)
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
