//! Exit codes and the one-line error reports that go with them.
//!
//! | code | meaning |
//! |------|---------|
//! | 0    | success |
//! | 1    | local I/O or other error (including a port that cannot be listened on) |
//! | 2    | usage error (bad arguments, invalid file name) |
//! | 3    | the server has no such file (StatusCode 0) |
//! | 4    | the destination exists (it is left untouched) |
//! | 5    | timed out |
//! | 6    | protocol error: malformed response, truncated header, excess data, server closed without a response |
//! | 7    | incomplete transfer |
//! | 8    | cannot resolve the host or connect to it |
//! | 9    | the file is larger than `--max-size` |
//! | 10   | the data does not have the SHA-256 digest asked for (nothing was kept) |
//! | 130  | interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT) |
//!
//! With several files, 0 means every file arrived; otherwise the status is 130 if the
//! command was interrupted, else that of the first failed file in the order the names were
//! given (as `wget` reports one failure's status), in [`Exit::for_many`].
//!
//! A library error's code comes from its [`ErrorKind`] alone, in [`Exit::for_kind`]; the
//! README's error table lists it beside the C status and the Python exception.

use std::fmt;
use std::process::ExitCode;

use filefetch::{Error, ErrorKind};

/// Every way the command can end; the discriminant is the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Ok = 0,
    Other = 1,
    Usage = 2,
    NotFound = 3,
    Exists = 4,
    Timeout = 5,
    Protocol = 6,
    Incomplete = 7,
    Unreachable = 8,
    TooLarge = 9,
    ChecksumMismatch = 10,
    Interrupted = 130,
}

impl Exit {
    /// The exit status for a kind of library error.
    pub fn for_kind(kind: ErrorKind) -> Exit {
        match kind {
            ErrorKind::NotFound => Exit::NotFound,
            ErrorKind::DestinationExists => Exit::Exists,
            ErrorKind::TimedOut => Exit::Timeout,
            ErrorKind::Unreachable => Exit::Unreachable,
            ErrorKind::Protocol => Exit::Protocol,
            ErrorKind::Incomplete => Exit::Incomplete,
            ErrorKind::TooLarge => Exit::TooLarge,
            ErrorKind::ChecksumMismatch => Exit::ChecksumMismatch,
            ErrorKind::InvalidArgument => Exit::Usage,
            ErrorKind::Local | ErrorKind::Aborted => Exit::Other,
            ErrorKind::Interrupted => Exit::Interrupted,
        }
    }

    /// The exit status for the kinds of the failed files of a list, in the order the names
    /// were given: success when there are none, [`Exit::Interrupted`] when one was
    /// interrupted, else the first one's.
    pub fn for_many(failed: impl IntoIterator<Item = ErrorKind> + Clone) -> Exit {
        if failed
            .clone()
            .into_iter()
            .any(|kind| kind == ErrorKind::Interrupted)
        {
            return Exit::Interrupted;
        }
        failed.into_iter().next().map_or(Exit::Ok, Exit::for_kind)
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit as u8)
    }
}

/// A failed command: the message for stderr and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    /// A failure that is not a library error (exit status 1 unless said otherwise).
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure {
            exit: Exit::for_kind(error.kind()),
            message: describe(&error),
        }
    }
}

/// The one-line report of a library error, with a hint where one helps.
pub fn describe(error: &Error) -> String {
    let mut message = error.to_string();
    if matches!(error, Error::ServerClosed) {
        message.push_str(
            " (the original server.py closes the connection this way when it has no such file)",
        );
    }
    message
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_as_documented() {
        let all = [
            (Exit::Ok, 0),
            (Exit::Other, 1),
            (Exit::Usage, 2),
            (Exit::NotFound, 3),
            (Exit::Exists, 4),
            (Exit::Timeout, 5),
            (Exit::Protocol, 6),
            (Exit::Incomplete, 7),
            (Exit::Unreachable, 8),
            (Exit::TooLarge, 9),
            (Exit::ChecksumMismatch, 10),
            (Exit::Interrupted, 130),
        ];
        for (exit, code) in all {
            assert_eq!(exit as u8, code);
        }
    }

    /// Every kind's code is the one in the README's error table.
    #[test]
    fn every_kind_has_the_documented_code() {
        let table = error_table();
        for kind in ErrorKind::ALL {
            let row = table
                .iter()
                .find(|row| row[0] == format!("`{kind:?}`"))
                .unwrap_or_else(|| panic!("{kind:?} is not in the README's table"));
            assert_eq!(row[2], (Exit::for_kind(kind) as u8).to_string(), "{kind:?}");
        }
        assert_eq!(table.len(), ErrorKind::ALL.len());
    }

    /// The rows of the README's error table, cells trimmed.
    fn error_table() -> Vec<Vec<String>> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("| kind | meaning |")
            .expect("the README has an error table");
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

    #[test]
    fn many_files_exit_with_the_first_failure_or_the_interrupt() {
        use ErrorKind as K;
        assert_eq!(Exit::for_many([]), Exit::Ok);
        assert_eq!(Exit::for_many([K::NotFound]), Exit::NotFound);
        assert_eq!(
            Exit::for_many([K::ChecksumMismatch, K::NotFound]),
            Exit::ChecksumMismatch
        );
        assert_eq!(
            Exit::for_many([K::NotFound, K::Interrupted, K::Local]),
            Exit::Interrupted
        );
    }

    #[test]
    fn server_closed_carries_a_hint() {
        let failure = Failure::from(Error::ServerClosed);
        assert_eq!(failure.exit, Exit::Protocol);
        assert!(failure.message.contains("server.py"));
        assert!(!failure.message.contains('\n'));
    }
}
