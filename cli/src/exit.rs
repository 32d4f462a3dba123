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
//! | 130  | interrupted (SIGINT or SIGTERM) |

use std::fmt;
use std::process::ExitCode;

use filefetch::Error;

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
    Interrupted = 130,
}

impl Exit {
    /// The exit status a library error calls for. Variants added to the library later
    /// count as "other".
    pub fn for_error(error: &Error) -> Exit {
        match error {
            Error::NotFound { .. } => Exit::NotFound,
            Error::DestinationExists { .. } => Exit::Exists,
            Error::Timeout { .. } => Exit::Timeout,
            Error::ServerClosed
            | Error::MalformedResponse(_)
            | Error::TruncatedHeader { .. }
            | Error::ExcessData { .. } => Exit::Protocol,
            Error::Incomplete { .. } => Exit::Incomplete,
            Error::Resolve { .. } | Error::Connect { .. } => Exit::Unreachable,
            Error::InvalidName { .. } => Exit::Usage,
            Error::Interrupted => Exit::Interrupted,
            Error::Io { .. } | Error::Bind { .. } | Error::Aborted => Exit::Other,
            _ => Exit::Other,
        }
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
        let mut message = error.to_string();
        if matches!(error, Error::ServerClosed) {
            message.push_str(
                " (the original server.py closes the connection this way when it has no such file)",
            );
        }
        Failure {
            exit: Exit::for_error(&error),
            message,
        }
    }
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
            (Exit::Interrupted, 130),
        ];
        for (exit, code) in all {
            assert_eq!(exit as u8, code);
        }
    }

    #[test]
    fn server_closed_carries_a_hint() {
        let failure = Failure::from(Error::ServerClosed);
        assert_eq!(failure.exit, Exit::Protocol);
        assert!(failure.message.contains("server.py"));
        assert!(!failure.message.contains('\n'));
    }
}
