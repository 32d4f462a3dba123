//! The two helpers every exported function goes through: the panic guard, which turns a
//! panic into `FILEFETCH_STATUS_PANIC` instead of unwinding into C, and the argument checks,
//! which turn NULL pointers and invalid strings into `FILEFETCH_STATUS_INVALID_ARGUMENT`.
//! Values out of range are core's to judge (`filefetch::config`): a setter passes them to
//! core's rules and reports core's error.

use std::any::Any;
use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::time::Duration;

use filefetch::config;

use crate::error::{filefetch_status, set_last_error, Failure};

/// Runs the body of an exported function that returns a status.
///
/// `Ok` becomes `FILEFETCH_STATUS_OK`; a failure records its message for
/// `filefetch_last_error` and returns its status; a panic is caught and becomes
/// `FILEFETCH_STATUS_PANIC`.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> filefetch_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => filefetch_status::Ok,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&format!("internal error: {}", panic_message(&*payload)));
            filefetch_status::Panic
        }
    }
}

/// Runs the body of an exported function that returns no status; a panic gives `fallback`.
pub(crate) fn guard_or<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_error(&format!("internal error: {}", panic_message(&*payload)));
            fallback
        }
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "panic"
    }
}

/// Checks a pointer argument for NULL, naming the argument in the failure.
///
/// Out-parameters are checked this way before any work is done, and written only once the
/// call has succeeded.
pub(crate) fn non_null<T>(ptr: *mut T, name: &str) -> Result<NonNull<T>, Failure> {
    NonNull::new(ptr).ok_or_else(|| Failure::invalid(format!("`{name}` is NULL")))
}

/// Checks a function pointer argument (an `Option<fn>`, NULL being `None`) that may not be
/// NULL, naming the argument in the failure as `non_null` does.
pub(crate) fn required<F>(function: Option<F>, name: &str) -> Result<F, Failure> {
    function.ok_or_else(|| Failure::invalid(format!("`{name}` is NULL")))
}

/// Borrows the value behind a pointer argument, refusing NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a valid `T` that outlives `'a` and is not mutated
/// meanwhile.
pub(crate) unsafe fn try_ref<'a, T>(ptr: *const T, name: &str) -> Result<&'a T, Failure> {
    let ptr = non_null(ptr.cast_mut(), name)?;
    // SAFETY: not NULL (checked above); validity and lifetime are the caller's contract.
    Ok(unsafe { ptr.as_ref() })
}

/// Borrows the value behind a pointer argument mutably, refusing NULL.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a valid `T` that outlives `'a` and is not accessed
/// through any other pointer meanwhile.
pub(crate) unsafe fn try_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T, Failure> {
    let mut ptr = non_null(ptr, name)?;
    // SAFETY: not NULL (checked above); validity and exclusivity are the caller's contract.
    Ok(unsafe { ptr.as_mut() })
}

/// Borrows a C string argument as UTF-8, refusing NULL and invalid UTF-8.
///
/// # Safety
///
/// A non-NULL `ptr` must point to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn try_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, Failure> {
    let ptr = non_null(ptr.cast_mut(), name)?;
    // SAFETY: not NULL (checked above); termination and lifetime are the caller's contract.
    let text = unsafe { CStr::from_ptr(ptr.as_ptr()) };
    text.to_str()
        .map_err(|_| Failure::invalid(format!("`{name}` is not valid UTF-8")))
}

/// A duration setting given in milliseconds, checked by core's rules for the setting
/// `option` (core's name for it): at most a year, and above 0 if `positive`.
pub(crate) fn duration_ms(
    option: &'static str,
    ms: u64,
    positive: bool,
) -> Result<Duration, Failure> {
    let duration = config::millis(option, ms)?;
    config::check_duration(option, duration, positive)?;
    Ok(duration)
}

/// Writes an out-parameter that `non_null` accepted earlier.
///
/// # Safety
///
/// `out` must be valid for writes of a `T`.
pub(crate) unsafe fn write_out<T>(out: NonNull<T>, value: T) {
    // SAFETY: valid for writes per the caller's contract; `write` does not drop the old
    // (possibly uninitialised) value.
    unsafe { out.as_ptr().write(value) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, filefetch_status::Panic);
        // SAFETY: filefetch_last_error returns a valid NUL-terminated string.
        let message = unsafe { CStr::from_ptr(crate::error::last_error_ptr()) };
        assert_eq!(message.to_str().unwrap(), "internal error: boom");
        assert_eq!(guard_or(7, || panic!("again")), 7);
    }

    #[test]
    fn null_and_bad_strings_are_invalid_arguments() {
        // SAFETY: NULL is always allowed.
        let null = unsafe { try_str(std::ptr::null(), "name") }.unwrap_err();
        assert_eq!(null.status, filefetch_status::InvalidArgument);
        assert_eq!(null.message, "`name` is NULL");
        let bad = c"\xff\xfe";
        // SAFETY: a valid NUL-terminated string.
        let bad = unsafe { try_str(bad.as_ptr(), "host") }.unwrap_err();
        assert_eq!(bad.message, "`host` is not valid UTF-8");
        // SAFETY: NULL is always allowed.
        assert!(unsafe { try_ref::<u8>(std::ptr::null(), "x") }.is_err());
    }

    #[test]
    fn durations_are_checked_by_core() {
        assert_eq!(
            duration_ms("grace_period", 0, false).unwrap(),
            Duration::ZERO
        );
        assert_eq!(
            duration_ms("idle_timeout", 1500, true).unwrap(),
            Duration::from_millis(1500)
        );
        let zero = duration_ms("idle_timeout", 0, true).unwrap_err();
        assert_eq!(zero.status, filefetch_status::InvalidArgument);
        assert!(zero.message.contains("idle_timeout"), "{}", zero.message);
        let long = duration_ms("max_time", u64::MAX, true).unwrap_err();
        assert_eq!(long.status, filefetch_status::InvalidArgument);
        assert!(long.message.contains("max_time"), "{}", long.message);
    }
}
