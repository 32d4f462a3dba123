//! The client side: the fetch options handle, fetching to a file, into memory, or to a
//! write callback as the data arrives.
//!
//! The handle holds core's `FetchOptionsBuilder`; each setter checks its value with core's
//! rules (`filefetch::config`) and reports core's error, and each fetch builds the options,
//! so core decides what is valid.

use std::ffi::{c_char, c_int, c_void};
use std::io;
use std::ops::ControlFlow;
use std::ptr::NonNull;
use std::time::Duration;

use filefetch::config::{self, check_count};
use filefetch::{Error, Fetch, FetchOptions, FetchOptionsBuilder, Sha256Digest};

use crate::error::{filefetch_status, Failure};
use crate::guard::{
    duration_ms, guard, guard_or, non_null, required, try_mut, try_ref, try_str, write_out,
};

/// Called as data arrives with the bytes received so far and the file's total size.
///
/// Return 0 to continue, or any other value to stop the transfer: the fetch then returns
/// `FILEFETCH_STATUS_ABORTED` and leaves no file behind. It is called on the thread that
/// called the fetch function, with the `user_data` given to
/// `filefetch_fetch_options_set_progress`; `filefetch_fetch_many` does not call it. It must
/// not unwind (C++ exceptions, `longjmp`) through the library.
pub type filefetch_progress_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, received: u64, total: u64) -> c_int>;

/// Polled about every 50 ms while a fetch waits for the network, even when no data arrives.
///
/// Return 0 to continue, or any other value to stop: the fetch then returns
/// `FILEFETCH_STATUS_INTERRUPTED` and leaves no file behind. Use it to cancel from a signal
/// handler's flag or from another thread. It is called on the thread that called the fetch
/// function, or for `filefetch_fetch_many` possibly on that function's worker threads, on
/// several at once, with the `user_data` given to `filefetch_fetch_options_set_interrupt`.
/// It must not unwind through the library.
pub type filefetch_interrupt_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void) -> c_int>;

/// Receives the file's data as it arrives, for `filefetch_fetch_to_callback` (libcurl's
/// `CURLOPT_WRITEFUNCTION`): `len` bytes at `data`, the next piece of the file in order.
///
/// Return `len` to take them all. Any other value stops the transfer: the fetch returns
/// `FILEFETCH_STATUS_WRITE_ERROR` and the callback is not called again. `data` is valid only
/// during the call (copy what you keep); `len` is never 0, so an empty file gives no call.
/// It is called on the thread that called the fetch function, with its `user_data`, and
/// must not unwind (C++ exceptions, `longjmp`) through the library.
pub type filefetch_write_callback =
    Option<unsafe extern "C" fn(data: *const u8, len: usize, user_data: *mut c_void) -> usize>;

/// How fetches behave: destination, overwriting, timeouts and time limits, maximum size,
/// retries, the SHA-256 digest expected, callbacks. Opaque.
///
/// Create with `filefetch_fetch_options_new`, change with the setters, release with
/// `filefetch_fetch_options_free`. One handle may be used by several fetches, also on
/// several threads at once, as long as no setter runs at the same time.
#[derive(Debug)]
pub struct filefetch_fetch_options {
    builder: FetchOptionsBuilder,
    /// The whole-fetch limit, applied to the builder at each fetch: C's 0 ("no limit") has
    /// no builder call that would undo a limit set earlier.
    max_time: Option<Duration>,
    /// The SHA-256 digest the data must have, checked by each fetch.
    expected: Option<Sha256Digest>,
    progress: Option<Callback<unsafe extern "C" fn(*mut c_void, u64, u64) -> c_int>>,
    interrupt: Option<Callback<unsafe extern "C" fn(*mut c_void) -> c_int>>,
}

/// A C callback and the pointer passed back to it.
#[derive(Debug, Clone, Copy)]
struct Callback<F> {
    function: F,
    user_data: *mut c_void,
}

// SAFETY: the library only passes `user_data` back to the caller's callback, on the threads
// that call the fetch functions with these options and on the worker threads of
// `filefetch_fetch_many`; the header documents that the callback and its data must cope with
// that.
unsafe impl<F: Send> Send for Callback<F> {}
// SAFETY: as for `Send`: the pointer is never dereferenced by the library.
unsafe impl<F: Sync> Sync for Callback<F> {}

impl filefetch_fetch_options {
    /// Applies one builder setter.
    fn update(&mut self, change: impl FnOnce(FetchOptionsBuilder) -> FetchOptionsBuilder) {
        self.builder = change(std::mem::take(&mut self.builder));
    }

    /// The core options for one fetch, built (and so checked) by core, with the time limit
    /// and the interrupt callback attached.
    pub(crate) fn build(&self) -> Result<FetchOptions, Failure> {
        let mut builder = self.builder.clone();
        if let Some(limit) = self.max_time {
            builder = builder.max_time(limit);
        }
        if let Some(cb) = self.interrupt {
            builder = builder.interrupt(move || {
                let cb = &cb;
                // SAFETY: the caller supplied this function for exactly this call, with
                // this user_data (see filefetch_fetch_options_set_interrupt).
                unsafe { (cb.function)(cb.user_data) != 0 }
            });
        }
        Ok(builder.build()?)
    }

    /// A fetch of `name` from `host`:`port` with `built` (from [`Self::build`]) and this
    /// handle's progress callback and expected digest.
    fn fetch<'a>(&'a self, request: &Request<'a>, built: &'a FetchOptions) -> Fetch<'a> {
        let fetch = Fetch::new(request.host, request.port, request.name)
            .options(built)
            .progress(|received, total| self.progress(received, total));
        match self.expected {
            Some(digest) => fetch.expect_sha256(digest),
            None => fetch,
        }
    }

    /// The SHA-256 digest the data must have, if one was set.
    pub(crate) fn expected(&self) -> Option<Sha256Digest> {
        self.expected
    }

    /// Calls the progress callback, if any.
    fn progress(&self, received: u64, total: u64) -> ControlFlow<()> {
        match self.progress {
            // SAFETY: the caller supplied this function for exactly this call, with this
            // user_data (see filefetch_fetch_options_set_progress).
            Some(cb) if unsafe { (cb.function)(cb.user_data, received, total) } != 0 => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        }
    }
}

/// Creates a fetch options handle with the defaults: the file goes to the requested name's
/// last component in the current directory, an existing file is never overwritten, the idle
/// timeout is 1 s, the connect timeout 5 s, no limit on the whole fetch's time, no minimum
/// rate, no maximum size, no callbacks.
///
/// On success `*out_options` receives a new handle, owned by the caller, to be released with
/// `filefetch_fetch_options_free`. `out_options` must not be NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_new(
    out_options: *mut *mut filefetch_fetch_options,
) -> filefetch_status {
    guard(|| {
        let out = non_null(out_options, "out_options")?;
        let options = Box::new(filefetch_fetch_options {
            builder: FetchOptions::builder(),
            max_time: None,
            expected: None,
            progress: None,
            interrupt: None,
        });
        // SAFETY: `out` is not NULL and the caller provides room for one pointer.
        unsafe { write_out(out, Box::into_raw(options)) };
        Ok(())
    })
}

/// Releases a fetch options handle. NULL is allowed and does nothing.
///
/// The handle must not be in use by a fetch on another thread.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_free(options: *mut filefetch_fetch_options) {
    guard_or((), || {
        if !options.is_null() {
            // SAFETY: a non-NULL handle was made by filefetch_fetch_options_new with
            // Box::into_raw and, per the contract, is freed only once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Runs `change` on the options behind a handle given to a setter.
fn set(
    options: *mut filefetch_fetch_options,
    change: impl FnOnce(&mut filefetch_fetch_options) -> Result<(), Failure>,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_fetch_options_new, and setters must
        // not run while another thread uses the handle.
        let options = unsafe { try_mut(options, "options") }?;
        change(options)
    })
}

/// Sets where the file is written: a file path, or an existing directory to put the
/// requested name's last component in. The string is copied. NULL for either argument
/// gives `FILEFETCH_STATUS_INVALID_ARGUMENT`; `path` must be valid UTF-8.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_output(
    options: *mut filefetch_fetch_options,
    path: *const c_char,
) -> filefetch_status {
    set(options, |options| {
        // SAFETY: a non-NULL `path` is a NUL-terminated string per the contract.
        let path = unsafe { try_str(path, "path") }?;
        if path.is_empty() {
            return Err(Failure::invalid("`path` is empty"));
        }
        options.update(|b| b.output(path));
        Ok(())
    })
}

/// Allows (`true`) or forbids (`false`, the default) replacing an existing destination.
/// A replacement is atomic: the old file stays until the new one is complete.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_overwrite(
    options: *mut filefetch_fetch_options,
    overwrite: bool,
) -> filefetch_status {
    set(options, |options| {
        options.update(|b| b.overwrite(overwrite));
        Ok(())
    })
}

/// Asks (`true`) for the file's data to be flushed to stable storage before it appears.
/// Off by default.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_fsync(
    options: *mut filefetch_fetch_options,
    fsync: bool,
) -> filefetch_status {
    set(options, |options| {
        options.update(|b| b.fsync(fsync));
        Ok(())
    })
}

/// Sets the idle timeout in milliseconds: how long any read or write may wait for progress
/// before the fetch fails with `FILEFETCH_STATUS_TIMEOUT` (1000 by default, as the protocol
/// prescribes). 0 gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names
/// `idle_timeout`) and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_timeout_ms(
    options: *mut filefetch_fetch_options,
    timeout_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let timeout = duration_ms("idle_timeout", timeout_ms.into(), true)?;
        options.update(|b| b.idle_timeout(timeout));
        Ok(())
    })
}

/// Sets how long connecting to one address of the host may take, in milliseconds (5000 by
/// default). 0 gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names
/// `connect_timeout`) and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_connect_timeout_ms(
    options: *mut filefetch_fetch_options,
    timeout_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let timeout = duration_ms("connect_timeout", timeout_ms.into(), true)?;
        options.update(|b| b.connect_timeout(timeout));
        Ok(())
    })
}

/// Limits the whole fetch, connecting included, to `max_time_ms` milliseconds (curl's
/// `--max-time`): past it the fetch fails with `FILEFETCH_STATUS_TIMEOUT` and leaves nothing
/// behind. 0 (the default) means no limit. More than a year (31536000000 ms) gives
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `max_time`) and leaves the
/// setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_max_time_ms(
    options: *mut filefetch_fetch_options,
    max_time_ms: u64,
) -> filefetch_status {
    set(options, |options| {
        options.max_time = match max_time_ms {
            0 => None,
            ms => Some(duration_ms("max_time", ms, true)?),
        };
        Ok(())
    })
}

/// Fails the fetch with `FILEFETCH_STATUS_TIMEOUT`, leaving nothing behind, when fewer than
/// `bytes_per_sec` bytes a second arrive over a window of `window_ms` milliseconds (curl's
/// `--speed-limit` and `--speed-time`; curl's default window is 30000 ms). A
/// `bytes_per_sec` of 0 (the default) turns the check off, whatever the window. With a
/// nonzero rate, a window of 0 or of more than a year gives
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `min_rate window`) and leaves the
/// setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_min_rate(
    options: *mut filefetch_fetch_options,
    bytes_per_sec: u64,
    window_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let window = duration_ms("min_rate window", window_ms.into(), bytes_per_sec > 0)?;
        options.update(|b| b.min_rate(bytes_per_sec, window));
        Ok(())
    })
}

/// Sets the largest file accepted, in bytes: when the server announces a larger one, the
/// fetch fails with `FILEFETCH_STATUS_TOO_LARGE` before any data is read, and leaves nothing
/// behind. `UINT64_MAX` (the default) means no limit; 0 accepts only empty files.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_max_size(
    options: *mut filefetch_fetch_options,
    max_size: u64,
) -> filefetch_status {
    set(options, |options| {
        // UINT64_MAX is passed on as is: no announced length can exceed it.
        options.update(|b| b.max_size(max_size));
        Ok(())
    })
}

/// Sets how many more times a fetch is tried when an attempt fails in a way the next may not
/// (the host unreachable, the connection closed before the response or cut short, a
/// timeout other than the whole-fetch limit), and the first wait in milliseconds, which
/// doubles each time up to 10 s (0 and 250 by default). Each attempt starts afresh and leaves
/// nothing behind; the whole-fetch limit (`filefetch_fetch_options_set_max_time_ms`) bounds
/// every attempt and wait together. More than 100 retries gives
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_retries(
    options: *mut filefetch_fetch_options,
    retries: u32,
    delay_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        check_count("retries", retries as usize, 0, config::MAX_RETRIES as usize)?;
        let delay = duration_ms("retry_delay", delay_ms.into(), false)?;
        options.update(|b| b.retries(retries).retry_delay(delay));
        Ok(())
    })
}

/// Sets the SHA-256 digest the file's data must have, as 64 hexadecimal digits in either
/// case (as `sha256sum` prints it); NULL removes it (the default: no check). The digest is
/// computed as the data arrives, so the data takes the buffered receive path (on Linux,
/// not `splice`) and is never read again. Data with another digest gives
/// `FILEFETCH_STATUS_CHECKSUM_MISMATCH`, which is not retried: `filefetch_fetch` then
/// leaves nothing behind and keeps an existing destination as it was (even when
/// overwriting), `filefetch_fetch_bytes` returns no buffer, and `filefetch_fetch_to_callback`
/// returns it once the write callback has received all the data (which it must then
/// discard). `filefetch_last_error` gives both digests.
///
/// Anything but 64 hexadecimal digits gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message
/// names `sha256`) and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_sha256(
    options: *mut filefetch_fetch_options,
    hex: *const c_char,
) -> filefetch_status {
    set(options, |options| {
        options.expected = if hex.is_null() {
            None
        } else {
            // SAFETY: a non-NULL `hex` is a NUL-terminated string per the contract.
            let text = unsafe { try_str(hex, "hex") }?;
            Some(text.parse::<Sha256Digest>()?)
        };
        Ok(())
    })
}

/// Sets the progress callback and the `user_data` pointer passed to it; a NULL `callback`
/// removes it. `user_data` may be NULL and is never dereferenced by the library; it must
/// stay valid while fetches use these options.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_progress(
    options: *mut filefetch_fetch_options,
    callback: filefetch_progress_callback,
    user_data: *mut c_void,
) -> filefetch_status {
    set(options, |options| {
        options.progress = callback.map(|function| Callback {
            function,
            user_data,
        });
        Ok(())
    })
}

/// Sets the interrupt callback and the `user_data` pointer passed to it; a NULL `callback`
/// removes it. `user_data` may be NULL and is never dereferenced by the library; it must
/// stay valid while fetches use these options.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_fetch_options_set_interrupt(
    options: *mut filefetch_fetch_options,
    callback: filefetch_interrupt_callback,
    user_data: *mut c_void,
) -> filefetch_status {
    set(options, |options| {
        options.interrupt = callback.map(|function| Callback {
            function,
            user_data,
        });
        Ok(())
    })
}

/// The arguments every fetch function starts with, checked.
struct Request<'a> {
    host: &'a str,
    port: u16,
    name: &'a str,
    options: &'a filefetch_fetch_options,
}

impl<'a> Request<'a> {
    /// Checks the common arguments.
    ///
    /// # Safety
    ///
    /// Non-NULL strings must be NUL-terminated and a non-NULL `options` must be a live
    /// handle, all valid for `'a`.
    unsafe fn new(
        host: *const c_char,
        port: u16,
        name: *const c_char,
        options: *const filefetch_fetch_options,
    ) -> Result<Request<'a>, Failure> {
        Ok(Request {
            // SAFETY: per this function's contract.
            host: unsafe { try_str(host, "host") }?,
            port,
            // SAFETY: per this function's contract.
            name: unsafe { try_str(name, "name") }?,
            // SAFETY: per this function's contract.
            options: unsafe { try_ref(options, "options") }?,
        })
    }
}

/// Downloads the file `name` from `host`:`port` into a local file.
///
/// `host` is a host name or an IPv4/IPv6 address (brackets allowed, as in `"[::1]"`);
/// every address it resolves to is tried in turn. `name` is sent as is (1 to 1024 bytes of
/// UTF-8). The destination is chosen by the options (by default the last component of
/// `name` in the current directory); it appears only once the whole file has arrived, and
/// after any failure nothing is left behind. On success `*out_size` receives the file's size
/// in bytes; on failure it is not written and `filefetch_last_error` describes what
/// happened. Options out of range (which the setters refuse already) give
/// `FILEFETCH_STATUS_INVALID_ARGUMENT`.
///
/// No argument may be NULL. Blocks the calling thread until done. Thread-safe: several
/// threads may fetch at once, sharing an options handle or not.
#[no_mangle]
pub extern "C" fn filefetch_fetch(
    host: *const c_char,
    port: u16,
    name: *const c_char,
    options: *const filefetch_fetch_options,
    out_size: *mut u64,
) -> filefetch_status {
    guard(|| {
        // SAFETY: per this function's documented contract.
        let request = unsafe { Request::new(host, port, name, options) }?;
        let out = non_null(out_size, "out_size")?;
        let built = request.options.build()?;
        let fetched = request.options.fetch(&request, &built).to_file()?;
        // SAFETY: `out` is not NULL and points to a caller-provided uint64_t.
        unsafe { write_out(out, fetched.bytes) };
        Ok(())
    })
}

/// Downloads the file `name` from `host`:`port` into memory.
///
/// Arguments are as for `filefetch_fetch`; the options' output path, overwrite and fsync
/// settings do not apply. Once the server has announced the file's size, one buffer of
/// exactly that size is allocated and the data is received straight into it: no other copy
/// is made, and a maximum size (`filefetch_fetch_options_set_max_size`) is enforced before
/// anything is allocated. On success `*out_data` receives that buffer, owned by the caller,
/// to be released with `filefetch_bytes_free` (never with `free`), and `*out_len` its
/// length in bytes; the buffer is never NULL, even for an empty file. On failure neither is
/// written and no memory stays allocated; a buffer that cannot be allocated gives
/// `FILEFETCH_STATUS_IO` ("out of memory").
///
/// No argument may be NULL. Blocks the calling thread until done. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_fetch_bytes(
    host: *const c_char,
    port: u16,
    name: *const c_char,
    options: *const filefetch_fetch_options,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> filefetch_status {
    guard(|| {
        // SAFETY: per this function's documented contract.
        let request = unsafe { Request::new(host, port, name, options) }?;
        let out_data = non_null(out_data, "out_data")?;
        let out_len = non_null(out_len, "out_len")?;
        let built = request.options.build()?;
        let response = request.options.fetch(&request, &built).open()?;
        let size = response.len();
        // Only a 32-bit process can be handed a file larger than its address space.
        let len = usize::try_from(size).map_err(|_| Error::TooLarge {
            size,
            limit: usize::MAX as u64,
        })?;
        let mut buffer = CBuffer::zeroed(len)?;
        // On failure `buffer` is dropped, which frees it.
        response.read_into(buffer.as_mut_slice())?;
        // SAFETY: both out-parameters are not NULL and point to caller-provided storage.
        unsafe {
            write_out(out_len, len);
            write_out(out_data, buffer.into_raw().as_ptr());
        }
        Ok(())
    })
}

/// Downloads the file `name` from `host`:`port` and hands its data to `write_callback` as it
/// arrives, with `user_data` (which may be NULL), in order and without keeping a copy.
///
/// Arguments are as for `filefetch_fetch`; the options' output path, overwrite and fsync
/// settings do not apply, the others do: the progress callback is called beside the write
/// callback (after each piece is written), the interrupt callback and the time limits stop
/// the transfer, and a file larger than the maximum size gives `FILEFETCH_STATUS_TOO_LARGE`
/// before any call to `write_callback`. Each piece is passed straight from the one buffer
/// the library reads the socket into, as it is read.
///
/// A return value of `write_callback` other than the length it was given stops the transfer
/// with `FILEFETCH_STATUS_WRITE_ERROR`; `filefetch_last_error` then says how many bytes it
/// took, of how many, at which offset. After any failure the callback may have received
/// part of the file (everything before the failure, in order): it is the caller's to discard.
/// On success `*out_size` receives the file's size, which is also the number of bytes
/// delivered; on failure it is not written.
///
/// No argument may be NULL except `user_data`. Blocks the calling thread until done.
/// Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_fetch_to_callback(
    host: *const c_char,
    port: u16,
    name: *const c_char,
    options: *const filefetch_fetch_options,
    write_callback: filefetch_write_callback,
    user_data: *mut c_void,
    out_size: *mut u64,
) -> filefetch_status {
    guard(|| {
        // SAFETY: per this function's documented contract.
        let request = unsafe { Request::new(host, port, name, options) }?;
        let function = required(write_callback, "write_callback")?;
        let out = non_null(out_size, "out_size")?;
        let built = request.options.build()?;
        let mut writer = CallbackWriter {
            function,
            user_data,
            delivered: 0,
            refused: None,
        };
        let fetched = request
            .options
            .fetch(&request, &built)
            .to_writer(&mut writer);
        // A refusal reaches core as a writer's I/O error; the status is the callback's.
        if let Some((taken, offered, offset)) = writer.refused {
            return Err(Failure::write_refused(taken, offered, offset));
        }
        let size = fetched?;
        // SAFETY: `out` is not NULL and points to a caller-provided uint64_t.
        unsafe { write_out(out, size) };
        Ok(())
    })
}

/// The caller's write callback as a `std::io::Write`, so core's `to_writer` drives it.
///
/// A short (or long) count is not a partial write to retry: the callback has refused, so
/// `write` records it and fails, and every later call fails the same way without calling
/// the callback again.
struct CallbackWriter {
    function: unsafe extern "C" fn(*const u8, usize, *mut c_void) -> usize,
    user_data: *mut c_void,
    /// Bytes the callback has taken so far: the offset of the next piece.
    delivered: u64,
    /// `(taken, offered, offset)` of the call that refused.
    refused: Option<(usize, usize, u64)>,
}

impl io::Write for CallbackWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.refused.is_some() {
            return Err(io::Error::other("the write callback refused earlier data"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        // SAFETY: the caller supplied this function and user_data for this fetch; `buf` is
        // valid for `buf.len()` bytes during the call, as the header says.
        let taken = unsafe { (self.function)(buf.as_ptr(), buf.len(), self.user_data) };
        if taken != buf.len() {
            self.refused = Some((taken, buf.len(), self.delivered));
            // Not `Interrupted`, which `write_all` would retry.
            return Err(io::Error::other(format!(
                "write callback took {taken} of {} bytes",
                buf.len()
            )));
        }
        self.delivered += buf.len() as u64;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A buffer from the C allocator, so the caller can hold it without any Rust allocator
/// bookkeeping and `filefetch_bytes_free` needs no length. Freed when dropped, unless handed
/// over with `into_raw`.
///
/// It comes from `calloc`, zeroed, because the data is received through a `&mut [u8]`,
/// which must not point to uninitialised memory; a large allocation gets fresh zero pages
/// from the system, so the zeroing costs no pass over the data.
struct CBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

impl CBuffer {
    /// `len` zeroed bytes (at least one is allocated, so an empty file still gets a unique,
    /// non-NULL buffer); an allocation failure is `FILEFETCH_STATUS_IO`, "out of memory".
    fn zeroed(len: usize) -> Result<CBuffer, Failure> {
        // SAFETY: calloc may be called with any count; it returns NULL or a block of
        // `len.max(1)` zeroed bytes.
        let raw = unsafe { libc::calloc(len.max(1), 1) }.cast::<u8>();
        let ptr = NonNull::new(raw).ok_or_else(|| Failure {
            status: filefetch_status::Io,
            message: format!("out of memory: cannot allocate {len} bytes for the file"),
        })?;
        Ok(CBuffer { ptr, len })
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed) bytes owned by this buffer,
        // borrowed mutably through `self` for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Hands the buffer over to the caller, who frees it with `filefetch_bytes_free`.
    fn into_raw(self) -> NonNull<u8> {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl Drop for CBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from calloc, was not handed over (`into_raw` forgets the
        // buffer), and is freed only here.
        unsafe { libc::free(self.ptr.as_ptr().cast()) }
    }
}

/// Releases a buffer returned by `filefetch_fetch_bytes`. NULL is allowed and does nothing.
/// Thread-safe (any thread may free a buffer).
#[no_mangle]
pub extern "C" fn filefetch_bytes_free(data: *mut u8) {
    guard_or((), || {
        // SAFETY: a non-NULL `data` came from calloc in filefetch_fetch_bytes and is freed
        // only once, per the contract; free(NULL) does nothing.
        unsafe { libc::free(data.cast()) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Takes the first piece whole and half of every later one; counts its calls in the
    /// `usize` behind `user_data`.
    unsafe extern "C" fn take_half_after_one(
        _data: *const u8,
        len: usize,
        user_data: *mut c_void,
    ) -> usize {
        // SAFETY: the test passes a pointer to a live `usize` that nothing else uses
        // meanwhile.
        let calls = unsafe { &mut *user_data.cast::<usize>() };
        *calls += 1;
        if *calls == 1 {
            len
        } else {
            len / 2
        }
    }

    #[test]
    fn a_short_count_is_a_refusal_that_ends_the_calls() {
        let mut calls = 0usize;
        let mut writer = CallbackWriter {
            function: take_half_after_one,
            user_data: (&raw mut calls).cast(),
            delivered: 0,
            refused: None,
        };
        writer.write_all(b"abcd").unwrap();
        let error = writer.write_all(b"efgh").unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::Interrupted);
        assert_eq!(writer.refused, Some((2, 4, 4)));
        assert!(writer.write_all(b"ijkl").is_err());
        assert_eq!(writer.delivered, 4);
        assert_eq!(calls, 2, "no call after the refusal");

        let failure = Failure::write_refused(2, 4, 4);
        assert_eq!(failure.status, filefetch_status::WriteError);
        assert_eq!(
            failure.message,
            "write callback took 2 of 4 bytes at offset 4; transfer stopped"
        );
    }
}
