//! C API over the `filefetch` crate: `libfilefetch.so` / `libfilefetch.a` and the header
//! `include/filefetch.h`, generated from this crate by cbindgen.
//!
//! A thin skin: every function translates its arguments, calls `filefetch`, and translates
//! the result. The conventions, stated once here and repeated in the header:
//!
//! - Every function returning `filefetch_status` returns `FILEFETCH_STATUS_OK` (0) on
//!   success; on failure, `filefetch_last_error` gives a detailed message for the calling
//!   thread.
//! - Every pointer argument is checked: NULL gives `FILEFETCH_STATUS_INVALID_ARGUMENT`,
//!   except where a function says NULL is allowed (the `*_free` functions, callbacks and
//!   their `user_data`). Strings must be NUL-terminated UTF-8.
//! - Settings are core's: the options handles hold core's builders, a setter checks its
//!   value with core's rules and a value out of range gives
//!   `FILEFETCH_STATUS_INVALID_ARGUMENT` with core's message, which names the setting.
//! - A status comes from core's `ErrorKind` alone (`error::filefetch_status::of`), except
//!   `WRITE_ERROR`, the binding's own: the caller's write callback refused data.
//! - Out-parameters are written only on success.
//! - No panic crosses into C: one is caught and becomes `FILEFETCH_STATUS_PANIC`.
//! - Handles are opaque, made by a `*_new` or `*_start` function and released by the
//!   matching `*_free` function.

// The exported names are the C names, so the header and the source read the same.
#![allow(non_camel_case_types)]
// Exported functions are called from C, where `unsafe` marks nothing: their pointer contracts
// are stated in the header, and every pointer goes through the checks in `guard`.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod error;
mod fetch;
mod guard;
mod many;
mod message;
mod server;

use std::ffi::c_char;

pub use error::filefetch_status;
pub use fetch::{
    filefetch_bytes_free, filefetch_fetch, filefetch_fetch_bytes, filefetch_fetch_options,
    filefetch_fetch_options_free, filefetch_fetch_options_new,
    filefetch_fetch_options_set_connect_timeout_ms, filefetch_fetch_options_set_fsync,
    filefetch_fetch_options_set_interrupt, filefetch_fetch_options_set_max_size,
    filefetch_fetch_options_set_max_time_ms, filefetch_fetch_options_set_min_rate,
    filefetch_fetch_options_set_output, filefetch_fetch_options_set_overwrite,
    filefetch_fetch_options_set_progress, filefetch_fetch_options_set_retries,
    filefetch_fetch_options_set_sha256, filefetch_fetch_options_set_timeout_ms,
    filefetch_fetch_to_callback, filefetch_interrupt_callback, filefetch_progress_callback,
    filefetch_write_callback,
};
pub use many::filefetch_fetch_many;
pub use message::{filefetch_last_error, filefetch_strerror};
pub use server::{
    filefetch_serve, filefetch_server, filefetch_server_abort, filefetch_server_free,
    filefetch_server_metrics_port, filefetch_server_options, filefetch_server_options_allow,
    filefetch_server_options_deny, filefetch_server_options_free, filefetch_server_options_new,
    filefetch_server_options_set_address, filefetch_server_options_set_file_cache_ms,
    filefetch_server_options_set_grace_period_ms, filefetch_server_options_set_max_connections,
    filefetch_server_options_set_max_per_address, filefetch_server_options_set_metrics,
    filefetch_server_options_set_port, filefetch_server_options_set_proxy_protocol,
    filefetch_server_options_set_rate_limit, filefetch_server_options_set_request_timeout_ms,
    filefetch_server_options_set_root, filefetch_server_options_set_send_timeout_ms,
    filefetch_server_options_set_threads, filefetch_server_options_set_total_rate_limit,
    filefetch_server_port, filefetch_server_shutdown, filefetch_server_start,
    filefetch_server_stop,
};

/// Returns the library's version, e.g. "0.1.0". A static string: never NULL, not to be
/// freed. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_version() -> *const c_char {
    const VERSION: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes(),
    ) {
        Ok(v) => v,
        Err(_) => c"unknown",
    };
    VERSION.as_ptr()
}
