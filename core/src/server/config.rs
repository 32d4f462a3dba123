//! How a server behaves: [`ServerConfig`], read-only once built, and [`ServerConfigBuilder`],
//! which checks every value when it builds it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{self, check_count, check_duration};
use crate::error::Result;

/// How a server behaves. [`ServerConfig::new`] gives the defaults;
/// [`ServerConfig::builder`] sets others.
///
/// ```
/// use std::time::Duration;
/// let config = filefetch::ServerConfig::builder()
///     .root("/srv/files")
///     .request_timeout(Duration::from_millis(500))
///     .build()?;
/// assert_eq!(config.max_connections(), filefetch::config::MAX_CONNECTIONS);
/// assert!(filefetch::ServerConfig::builder().threads(1 << 20).build().is_err());
/// # Ok::<(), filefetch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerConfig {
    root: PathBuf,
    max_connections: usize,
    request_timeout: Duration,
    send_timeout: Duration,
    grace_period: Duration,
    threads: usize,
    portable: bool,
    file_cache: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            root: PathBuf::from("."),
            max_connections: config::MAX_CONNECTIONS,
            request_timeout: config::REQUEST_TIMEOUT,
            send_timeout: config::SEND_TIMEOUT,
            grace_period: config::GRACE_PERIOD,
            threads: config::THREADS,
            portable: false,
            file_cache: config::FILE_CACHE,
        }
    }
}

impl ServerConfig {
    /// The defaults: the working directory, the constants of [`config`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ServerConfigBuilder {
        ServerConfigBuilder(Self::default())
    }

    /// A builder starting from this configuration.
    pub fn to_builder(&self) -> ServerConfigBuilder {
        ServerConfigBuilder(self.clone())
    }

    /// Directory files are served from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Most connections handled at once (the process's open file limit may lower it; see
    /// [`Server::connection_limit`](crate::Server::connection_limit)).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Time the whole FileRequest has to arrive, from accept.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Time a client may read nothing before it is dropped.
    pub fn send_timeout(&self) -> Duration {
        self.send_timeout
    }

    /// Time transfers in flight have to finish after a graceful shutdown.
    pub fn grace_period(&self) -> Duration {
        self.grace_period
    }

    /// Worker threads; 0 means one per CPU core.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Whether the portable code paths are forced.
    pub fn portable(&self) -> bool {
        self.portable
    }

    /// How long a small file stays open for reuse (zero: never).
    pub fn file_cache(&self) -> Duration {
        self.file_cache
    }
}

/// Sets [`ServerConfig`]; [`build`](ServerConfigBuilder::build) checks the values.
#[derive(Debug, Clone, Default)]
pub struct ServerConfigBuilder(ServerConfig);

impl ServerConfigBuilder {
    /// Directory files are served from (the working directory by default).
    pub fn root(mut self, root: impl Into<PathBuf>) -> Self {
        self.0.root = root.into();
        self
    }

    /// Most connections handled at once; more wait in the listen backlog (10,000 by default;
    /// 1 to [`config::MAX_CONNECTIONS_LIMIT`]).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.0.max_connections = n;
        self
    }

    /// The whole FileRequest must arrive within this time from accept (1 s by default;
    /// above 0).
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.0.request_timeout = t;
        self
    }

    /// A client that reads nothing for this long is dropped (10 s by default; above 0).
    pub fn send_timeout(mut self, t: Duration) -> Self {
        self.0.send_timeout = t;
        self
    }

    /// On a graceful shutdown, how long transfers in flight may take to finish (10 s by
    /// default; 0 cuts them at once).
    pub fn grace_period(mut self, t: Duration) -> Self {
        self.0.grace_period = t;
        self
    }

    /// Worker threads; 0 (the default) means one per CPU core; at most
    /// [`config::MAX_THREADS`].
    pub fn threads(mut self, n: usize) -> Self {
        self.0.threads = n;
        self
    }

    /// Uses the portable code paths (component walk instead of `openat2`, read/write instead
    /// of `sendfile`) even where the fast ones exist.
    pub fn portable(mut self, portable: bool) -> Self {
        self.0.portable = portable;
        self
    }

    /// How long a small file (64 KiB or less) stays open for reuse by the next requests of
    /// the same name (1 s by default; zero opens every file afresh).
    ///
    /// The name is looked up again at every request, so a file deleted, renamed away or
    /// replaced is noticed at once, and sizes are measured each time; only a permission
    /// change can take this long to be seen. While open, a file unchanged for 3 s also has
    /// its response kept in memory (8 MiB at most over all files), checked against the
    /// file's size and times at every request; a change that leaves the times alone (a write
    /// through a shared memory mapping) can go unseen for this long. On Windows files are
    /// never kept open between requests (a file held open there cannot be replaced by a
    /// rename), so this setting has no effect.
    pub fn file_cache(mut self, t: Duration) -> Self {
        self.0.file_cache = t;
        self
    }

    /// The configuration, or [`Error::InvalidOption`](crate::Error::InvalidOption) naming
    /// the first value out of range.
    pub fn build(self) -> Result<ServerConfig> {
        let c = self.0;
        check_count(
            "max_connections",
            c.max_connections,
            1,
            config::MAX_CONNECTIONS_LIMIT,
        )?;
        check_duration("request_timeout", c.request_timeout, true)?;
        check_duration("send_timeout", c.send_timeout, true)?;
        check_duration("grace_period", c.grace_period, false)?;
        check_count("threads", c.threads, 0, config::MAX_THREADS)?;
        check_duration("file_cache", c.file_cache, false)?;
        Ok(c)
    }
}
