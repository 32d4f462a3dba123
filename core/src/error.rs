//! The one error type of the crate, with a variant for each outcome a caller may act on.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

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
    #[error("timed out {during}")]
    Timeout {
        /// What was being waited for, e.g. "connecting to 127.0.0.1:5000".
        during: String,
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
        reason: String,
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

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: Some(path.into()),
            source,
        }
    }

    /// True for the errors that mean a timeout expired.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
