//! Status codes, their static descriptions, and the per-thread message of the last failure.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use filefetch::Error;

use crate::guard::guard_or;

/// The outcome of a call. The values are part of the ABI: they never change and are never
/// reused for another meaning.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum filefetch_status {
    /// Success.
    Ok = 0,
    /// The server answered that it has no such file (or may not serve it).
    NotFound = 1,
    /// The destination file exists and overwriting was not enabled; it was left untouched.
    Exists = 2,
    /// No data arrived within the timeout, or connecting took too long.
    Timeout = 3,
    /// The host could not be resolved, no connection could be made, or the server closed
    /// the connection without sending any response. (The original `server.py` does the
    /// latter for a missing file.)
    Connection = 4,
    /// The server's response was not a valid FileResponse: wrong magic or type, a header cut
    /// short, or more data than announced.
    Protocol = 5,
    /// The connection ended before all the announced data arrived; no file was left behind.
    Incomplete = 6,
    /// A local file or socket operation failed (including a server that cannot listen on
    /// its address or open its root), or a failure not covered by another status.
    Io = 7,
    /// An argument was NULL, not valid UTF-8, or out of range, or the file name cannot be
    /// requested (empty, longer than 1024 bytes, or without a usable last component).
    InvalidArgument = 8,
    /// The progress callback returned nonzero; the transfer stopped and left nothing behind.
    Aborted = 9,
    /// The interrupt callback returned nonzero; the transfer stopped and left nothing behind.
    Interrupted = 10,
    /// A bug inside the library was caught before it could reach the caller. The library is
    /// still usable, but the operation did not complete.
    Panic = 11,
}

impl filefetch_status {
    /// The status a core error maps to.
    pub(crate) fn of(error: &Error) -> Self {
        match error {
            Error::NotFound { .. } => Self::NotFound,
            Error::DestinationExists { .. } => Self::Exists,
            Error::Timeout { .. } => Self::Timeout,
            Error::Resolve { .. } | Error::Connect { .. } | Error::ServerClosed => Self::Connection,
            Error::MalformedResponse(_)
            | Error::TruncatedHeader { .. }
            | Error::ExcessData { .. } => Self::Protocol,
            Error::Incomplete { .. } => Self::Incomplete,
            Error::InvalidName { .. } => Self::InvalidArgument,
            Error::Aborted => Self::Aborted,
            Error::Interrupted => Self::Interrupted,
            Error::Io { .. } | Error::Bind { .. } => Self::Io,
            _ => Self::Io,
        }
    }

    fn from_int(value: c_int) -> Option<Self> {
        Some(match value {
            0 => Self::Ok,
            1 => Self::NotFound,
            2 => Self::Exists,
            3 => Self::Timeout,
            4 => Self::Connection,
            5 => Self::Protocol,
            6 => Self::Incomplete,
            7 => Self::Io,
            8 => Self::InvalidArgument,
            9 => Self::Aborted,
            10 => Self::Interrupted,
            11 => Self::Panic,
            _ => return None,
        })
    }
}

/// A failed call: its status and the detailed message kept for `filefetch_last_error`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: filefetch_status,
    pub(crate) message: String,
}

impl Failure {
    /// An `INVALID_ARGUMENT` failure with the given message.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Failure {
            status: filefetch_status::InvalidArgument,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            status: filefetch_status::of(&error),
            message: error.to_string(),
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `message` as the calling thread's last failure.
pub(crate) fn set_last_error(message: &str) {
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// Returns a short, static, English description of a status code.
///
/// Any value is accepted: one that is not a `filefetch_status` gives "unknown status".
/// The string is never NULL, must not be freed, and stays valid for the life of the process.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_strerror(status: c_int) -> *const c_char {
    guard_or(c"unknown status".as_ptr(), || {
        let text = match filefetch_status::from_int(status) {
            Some(filefetch_status::Ok) => c"success",
            Some(filefetch_status::NotFound) => c"server has no such file",
            Some(filefetch_status::Exists) => c"destination exists",
            Some(filefetch_status::Timeout) => c"timed out",
            Some(filefetch_status::Connection) => c"connection failed",
            Some(filefetch_status::Protocol) => c"malformed response",
            Some(filefetch_status::Incomplete) => c"transfer incomplete",
            Some(filefetch_status::Io) => c"input/output error",
            Some(filefetch_status::InvalidArgument) => c"invalid argument",
            Some(filefetch_status::Aborted) => c"aborted by the progress callback",
            Some(filefetch_status::Interrupted) => c"interrupted",
            Some(filefetch_status::Panic) => c"internal error (panic)",
            None => c"unknown status",
        };
        text.as_ptr()
    })
}

/// Returns the detailed message of the last failed call on the calling thread, for
/// example "transfer incomplete: 10 of 20 bytes", or "" if no call has failed on it.
///
/// Successful calls leave the message unchanged. The string is owned by the library: do not
/// free it. It stays valid until the next call into the library on the same thread (copy it
/// to keep it). Never NULL. Each thread has its own message.
#[no_mangle]
pub extern "C" fn filefetch_last_error() -> *const c_char {
    guard_or(c"".as_ptr(), || {
        LAST_ERROR.with(|last| last.borrow().as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn every_value_round_trips_and_has_a_description() {
        for value in 0..=11 {
            let status = filefetch_status::from_int(value).unwrap();
            assert_eq!(status as c_int, value);
            // SAFETY: filefetch_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(filefetch_strerror(value)) };
            assert_ne!(text.to_bytes(), b"unknown status");
        }
        // SAFETY: as above.
        let text = unsafe { CStr::from_ptr(filefetch_strerror(-1)) };
        assert_eq!(text.to_bytes(), b"unknown status");
    }

    #[test]
    fn core_errors_map_to_their_status() {
        use filefetch_status as S;
        let cases = [
            (Error::NotFound { name: "x".into() }, S::NotFound),
            (Error::ServerClosed, S::Connection),
            (Error::TruncatedHeader { received: 3 }, S::Protocol),
            (Error::ExcessData { expected: 1 }, S::Protocol),
            (
                Error::Incomplete {
                    received: 1,
                    expected: 2,
                },
                S::Incomplete,
            ),
            (Error::Aborted, S::Aborted),
            (Error::Interrupted, S::Interrupted),
        ];
        for (error, status) in cases {
            assert_eq!(filefetch_status::of(&error), status, "{error}");
        }
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("here");
        std::thread::spawn(|| {
            // SAFETY: filefetch_last_error returns a valid NUL-terminated string.
            let text = unsafe { CStr::from_ptr(filefetch_last_error()) };
            assert_eq!(text.to_bytes(), b"");
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        let text = unsafe { CStr::from_ptr(filefetch_last_error()) };
        assert_eq!(text.to_bytes(), b"here");
    }
}
