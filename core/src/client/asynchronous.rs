//! The client on tokio: the blocking client's fetch, with the same options, checks, errors
//! and retries (every decision is [`rules`](super::rules)', [`retry`](super::retry)'s and
//! [`destination`](super::destination)'s), waiting on the runtime instead of a thread.
//!
//! The socket is tokio's; the file is written through `tokio::fs`, so a slow disk holds up a
//! blocking thread of the runtime, not its workers, and so are the destination's checks. The
//! temporary file's path deletes the file when dropped, which makes a future dropped at any
//! await point leave nothing behind. Two steps are made on the task itself, each a single
//! quick call: creating the temporary file and the final rename into place. Handed to a
//! thread, a future dropped meanwhile could leave the file to be deleted after the drop, or
//! make the destination appear after it.
//!
//! A file arrives through a buffer here on every system: `splice` needs a blocking thread
//! for the whole transfer.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::destination::{self, destination, Fetched};
use super::digest::{self, Hashing, Sha256Digest};
use super::options::FetchOptions;
use super::rules::{self, nonzero, Failed, Header, Limits, ProgressFn, ReadError, Tally, Tried};
use super::{Counted, Fetch, Plan};
use crate::error::{Error, Result};

/// A connection on tokio with the fetch's time rules applied to every read.
struct Connection {
    stream: TcpStream,
    limits: Limits,
}

impl Connection {
    /// Connects to `host:port` and sends the request for `name`, for a fetch that started
    /// at `start`.
    async fn open(
        host: &str,
        port: u16,
        name: &str,
        options: &FetchOptions,
        start: Instant,
    ) -> Result<Connection> {
        let request = rules::encode_request(name)?;
        let limits = Limits::new(options, start);
        let stream = connect(host, port, options.connect_timeout(), &limits).await?;
        stream
            .set_nodelay(true)
            .map_err(|source| Error::Io { path: None, source })?;
        let mut conn = Connection { stream, limits };
        let send = conn.stream.write_all(&request);
        match tokio::time::timeout(nonzero(conn.limits.idle()), send).await {
            Ok(sent) => sent.map_err(rules::send_error)?,
            Err(_) => return Err(rules::send_error(io::ErrorKind::TimedOut.into())),
        }
        Ok(conn)
    }

    /// Reads the response header: the file's length, or [`Error::NotFound`] for `name`, or
    /// [`Error::TooLarge`] above `max_size`.
    async fn read_header(&mut self, name: &str, max_size: Option<u64>) -> Result<u64> {
        let mut header = Header::default();
        while let Some(missing) = header.missing() {
            let read = self.read(missing).await;
            header.read(read)?;
        }
        header.decode(name, max_size)
    }

    /// After the data the server must close: anything more is a protocol error.
    async fn expect_end(&mut self, expected: u64) -> Result<()> {
        let mut probe = [0u8; 1];
        rules::end_of_response(self.read(&mut probe).await, expected)
    }

    /// One read, under the fetch's time rules: each wait lasts the poll interval at most,
    /// then the rules are checked again, until the idle timeout.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ReadError> {
        let since = Instant::now();
        loop {
            self.limits.before_read()?;
            let wait = self.limits.poll();
            match tokio::time::timeout(wait, self.stream.read(buf)).await {
                Ok(Ok(n)) => {
                    self.limits.after_read(n);
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(ReadError::Io(e)),
                Err(_) => self.limits.after_wait(since)?,
            }
        }
    }
}

/// Resolves `host` and connects to each of its addresses in turn until one answers.
async fn connect(host: &str, port: u16, timeout: Duration, limits: &Limits) -> Result<TcpStream> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((rules::bare_host(host), port))
        .await
        .map_err(|source| rules::resolve_error(host, source))?
        .collect();
    let mut tried = Tried::new(host);
    for addr in addrs {
        match connect_to(addr, timeout, limits).await {
            Ok(stream) => return Ok(stream),
            Err(failed) => tried.failed(addr, failed)?,
        }
    }
    Err(tried.error())
}

/// Connects to `addr` within `timeout`, running the interrupt check and watching the
/// whole-fetch deadline every poll interval when they are set.
async fn connect_to(
    addr: SocketAddr,
    timeout: Duration,
    limits: &Limits,
) -> Result<TcpStream, Failed> {
    let since = Instant::now();
    let mut connecting = pin!(TcpStream::connect(addr));
    loop {
        let wait = limits.connect_wait(since, timeout)?;
        if let Ok(connected) = tokio::time::timeout(wait, connecting.as_mut()).await {
            return connected.map_err(Failed::Io);
        }
    }
}

/// Runs `job` on a blocking thread of the runtime. Dropped meanwhile, the job still ends
/// there, and what it returns is dropped.
async fn blocking<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(job).await {
        Ok(value) => Ok(value),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(Error::Io {
                path: None,
                source: io::Error::other("the runtime is shutting down"),
            }),
        },
    }
}

/// The buffered loop, from what `tally` has up to its total; `path` names the file written,
/// if it is one.
async fn receive<W: AsyncWrite + Unpin + ?Sized>(
    conn: &mut Connection,
    out: &mut W,
    tally: &mut Tally<'_>,
    path: Option<&Path>,
) -> Result<()> {
    let mut buf = tally.buffer();
    while !tally.done() {
        let want = tally.left().min(buf.len() as u64) as usize;
        let read = conn.read(&mut buf[..want]).await;
        let n = tally.checked(read)?;
        out.write_all(&buf[..n])
            .await
            .map_err(|source| rules::write_error(path, source))?;
        tally.take(&buf[..n])?;
    }
    out.flush()
        .await
        .map_err(|source| rules::write_error(path, source))
}

/// Receives `total` bytes into memory, read straight into the vector, feeding `hash` if
/// given.
async fn receive_to_vec(
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
        let read = conn.read(&mut data[at..]).await;
        let n = tally.checked(read)?;
        tally.take(&data[at..at + n])?;
    }
    data.truncate(tally.received() as usize);
    Ok(data)
}

/// Receives `total` bytes into a temporary file beside `dest` and moves it into place, as
/// the blocking client's `receive_file` does.
async fn receive_file(
    conn: &mut Connection,
    total: u64,
    dest: PathBuf,
    options: &FetchOptions,
    progress: &mut ProgressFn<'_>,
    expected: Option<Sha256Digest>,
) -> Result<Fetched> {
    // Created on the task itself, one quick call as the final rename is: made on a blocking
    // thread, a future dropped meanwhile would leave the file to be deleted after the drop.
    let (file, temp) = destination::temp_beside(&dest)?;
    // From here on, returning early or being dropped drops `temp`, which deletes the file
    // (after `file`, declared later and so dropped first).
    let mut file = tokio::fs::File::from_std(file);
    let mut hash = destination::hashing(options, expected);
    let mut tally = Tally::start(total, progress, hash.as_mut())?;
    receive(conn, &mut file, &mut tally, Some(&temp)).await?;
    conn.expect_end(total).await?;
    let sha256 = digest::check(hash, expected)?;
    if options.fsync() {
        file.sync_all().await.map_err(|e| Error::io(&*temp, e))?;
    }
    // Closed (no write is in flight after the flush) before it is moved.
    drop(file.into_std().await);
    destination::land(temp, dest, options.overwrite(), total, sha256)
}

impl Plan<'_> {
    /// One attempt up to the response header, on tokio.
    async fn connect_async(&self, start: Instant) -> Result<(Connection, u64)> {
        let mut conn =
            Connection::open(&self.host, self.port, &self.name, &self.options, start).await?;
        let len = conn
            .read_header(&self.name, self.options.max_size())
            .await?;
        Ok((conn, len))
    }
}

impl<'a> Fetch<'a> {
    /// [`Fetch::to_file`] on a tokio runtime: the same destination rules, time limits,
    /// checks, retries and errors, the waits on the runtime's timers and sockets, the file
    /// written through `tokio::fs`, the waits between retries on a timer.
    ///
    /// Dropping the future (a `tokio::time::timeout` around it, an aborted task) stops the
    /// fetch at once and leaves nothing behind: no temporary file, no destination, an
    /// existing destination as it was. The data always goes through a buffer
    /// ([`FetchOptionsBuilder::portable`](crate::FetchOptionsBuilder::portable) has no
    /// effect). Needs a tokio runtime with I/O and time enabled; the future is `Send`, so it
    /// can be spawned on any runtime (see [`Fetch::new_owned`] for one that borrows nothing).
    ///
    /// ```
    /// use std::time::Duration;
    /// use filefetch::{fetch_async, fetch_bytes_async, Error, Fetch, FetchOptions};
    /// use filefetch::{Server, ServerConfig};
    ///
    /// let root = tempfile::tempdir().unwrap();
    /// std::fs::write(root.path().join("hello.txt"), b"hello, world\n").unwrap();
    /// let config = ServerConfig::builder().root(root.path()).build()?;
    /// let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)?.spawn()?;
    /// let port = server.local_addr().port();
    ///
    /// let out = tempfile::tempdir().unwrap();
    /// let options = FetchOptions::builder().output(out.path()).build()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread()
    ///     .enable_all()
    ///     .build()
    ///     .unwrap();
    /// runtime.block_on(async {
    ///     let fetched = Fetch::new("127.0.0.1", port, "hello.txt")
    ///         .options(&options)
    ///         .to_file_async()
    ///         .await?;
    ///     assert_eq!(std::fs::read(&fetched.path).unwrap(), b"hello, world\n");
    ///
    ///     // Into memory; and a fetch bounded in time by a timeout around it, which would
    ///     // drop it (and whatever it had received) when it expired.
    ///     let data = fetch_bytes_async("127.0.0.1", port, "hello.txt", &options).await?;
    ///     assert_eq!(data, b"hello, world\n");
    ///     let missing = fetch_async("127.0.0.1", port, "nope.txt", &options);
    ///     let missing = tokio::time::timeout(Duration::from_secs(10), missing).await;
    ///     assert!(matches!(missing, Ok(Err(Error::NotFound { .. }))));
    ///     Ok::<(), Error>(())
    /// })?;
    /// server.abort()?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn to_file_async(self) -> impl Future<Output = Result<Fetched>> + Send + 'a {
        let (plan, mut progress) = self.into_parts();
        async move {
            rules::check_request_name(&plan.name)?;
            let (name, output) = (
                plan.name.to_string(),
                plan.options.output().map(Path::to_path_buf),
            );
            let dest = blocking(move || destination(&name, output.as_deref())).await??;
            let mut retries = plan.retries();
            loop {
                let start = retries.start();
                let attempt = async {
                    let (free, overwrite) = (dest.clone(), plan.options.overwrite());
                    blocking(move || destination::check_free(&free, overwrite)).await??;
                    let (mut conn, total) = plan.connect_async(start).await?;
                    let (options, expected) = (&plan.options, plan.expected);
                    let dest = dest.clone();
                    receive_file(&mut conn, total, dest, options, &mut progress, expected).await
                };
                match attempt.await {
                    Ok(fetched) => return Ok(fetched),
                    Err(e) => retries.again_async(e).await?,
                }
            }
        }
    }

    /// [`Fetch::to_vec`] on a tokio runtime; see [`Fetch::to_file_async`]. Dropping the
    /// future drops the data received so far.
    pub fn to_vec_async(self) -> impl Future<Output = Result<Vec<u8>>> + Send + 'a {
        let (plan, mut progress) = self.into_parts();
        async move {
            let mut retries = plan.retries();
            loop {
                let start = retries.start();
                let attempt = async {
                    let (mut conn, total) = plan.connect_async(start).await?;
                    let mut hash = plan.hashing();
                    let data =
                        receive_to_vec(&mut conn, total, &mut progress, hash.as_mut()).await?;
                    conn.expect_end(total).await?;
                    digest::check(hash, plan.expected)?;
                    Ok(data)
                };
                match attempt.await {
                    Ok(data) => return Ok(data),
                    Err(e) => retries.again_async(e).await?,
                }
            }
        }
    }

    /// [`Fetch::to_writer`] on a tokio runtime, into one of tokio's writers (a file, a
    /// socket, a `Vec<u8>`), flushed once all the data is in; see [`Fetch::to_file_async`].
    /// As with [`Fetch::to_writer`], the writer may hold part of the file after an error (or
    /// once the future is dropped), and a failed attempt is retried only if none of its data
    /// reached the writer.
    pub fn to_async_writer<'w, W>(
        self,
        writer: &'w mut W,
    ) -> impl Future<Output = Result<u64>> + Send + use<'a, 'w, W>
    where
        W: AsyncWrite + Unpin + Send + ?Sized,
    {
        let (plan, mut progress) = self.into_parts();
        async move {
            let mut retries = plan.retries();
            loop {
                let start = retries.start();
                let mut counted = Counted {
                    writer: &mut *writer,
                    written: 0,
                };
                let attempt = async {
                    let (mut conn, total) = plan.connect_async(start).await?;
                    let mut hash = plan.hashing();
                    let mut tally = Tally::start(total, &mut progress, hash.as_mut())?;
                    receive(&mut conn, &mut counted, &mut tally, None).await?;
                    conn.expect_end(total).await?;
                    digest::check(hash, plan.expected)?;
                    Ok(total)
                };
                match attempt.await {
                    Ok(total) => return Ok(total),
                    // Another attempt would write the same bytes again.
                    Err(e) if counted.written > 0 => return Err(e),
                    Err(e) => retries.again_async(e).await?,
                }
            }
        }
    }
}

/// Downloads `name` into a local file on a tokio runtime; see [`Fetch::to_file_async`].
pub fn fetch_async<'a>(
    host: &'a str,
    port: u16,
    name: &'a str,
    options: &'a FetchOptions,
) -> impl Future<Output = Result<Fetched>> + Send + 'a {
    Fetch::new(host, port, name)
        .options(options)
        .to_file_async()
}

/// Downloads `name` into one of tokio's writers; see [`Fetch::to_async_writer`].
pub fn fetch_to_async_writer<'a, W>(
    host: &'a str,
    port: u16,
    name: &'a str,
    options: &'a FetchOptions,
    writer: &'a mut W,
) -> impl Future<Output = Result<u64>> + Send + 'a
where
    W: AsyncWrite + Unpin + Send + ?Sized,
{
    Fetch::new(host, port, name)
        .options(options)
        .to_async_writer(writer)
}

/// Downloads `name` into memory on a tokio runtime; see [`Fetch::to_vec_async`].
pub fn fetch_bytes_async<'a>(
    host: &'a str,
    port: u16,
    name: &'a str,
    options: &'a FetchOptions,
) -> impl Future<Output = Result<Vec<u8>>> + Send + 'a {
    Fetch::new(host, port, name).options(options).to_vec_async()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::NameProblem;

    #[tokio::test]
    async fn request_names_checked_before_connecting() {
        let opts = FetchOptions::new();
        // Nothing listens on port 9 here; the name fails first.
        for (bad, reason) in [
            (String::new(), NameProblem::Empty),
            ("a".repeat(1025), NameProblem::TooLong { len: 1025 }),
            ("a\0b".into(), NameProblem::Nul),
        ] {
            match fetch_bytes_async("127.0.0.1", 9, &bad, &opts).await {
                Err(Error::InvalidName { reason: got }) => assert_eq!(got, reason),
                other => panic!("{bad:?}: {other:?}"),
            }
            match fetch_async("127.0.0.1", 9, &bad, &opts).await {
                Err(Error::InvalidName { .. }) => {}
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    /// The futures can be spawned on a multi-thread runtime, and owned ones are `'static`.
    #[test]
    fn the_futures_are_send_and_owned_ones_static() {
        fn spawnable<F: Future + Send + 'static>(_: &F) {}
        let options = FetchOptions::new();
        let owned = || Fetch::new_owned("127.0.0.1", 9, "x").options_owned(options.clone());
        spawnable(&owned().to_file_async());
        spawnable(&owned().to_vec_async());
        spawnable(
            &owned()
                .progress(|_, _| std::ops::ControlFlow::Continue(()))
                .to_vec_async(),
        );
    }
}
