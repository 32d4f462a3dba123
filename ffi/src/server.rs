//! The server side: the server options handle, a server running in the background, and a
//! server running on the calling thread.
//!
//! The handle holds core's `ServerConfigBuilder` (and the address and port, which core takes
//! when binding); each setter checks its value with core's rules (`filefetch::config`) and
//! reports core's error, and starting a server builds the configuration.

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Mutex, PoisonError};

use filefetch::config::{self, check_count};
use filefetch::server::{AccessRule, Cidr};
use filefetch::{BackgroundServer, Error, Server, ServerConfig, ServerConfigBuilder};

use crate::error::{filefetch_status, Failure};
use crate::guard::{duration_ms, guard, guard_or, non_null, try_mut, try_ref, try_str, write_out};

/// Where and how a server serves: root directory, address, port, limits, timeouts, worker
/// threads, open-file reuse, who may connect, rate limits. Opaque.
///
/// Create with `filefetch_server_options_new`, change with the setters, release with
/// `filefetch_server_options_free`. Starting a server copies what it needs, so the handle
/// may be freed or changed afterwards. Not to be changed while another thread uses it.
#[derive(Debug)]
pub struct filefetch_server_options {
    builder: ServerConfigBuilder,
    address: IpAddr,
    port: u16,
}

impl filefetch_server_options {
    /// Applies one builder setter.
    fn update(&mut self, change: impl FnOnce(ServerConfigBuilder) -> ServerConfigBuilder) {
        self.builder = change(std::mem::take(&mut self.builder));
    }

    /// Builds the configuration (core checks it) and binds the listening socket.
    fn bind(&self) -> Result<Server, Failure> {
        let config = self.builder.clone().build()?;
        let addr = SocketAddr::new(self.address, self.port);
        Ok(Server::bind(addr, config)?)
    }
}

/// A server running on a background thread. Opaque.
///
/// Created by `filefetch_server_start`; stopped by `filefetch_server_abort` (at once) or
/// `filefetch_server_shutdown` (gracefully); released by `filefetch_server_free`, which also
/// stops it at once.
/// All functions taking it are thread-safe, except `filefetch_server_free`, which must be
/// the last use.
#[derive(Debug)]
pub struct filefetch_server {
    port: u16,
    /// The metrics endpoint's port; 0 when the server serves no metrics.
    metrics_port: u16,
    running: Mutex<Option<BackgroundServer>>,
}

/// Creates a server options handle with the defaults: serve the current directory on every
/// IPv4 address ("0.0.0.0") at port 0, meaning any free port.
///
/// On success `*out_options` receives a new handle, owned by the caller, to be released with
/// `filefetch_server_options_free`. `out_options` must not be NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_server_options_new(
    out_options: *mut *mut filefetch_server_options,
) -> filefetch_status {
    guard(|| {
        let out = non_null(out_options, "out_options")?;
        let options = Box::new(filefetch_server_options {
            builder: ServerConfig::builder(),
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
        });
        // SAFETY: `out` is not NULL and the caller provides room for one pointer.
        unsafe { write_out(out, Box::into_raw(options)) };
        Ok(())
    })
}

/// Releases a server options handle. NULL is allowed and does nothing.
#[no_mangle]
pub extern "C" fn filefetch_server_options_free(options: *mut filefetch_server_options) {
    guard_or((), || {
        if !options.is_null() {
            // SAFETY: a non-NULL handle was made by filefetch_server_options_new with
            // Box::into_raw and, per the contract, is freed only once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Runs `change` on the options behind a handle given to a setter.
fn set(
    options: *mut filefetch_server_options,
    change: impl FnOnce(&mut filefetch_server_options) -> Result<(), Failure>,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_options_new, and setters must
        // not run while another thread uses the handle.
        let options = unsafe { try_mut(options, "options") }?;
        change(options)
    })
}

/// Sets the directory whose files are served; requests cannot reach outside it. The string
/// is copied; it must be valid UTF-8. The directory is opened when the server starts.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_root(
    options: *mut filefetch_server_options,
    root: *const c_char,
) -> filefetch_status {
    set(options, |options| {
        // SAFETY: a non-NULL `root` is a NUL-terminated string per the contract.
        let root = unsafe { try_str(root, "root") }?;
        if root.is_empty() {
            return Err(Failure::invalid("`root` is empty"));
        }
        options.update(|b| b.root(root));
        Ok(())
    })
}

/// Sets the address to listen on: an IPv4 or IPv6 address such as "127.0.0.1", "::1",
/// "0.0.0.0" (every IPv4 address) or "::" (every address, IPv6 and IPv4). Host names are not
/// accepted: anything else gives `FILEFETCH_STATUS_INVALID_ARGUMENT`.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_address(
    options: *mut filefetch_server_options,
    address: *const c_char,
) -> filefetch_status {
    set(options, |options| {
        // SAFETY: a non-NULL `address` is a NUL-terminated string per the contract.
        let text = unsafe { try_str(address, "address") }?;
        options.address = filefetch::config::bare_host(text)
            .parse()
            .map_err(|_| Failure::invalid(format!("`address` {text:?} is not an IP address")))?;
        Ok(())
    })
}

/// Sets the port to listen on; 0 (the default) picks a free port, which
/// `filefetch_server_port` then reports.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_port(
    options: *mut filefetch_server_options,
    port: u16,
) -> filefetch_status {
    set(options, |options| {
        options.port = port;
        Ok(())
    })
}

/// Sets the most connections handled at once (10000 by default); more wait in the listen
/// backlog until one ends. 0, or more than 4294967295, gives
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `max_connections`) and leaves the
/// setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_max_connections(
    options: *mut filefetch_server_options,
    max_connections: usize,
) -> filefetch_status {
    set(options, |options| {
        check_count(
            "max_connections",
            max_connections,
            1,
            config::MAX_CONNECTIONS_LIMIT,
        )?;
        options.update(|b| b.max_connections(max_connections));
        Ok(())
    })
}

/// Sets how long a client has, from connecting, to send its whole request, in milliseconds
/// (1000 by default); a client that takes longer is disconnected without a response.
/// 0 gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `request_timeout`) and
/// leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_request_timeout_ms(
    options: *mut filefetch_server_options,
    timeout_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let timeout = duration_ms("request_timeout", timeout_ms.into(), true)?;
        options.update(|b| b.request_timeout(timeout));
        Ok(())
    })
}

/// Sets how long a client may read nothing before it is dropped, in milliseconds (10000 by
/// default). 0 gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names
/// `send_timeout`) and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_send_timeout_ms(
    options: *mut filefetch_server_options,
    timeout_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let timeout = duration_ms("send_timeout", timeout_ms.into(), true)?;
        options.update(|b| b.send_timeout(timeout));
        Ok(())
    })
}

/// Sets how long transfers in flight may take to finish after `filefetch_server_shutdown`,
/// in milliseconds (10000 by default); 0 cuts them at once, as `filefetch_server_abort` does.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_grace_period_ms(
    options: *mut filefetch_server_options,
    grace_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let grace = duration_ms("grace_period", grace_ms.into(), false)?;
        options.update(|b| b.grace_period(grace));
        Ok(())
    })
}

/// Expects (`true`) every connection to start with a PROXY protocol header, v1 or v2, as
/// HAProxy sends with `send-proxy` or `send-proxy-v2`: the log then names the client it
/// carries. A connection without a valid header is closed without a response. Off by
/// default; turn it on only behind such a balancer.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_proxy_protocol(
    options: *mut filefetch_server_options,
    proxy_protocol: bool,
) -> filefetch_status {
    set(options, |options| {
        options.update(|b| b.proxy_protocol(proxy_protocol));
        Ok(())
    })
}

/// Also serves the server's metrics over HTTP at `/metrics` on `address`, "IP:PORT" such as
/// "127.0.0.1:9100" or "[::1]:9100" (port 0 picks a free port, which
/// `filefetch_server_metrics_port` then reports), in the OpenMetrics text format Prometheus
/// scrapes: requests by outcome, bytes sent, active connections, open-file cache hits and
/// misses, refused connections by reason, and a request duration histogram. NULL or ""
/// turns metrics off (the default). Anything else gives `FILEFETCH_STATUS_INVALID_ARGUMENT`
/// naming `metrics`; an address that cannot be listened on makes `filefetch_server_start`
/// fail. Anyone who can reach the address can read the metrics.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_metrics(
    options: *mut filefetch_server_options,
    address: *const c_char,
) -> filefetch_status {
    set(options, |options| {
        let addr = if address.is_null() {
            None
        } else {
            // SAFETY: a non-NULL `address` is a NUL-terminated string per the contract.
            match unsafe { try_str(address, "metrics") }? {
                "" => None,
                text => Some(text.parse::<SocketAddr>().map_err(|_| {
                    Failure::invalid(format!(
                        "`metrics` {text:?} is not an IP address and port (\"127.0.0.1:9100\")"
                    ))
                })?),
            }
        };
        options.update(|b| b.metrics(addr));
        Ok(())
    })
}

/// Adds an access rule: a network (or one address) whose clients are served or refused.
fn add_rule(
    options: *mut filefetch_server_options,
    cidr: *const c_char,
    option: &'static str,
    rule: fn(Cidr) -> AccessRule,
) -> filefetch_status {
    set(options, |options| {
        // SAFETY: a non-NULL `cidr` is a NUL-terminated string per the contract.
        let text = unsafe { try_str(cidr, "cidr") }?;
        // Core names the setting `cidr`; here it is the function's.
        let network = text.parse::<Cidr>().map_err(|e| match e {
            Error::InvalidOption { problem, .. } => Error::InvalidOption { option, problem },
            other => other,
        })?;
        options.update(|b| b.access_rule(rule(network)));
        Ok(())
    })
}

/// Adds a rule serving the clients in `cidr`, after the rules added so far: a network such
/// as "10.0.0.0/8" or "2001:db8::/32", or one address ("192.0.2.7" meaning /32, "::1"
/// meaning /128). The string is copied.
///
/// Rules are checked in the order they were added, by this function and
/// `filefetch_server_options_deny` alike (as nginx's `allow` and `deny`): the first whose
/// network contains the client decides. A client no rule matches is refused if any rule is
/// an allow rule, and served otherwise. So an allow rule alone serves its network only, and
/// `deny 10.0.0.5` then `allow 10.0.0.0/8` serves 10.0.0.0/8 except 10.0.0.5. An IPv4 client
/// reaching an IPv6 socket ("::ffff:a.b.c.d") is judged as the IPv4 address; IPv6 rules match
/// IPv6 clients only. With the PROXY protocol on, the client is the one its header names. A
/// refused client is closed without a response, before its request is read, and logged.
///
/// Text that is not an address or a network, a prefix too long for the address, or an
/// address with bits set past its prefix ("10.1.0.0/8") gives
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `allow` and says what is wrong)
/// and adds no rule.
///
/// `options` and `cidr` must not be NULL. Not thread-safe for one handle: no other call may
/// use it meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_allow(
    options: *mut filefetch_server_options,
    cidr: *const c_char,
) -> filefetch_status {
    add_rule(options, cidr, "allow", AccessRule::Allow)
}

/// Adds a rule refusing the clients in `cidr` (closed without a response), after the rules
/// added so far; see `filefetch_server_options_allow` for the form of `cidr` and how rules
/// are checked. A bad `cidr` gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names
/// `deny`) and adds no rule.
///
/// `options` and `cidr` must not be NULL. Not thread-safe for one handle: no other call may
/// use it meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_deny(
    options: *mut filefetch_server_options,
    cidr: *const c_char,
) -> filefetch_status {
    add_rule(options, cidr, "deny", AccessRule::Deny)
}

/// Sets the most connections at once from one client address (0, the default: no limit);
/// one more is closed without a response, before its request is read, and logged. With the
/// PROXY protocol on, the address counted is that of the client its header names. More than
/// 4294967295 gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `max_per_address`)
/// and leaves the setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_max_per_address(
    options: *mut filefetch_server_options,
    max_per_address: usize,
) -> filefetch_status {
    set(options, |options| {
        check_count(
            "max_per_address",
            max_per_address,
            0,
            config::MAX_CONNECTIONS_LIMIT,
        )?;
        options.update(|b| b.max_per_address(max_per_address));
        Ok(())
    })
}

/// Sets the most bytes a second each connection sends (0, the default: no limit). A
/// connection may run ahead of the rate by a tenth of a second's worth (at least 1 KiB): in
/// any `t` seconds it sends at most `rate * t + burst` bytes, the header included.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_rate_limit(
    options: *mut filefetch_server_options,
    bytes_per_sec: u64,
) -> filefetch_status {
    set(options, |options| {
        options.update(|b| b.rate_limit(bytes_per_sec));
        Ok(())
    })
}

/// Sets the most bytes a second all connections together send (0, the default: no limit),
/// with the same burst as `filefetch_server_options_set_rate_limit`; connections take
/// turns, 16 KiB at most each, in the order they ask. Both limits may be set at once.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_total_rate_limit(
    options: *mut filefetch_server_options,
    bytes_per_sec: u64,
) -> filefetch_status {
    set(options, |options| {
        options.update(|b| b.total_rate_limit(bytes_per_sec));
        Ok(())
    })
}

/// Sets the number of worker threads; 0 (the default) means one per CPU core. More than 1024
/// gives `FILEFETCH_STATUS_INVALID_ARGUMENT` (the message names `threads`) and leaves the
/// setting as it was.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_threads(
    options: *mut filefetch_server_options,
    threads: usize,
) -> filefetch_status {
    set(options, |options| {
        check_count("threads", threads, 0, config::MAX_THREADS)?;
        options.update(|b| b.threads(threads));
        Ok(())
    })
}

/// Sets how long a small file (64 KiB or less) stays open for reuse by later requests of
/// the same name, in milliseconds (1000 by default); 0 opens every file afresh. A file
/// deleted or replaced is seen at once, and its size is measured at every request; a rename
/// away or a permission change can take this long to be seen.
///
/// `options` must not be NULL. Not thread-safe for one handle: no other call may use it
/// meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_options_set_file_cache_ms(
    options: *mut filefetch_server_options,
    file_cache_ms: u32,
) -> filefetch_status {
    set(options, |options| {
        let file_cache = duration_ms("file_cache", file_cache_ms.into(), false)?;
        options.update(|b| b.file_cache(file_cache));
        Ok(())
    })
}

/// Starts a server on a background thread and returns once it is listening, so clients
/// can connect as soon as this returns.
///
/// On success `*out_server` receives a new handle, owned by the caller, to be released with
/// `filefetch_server_free`. A root that cannot be opened or an address that cannot be
/// listened on gives `FILEFETCH_STATUS_IO`; options out of range (which the setters refuse
/// already) give `FILEFETCH_STATUS_INVALID_ARGUMENT`. No argument may be NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_server_start(
    options: *const filefetch_server_options,
    out_server: *mut *mut filefetch_server,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_options_new.
        let options = unsafe { try_ref(options, "options") }?;
        let out = non_null(out_server, "out_server")?;
        let running = options.bind()?.spawn()?;
        let server = Box::new(filefetch_server {
            port: running.local_addr().port(),
            metrics_port: running.metrics_addr().map_or(0, |addr| addr.port()),
            running: Mutex::new(Some(running)),
        });
        // SAFETY: `out` is not NULL and the caller provides room for one pointer.
        unsafe { write_out(out, Box::into_raw(server)) };
        Ok(())
    })
}

/// Reports the port the server listens on (the real one when port 0 was asked for).
/// Still answers after the server was stopped. No argument may be NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_server_port(
    server: *const filefetch_server,
    out_port: *mut u16,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_start and is not yet freed.
        let server = unsafe { try_ref(server, "server") }?;
        let out = non_null(out_port, "out_port")?;
        // SAFETY: `out` is not NULL and points to a caller-provided uint16_t.
        unsafe { write_out(out, server.port) };
        Ok(())
    })
}

/// Reports the port of the server's metrics endpoint (the real one when port 0 was asked
/// for), or 0 when the server serves no metrics (see
/// `filefetch_server_options_set_metrics`). Still answers after the server was stopped. No
/// argument may be NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn filefetch_server_metrics_port(
    server: *const filefetch_server,
    out_port: *mut u16,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_start and is not yet freed.
        let server = unsafe { try_ref(server, "server") }?;
        let out = non_null(out_port, "out_port")?;
        // SAFETY: `out` is not NULL and points to a caller-provided uint16_t.
        unsafe { write_out(out, server.metrics_port) };
        Ok(())
    })
}

/// Takes the running server out of its handle and stops it with `stop`.
fn stop_with(
    server: *mut filefetch_server,
    stop: impl FnOnce(BackgroundServer) -> filefetch::Result<()>,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_start and is not yet freed.
        let server = unsafe { try_ref(server.cast_const(), "server") }?;
        let running = server
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match running {
            Some(running) => Ok(stop(running)?),
            None => Ok(()),
        }
    })
}

/// Stops the server at once, cutting transfers in flight, and waits for its thread to end.
/// The handle stays valid (for `filefetch_server_port`) until `filefetch_server_free`.
/// Stopping a stopped server does nothing and returns `FILEFETCH_STATUS_OK`.
/// Thread-safe; NULL gives `FILEFETCH_STATUS_INVALID_ARGUMENT`.
#[no_mangle]
pub extern "C" fn filefetch_server_abort(server: *mut filefetch_server) -> filefetch_status {
    stop_with(server, BackgroundServer::abort)
}

/// The former name of `filefetch_server_abort`, kept so programs built against earlier
/// versions keep working: exactly the same function. New code should call
/// `filefetch_server_abort` (stop at once) or `filefetch_server_shutdown` (gracefully).
#[no_mangle]
pub extern "C" fn filefetch_server_stop(server: *mut filefetch_server) -> filefetch_status {
    filefetch_server_abort(server)
}

/// Stops the server gracefully: it stops accepting at once, lets transfers in flight finish
/// within the grace period (10 s by default; see
/// `filefetch_server_options_set_grace_period_ms`), then waits for its thread to end.
/// Otherwise as `filefetch_server_abort`.
#[no_mangle]
pub extern "C" fn filefetch_server_shutdown(server: *mut filefetch_server) -> filefetch_status {
    stop_with(server, BackgroundServer::shutdown)
}

/// Stops the server at once if it still runs, waits for its thread, and releases the
/// handle. NULL is allowed and does nothing. The handle must not be used afterwards, nor
/// by another thread meanwhile.
#[no_mangle]
pub extern "C" fn filefetch_server_free(server: *mut filefetch_server) {
    guard_or((), || {
        if !server.is_null() {
            // SAFETY: a non-NULL handle was made by filefetch_server_start with
            // Box::into_raw and, per the contract, is freed only once. Dropping the
            // BackgroundServer inside stops it and joins its thread.
            drop(unsafe { Box::from_raw(server) });
        }
    })
}

/// Serves files on the calling thread, with the given options; does not return while the
/// server runs.
///
/// Returns only if the server cannot start (`FILEFETCH_STATUS_IO` for a root that cannot be
/// opened or an address that cannot be listened on) or fails. To stop a server at will, use
/// `filefetch_server_start` instead. `options` must not be NULL; it may be freed once
/// this function returns.
#[no_mangle]
pub extern "C" fn filefetch_serve(options: *const filefetch_server_options) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL handle comes from filefetch_server_options_new.
        let options = unsafe { try_ref(options, "options") }?;
        let server = options.bind()?;
        Ok(server.run()?)
    })
}
