//! Status codes and the per-thread message of the last failure (the C functions that read
//! them are in `message`).
//!
//! A status is derived from core's classification alone: [`filefetch_status::of`] maps each
//! [`ErrorKind`] in one exhaustive `match`, so a new kind does not compile until it has a
//! status. The README's error table lists the same mapping beside the command's exit codes
//! and the Python exceptions; a test checks the two agree.
//!
//! One status is the binding's own, not core's: `WriteError`, for a write callback of
//! `filefetch_fetch_to_callback` that refuses data. Core never sees a C callback; to core it
//! is a writer that failed, an error of kind `Local` like a full disk, and only the binding
//! knows the caller's own callback said stop ([`Failure::write_refused`]).

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};

use filefetch::{Error, ErrorKind};

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
    /// A timeout or a time limit expired: no data within the idle timeout, connecting took
    /// too long, the whole fetch took longer than its maximum time, or data arrived more
    /// slowly than the minimum rate.
    Timeout = 3,
    /// The host could not be resolved, or no connection could be made to any of its
    /// addresses. (A server that accepts the connection and then closes it without a
    /// response gives `FILEFETCH_STATUS_PROTOCOL`.)
    Connection = 4,
    /// The server broke the protocol: a response that is not a valid FileResponse (wrong
    /// magic or type, a header cut short, more data than announced), or a close of the
    /// connection without any response. (The original `server.py` does the latter for a
    /// missing file.)
    Protocol = 5,
    /// The connection ended before all the announced data arrived; no file was left behind.
    Incomplete = 6,
    /// A local file or socket operation failed (including a server that cannot listen on
    /// its address or open its root), or a failure not covered by another status.
    Io = 7,
    /// An argument was NULL, not valid UTF-8, or out of range (the message names the
    /// setting), or the file name cannot be requested (empty, longer than 1024 bytes, or
    /// without a usable last component).
    InvalidArgument = 8,
    /// The progress callback returned nonzero; the transfer stopped and left nothing behind.
    Aborted = 9,
    /// The interrupt callback returned nonzero; the transfer stopped and left nothing behind.
    Interrupted = 10,
    /// A bug inside the library was caught before it could reach the caller. The library is
    /// still usable, but the operation did not complete.
    Panic = 11,
    /// The server announced a file larger than the maximum size set with
    /// `filefetch_fetch_options_set_max_size`; no data was read and nothing was left behind.
    TooLarge = 12,
    /// The write callback of `filefetch_fetch_to_callback` returned a count other than the
    /// length it was given; the transfer stopped there and nothing more was delivered. This
    /// status is the binding's own: it reports the caller's callback, not a kind of error of
    /// the library's.
    WriteError = 13,
    /// The data received does not have the SHA-256 digest set with
    /// `filefetch_fetch_options_set_sha256`; nothing was left behind, and an existing
    /// destination was kept as it was.
    ChecksumMismatch = 14,
}

impl filefetch_status {
    /// The status for a kind of core error: the one table from core's classification to C.
    pub(crate) fn of(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NotFound => Self::NotFound,
            ErrorKind::DestinationExists => Self::Exists,
            ErrorKind::TimedOut => Self::Timeout,
            ErrorKind::Unreachable => Self::Connection,
            ErrorKind::Protocol => Self::Protocol,
            ErrorKind::Incomplete => Self::Incomplete,
            ErrorKind::TooLarge => Self::TooLarge,
            ErrorKind::ChecksumMismatch => Self::ChecksumMismatch,
            ErrorKind::InvalidArgument => Self::InvalidArgument,
            ErrorKind::Local => Self::Io,
            ErrorKind::Aborted => Self::Aborted,
            ErrorKind::Interrupted => Self::Interrupted,
        }
    }

    pub(crate) fn from_int(value: c_int) -> Option<Self> {
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
            12 => Self::TooLarge,
            13 => Self::WriteError,
            14 => Self::ChecksumMismatch,
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

    /// The caller's write callback took `taken` of the `offered` bytes given to it at byte
    /// `offset` of the file: `WRITE_ERROR`. Decided here, not from core's `ErrorKind`,
    /// because core sees only a writer that failed.
    pub(crate) fn write_refused(taken: usize, offered: usize, offset: u64) -> Self {
        Failure {
            status: filefetch_status::WriteError,
            message: format!(
                "write callback took {taken} of {offered} bytes at offset {offset}; \
                 transfer stopped"
            ),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            status: filefetch_status::of(error.kind()),
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

/// The calling thread's last failure message; valid until the next call that sets it.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::ffi::CStr;
    use std::time::Duration;

    use filefetch::{NameProblem, TimeoutPhase};

    /// The highest status value; a new status raises it.
    pub(crate) const LAST: c_int = filefetch_status::ChecksumMismatch as c_int;

    /// Every status but success, a caught panic and the binding's own write-callback
    /// refusal is what some kind of error gives.
    #[test]
    fn every_failure_status_comes_from_a_kind() {
        let reached: HashSet<c_int> = ErrorKind::ALL
            .iter()
            .map(|&kind| filefetch_status::of(kind) as c_int)
            .collect();
        for value in 0..=LAST {
            let status = filefetch_status::from_int(value).unwrap();
            let expected = !matches!(
                status,
                filefetch_status::Ok | filefetch_status::Panic | filefetch_status::WriteError
            );
            assert_eq!(reached.contains(&value), expected, "{status:?}");
        }
    }

    #[test]
    fn core_errors_map_through_their_kind() {
        use filefetch_status as S;
        let cases = [
            (Error::NotFound { name: "x".into() }, S::NotFound),
            (Error::ServerClosed, S::Protocol),
            (Error::TruncatedHeader { received: 3 }, S::Protocol),
            (Error::ExcessData { expected: 1 }, S::Protocol),
            (
                Error::Incomplete {
                    received: 1,
                    expected: 2,
                },
                S::Incomplete,
            ),
            (Error::TooLarge { size: 2, limit: 1 }, S::TooLarge),
            (
                Error::Timeout {
                    phase: TimeoutPhase::Total {
                        limit: Duration::from_millis(1),
                    },
                },
                S::Timeout,
            ),
            (
                Error::InvalidName {
                    reason: NameProblem::Empty,
                },
                S::InvalidArgument,
            ),
            (
                filefetch::config::check_count("threads", 5000, 0, 1024).unwrap_err(),
                S::InvalidArgument,
            ),
            (Error::Aborted, S::Aborted),
            (Error::Interrupted, S::Interrupted),
        ];
        for (error, status) in cases {
            let failure = Failure::from(error);
            assert_eq!(failure.status, status, "{}", failure.message);
        }
    }

    /// Every kind's status, name and number, is the one in the README's error table, and the
    /// name is the one cbindgen writes into the header.
    #[test]
    fn every_kind_has_the_documented_status() {
        let table = error_table();
        let header = include_str!("../../include/filefetch.h");
        for kind in ErrorKind::ALL {
            let row = table
                .iter()
                .find(|row| row[0] == format!("`{kind:?}`"))
                .unwrap_or_else(|| panic!("{kind:?} is not in the README's table"));
            let status = filefetch_status::of(kind);
            let name = screaming_snake(&format!("{status:?}"));
            assert_eq!(
                row[3],
                format!("`{name}` ({})", status as c_int),
                "the README's C status for {kind:?}"
            );
            let declared = format!("FILEFETCH_STATUS_{name} = {},", status as c_int);
            assert!(
                header.lines().any(|line| line.trim() == declared),
                "include/filefetch.h lacks `{declared}`"
            );
        }
        assert_eq!(table.len(), ErrorKind::ALL.len(), "one row per kind");
    }

    /// The rows of the README's error table (`| kind | meaning | exit code | C status |
    /// Python exception |`), cells trimmed.
    fn error_table() -> Vec<Vec<String>> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| kind | meaning |")
            .expect("the README has an error table");
        let header: Vec<&str> = readme[start..]
            .lines()
            .next()
            .unwrap()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        assert_eq!(
            header.get(3),
            Some(&"C status"),
            "the table's columns moved"
        );
        readme[start..]
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                line.trim_matches('|')
                    .split('|')
                    .map(|cell| cell.trim().to_owned())
                    .collect()
            })
            .collect()
    }

    /// `TooLarge` as cbindgen's `ScreamingSnakeCase` renames it: `TOO_LARGE`.
    fn screaming_snake(name: &str) -> String {
        let mut out = String::new();
        for (i, c) in name.chars().enumerate() {
            if c.is_uppercase() && i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("here");
        std::thread::spawn(|| {
            // SAFETY: filefetch_last_error returns a valid NUL-terminated string.
            let text = unsafe { CStr::from_ptr(last_error_ptr()) };
            assert_eq!(text.to_bytes(), b"");
        })
        .join()
        .unwrap();
        // SAFETY: as above.
        let text = unsafe { CStr::from_ptr(last_error_ptr()) };
        assert_eq!(text.to_bytes(), b"here");
    }
}
