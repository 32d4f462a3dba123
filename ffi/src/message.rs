//! The C functions that describe failures: a status's static text and the calling thread's
//! detailed message.

use std::ffi::{c_char, c_int};

use crate::error::{filefetch_status, last_error_ptr};
use crate::guard::guard_or;

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
            Some(filefetch_status::TooLarge) => c"file larger than the maximum size",
            Some(filefetch_status::WriteError) => c"write callback refused the data",
            Some(filefetch_status::ChecksumMismatch) => c"checksum mismatch",
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
    guard_or(c"".as_ptr(), last_error_ptr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::tests::LAST;
    use std::collections::HashSet;
    use std::ffi::CStr;

    #[test]
    fn every_value_round_trips_and_has_its_own_description() {
        let mut texts = HashSet::new();
        for value in 0..=LAST {
            let status = filefetch_status::from_int(value).unwrap();
            assert_eq!(status as c_int, value);
            // SAFETY: filefetch_strerror returns a static NUL-terminated string.
            let text = unsafe { CStr::from_ptr(filefetch_strerror(value)) };
            assert_ne!(text.to_bytes(), b"unknown status");
            assert!(texts.insert(text), "{value}: {text:?} is used twice");
        }
        for value in [-1, LAST + 1, c_int::MAX] {
            assert!(filefetch_status::from_int(value).is_none());
            // SAFETY: as above.
            let text = unsafe { CStr::from_ptr(filefetch_strerror(value)) };
            assert_eq!(text.to_bytes(), b"unknown status");
        }
        // SAFETY: as above.
        let text = unsafe { CStr::from_ptr(filefetch_strerror(12)) };
        assert_eq!(text.to_bytes(), b"file larger than the maximum size");
    }
}
