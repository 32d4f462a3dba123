//! The one error type of the crate, with a variant for each outcome a caller may act on.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::client::Sha256Digest;
use crate::protocol::DecodeError;

/// What went wrong in a fetch or while starting a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server answered StatusCode 0: it has no such file, or may not serve it.
    #[error("server has no such file: {name}")]
    NotFound {
        /// The name that was requested.
        name: String,
    },
    /// The server closed (or reset) the connection before sending a response header.
    ///
    /// The original `server.py` does this for missing files.
    #[error("server closed the connection without a response")]
    ServerClosed,
    /// No data arrived for the idle timeout, or the connection could not be set up in time.
    #[error("timed out {phase}")]
    Timeout {
        /// What was being waited for when time ran out.
        phase: TimeoutPhase,
    },
    /// The response header was not a valid FileResponse; names the field that was wrong.
    #[error("malformed response: {0}")]
    MalformedResponse(#[from] DecodeError),
    /// The connection ended after part of the 8-byte response header.
    #[error("malformed response: header cut short after {received} of 8 bytes")]
    TruncatedHeader {
        /// How many header bytes arrived.
        received: usize,
    },
    /// The server sent more bytes than its DataLength announced.
    #[error("malformed response: more data than the announced {expected} bytes")]
    ExcessData {
        /// The announced DataLength.
        expected: u64,
    },
    /// The connection ended before DataLength bytes of file data arrived.
    #[error("transfer incomplete: {received} of {expected} bytes")]
    Incomplete {
        /// Bytes of file data received.
        received: u64,
        /// Bytes announced by DataLength.
        expected: u64,
    },
    /// The destination file exists and overwriting was not asked for.
    #[error("destination exists: {}", path.display())]
    DestinationExists {
        /// The destination that was left untouched.
        path: PathBuf,
    },
    /// The requested name cannot be sent or cannot name a local file.
    #[error("invalid file name: {reason}")]
    InvalidName {
        /// Why the name was refused.
        reason: NameProblem,
    },
    /// A configured value is out of range; names the setting.
    #[error("invalid {option}: {problem}")]
    InvalidOption {
        /// The setting, as the Rust setter is named (`request_timeout`, `max_size`...).
        option: &'static str,
        /// What is wrong with the value.
        problem: String,
    },
    /// The server announced more data than the configured maximum size; nothing was read.
    #[error("file is {size} bytes, more than the {limit}-byte maximum")]
    TooLarge {
        /// The announced DataLength.
        size: u64,
        /// The configured maximum.
        limit: u64,
    },
    /// The data received does not have the SHA-256 digest it was expected to have
    /// ([`Fetch::expect_sha256`](crate::Fetch::expect_sha256)); no file was left behind,
    /// and an existing destination was not replaced.
    #[error("checksum mismatch: expected sha256 {expected}, received {actual}")]
    ChecksumMismatch {
        /// The digest asked for.
        expected: Sha256Digest,
        /// The digest of what arrived.
        actual: Sha256Digest,
    },
    /// The host name could not be resolved.
    #[error("cannot resolve host {host}: {source}")]
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// No connection could be made to any address of the host.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The error for that address.
        source: io::Error,
    },
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
    /// A local file or socket operation failed.
    #[error("{}{source}", path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default())]
    Io {
        /// The file concerned, when there is one.
        path: Option<PathBuf>,
        /// The system's error.
        source: io::Error,
    },
    /// The progress callback asked to stop the transfer.
    #[error("transfer aborted by the progress callback")]
    Aborted,
    /// The interrupt check asked to stop (for instance on Ctrl-C).
    #[error("transfer interrupted")]
    Interrupted,
}

/// What kind of failure an [`Error`] is: the one classification every skin (the command's
/// exit status, the C status, the Python exception) is derived from.
///
/// Unlike [`Error`], this enum is exhaustive: a new kind is a change every caller must
/// decide about, so the compiler points each skin at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The server answered StatusCode 0.
    NotFound,
    /// The destination exists and was left untouched.
    DestinationExists,
    /// A timeout or a time limit expired.
    TimedOut,
    /// The host could not be resolved, or no connection could be made.
    Unreachable,
    /// The server broke the protocol: a malformed or missing response, or excess data.
    Protocol,
    /// The connection ended before all the announced data arrived.
    Incomplete,
    /// The file is larger than the configured maximum.
    TooLarge,
    /// The data received does not have the expected checksum.
    ChecksumMismatch,
    /// An argument or setting was refused (a bad name, a value out of range).
    InvalidArgument,
    /// A local file or socket operation failed.
    Local,
    /// The progress callback stopped the transfer.
    Aborted,
    /// The interrupt check stopped the transfer.
    Interrupted,
}

impl ErrorKind {
    /// Every kind, in the order of the documentation's table.
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::NotFound,
        ErrorKind::DestinationExists,
        ErrorKind::TimedOut,
        ErrorKind::Unreachable,
        ErrorKind::Protocol,
        ErrorKind::Incomplete,
        ErrorKind::TooLarge,
        ErrorKind::ChecksumMismatch,
        ErrorKind::InvalidArgument,
        ErrorKind::Local,
        ErrorKind::Aborted,
        ErrorKind::Interrupted,
    ];
}

/// What a fetch was waiting for when its time ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Connecting to one address of the host.
    Connect {
        /// The address tried last.
        addr: SocketAddr,
    },
    /// Sending the request.
    Request,
    /// Waiting for the response header.
    Response,
    /// No data arrived for the idle timeout while receiving.
    Data {
        /// Bytes received so far.
        received: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// The whole fetch took longer than its time limit ([`FetchOptions::max_time`]).
    ///
    /// [`FetchOptions::max_time`]: crate::FetchOptionsBuilder::max_time
    Total {
        /// The limit.
        limit: Duration,
    },
    /// Data arrived more slowly than the minimum rate for the whole window
    /// ([`FetchOptions::min_rate`]).
    ///
    /// [`FetchOptions::min_rate`]: crate::FetchOptionsBuilder::min_rate
    Rate {
        /// The minimum, in bytes per second.
        bytes_per_sec: u64,
        /// The window it applies over.
        window: Duration,
    },
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutPhase::Connect { addr } => write!(f, "connecting to {addr}"),
            TimeoutPhase::Request => f.write_str("sending the request"),
            TimeoutPhase::Response => f.write_str("waiting for the response"),
            TimeoutPhase::Data { received, expected } => {
                write!(f, "receiving data ({received} of {expected} bytes arrived)")
            }
            TimeoutPhase::Total { limit } => {
                write!(
                    f,
                    "after the {} s limit on the whole fetch",
                    limit.as_secs_f64()
                )
            }
            TimeoutPhase::Rate {
                bytes_per_sec,
                window,
            } => write!(
                f,
                "receiving data: less than {bytes_per_sec} bytes/s over {} s",
                window.as_secs_f64()
            ),
        }
    }
}

/// Why a file name was refused before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name is empty.
    Empty,
    /// The name is longer than the protocol's 1,024 bytes.
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The name contains a NUL byte.
    Nul,
    /// The name does not end in a file name (`a/`, `..`) and no output path was given.
    NoFileName {
        /// The name.
        name: String,
    },
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameProblem::Empty => f.write_str("name is empty"),
            NameProblem::TooLong { len } => write!(
                f,
                "name is {len} bytes, the protocol allows {}",
                crate::protocol::MAX_NAME_LEN
            ),
            NameProblem::Nul => f.write_str("name contains a NUL byte"),
            NameProblem::NoFileName { name } => {
                write!(
                    f,
                    "{name:?} does not end in a file name; give an output path"
                )
            }
        }
    }
}

impl Error {
    /// The kind of failure, for callers that react by category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::DestinationExists { .. } => ErrorKind::DestinationExists,
            Error::Timeout { .. } => ErrorKind::TimedOut,
            Error::Resolve { .. } | Error::Connect { .. } => ErrorKind::Unreachable,
            Error::ServerClosed
            | Error::MalformedResponse(_)
            | Error::TruncatedHeader { .. }
            | Error::ExcessData { .. } => ErrorKind::Protocol,
            Error::Incomplete { .. } => ErrorKind::Incomplete,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::ChecksumMismatch { .. } => ErrorKind::ChecksumMismatch,
            Error::InvalidName { .. } | Error::InvalidOption { .. } => ErrorKind::InvalidArgument,
            Error::Bind { .. } | Error::Io { .. } => ErrorKind::Local,
            Error::Aborted => ErrorKind::Aborted,
            Error::Interrupted => ErrorKind::Interrupted,
        }
    }

    pub(crate) fn invalid(option: &'static str, problem: impl Into<String>) -> Self {
        Error::InvalidOption {
            option,
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// True for the errors that mean a timeout expired.
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::TimedOut
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
