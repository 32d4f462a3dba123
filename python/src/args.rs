//! Checks of Python arguments that Rust types cannot express: port ranges, counts, timeouts
//! and durations in seconds, host strings for listening.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use pyo3::prelude::*;

use crate::errors::invalid_argument;

/// A port to connect to: 1 to 65535.
pub(crate) fn remote_port(py: Python<'_>, port: i64) -> PyResult<u16> {
    match u16::try_from(port) {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(invalid_argument(
            py,
            format!("port must be between 1 and 65535, not {port}"),
        )),
    }
}

/// A port to listen on: 0 (any free port) to 65535.
pub(crate) fn local_port(py: Python<'_>, port: i64) -> PyResult<u16> {
    u16::try_from(port)
        .map_err(|_| invalid_argument(py, format!("port must be between 0 and 65535, not {port}")))
}

/// A timeout given in seconds: a positive, finite number.
pub(crate) fn seconds(py: Python<'_>, what: &str, value: f64) -> PyResult<Duration> {
    if value.is_finite() && value > 0.0 {
        if let Ok(d) = Duration::try_from_secs_f64(value) {
            return Ok(d);
        }
    }
    Err(invalid_argument(
        py,
        format!("{what} must be a positive number of seconds, not {value}"),
    ))
}

/// A duration given in seconds where 0 means "none": a non-negative, finite number.
pub(crate) fn seconds_or_zero(py: Python<'_>, what: &str, value: f64) -> PyResult<Duration> {
    if value == 0.0 {
        return Ok(Duration::ZERO);
    }
    seconds(py, what, value).map_err(|_| {
        invalid_argument(
            py,
            format!("{what} must be 0 or a positive number of seconds, not {value}"),
        )
    })
}

/// A count where 0 has a meaning of its own (such as "one per core"): a non-negative integer.
pub(crate) fn count(py: Python<'_>, what: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        invalid_argument(
            py,
            format!("{what} must be a non-negative integer, not {value}"),
        )
    })
}

/// The addresses `host` stands for, with `port`: an IP literal, `""` (every IPv4 address, as
/// in Python's `socket.bind`) or a name, resolved like Python would.
pub(crate) fn listen_addrs(py: Python<'_>, host: &str, port: u16) -> PyResult<Vec<SocketAddr>> {
    let host = match host {
        "" => "0.0.0.0",
        h => h
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(h),
    };
    let resolved = py.detach(|| {
        (host, port).to_socket_addrs().map(|addrs| {
            let mut unique: Vec<SocketAddr> = Vec::new();
            for addr in addrs {
                if !unique.contains(&addr) {
                    unique.push(addr);
                }
            }
            unique
        })
    });
    match resolved {
        Ok(addrs) if !addrs.is_empty() => Ok(addrs),
        Ok(_) => Err(invalid_argument(
            py,
            format!("host {host:?} has no address to listen on"),
        )),
        Err(e) => Err(invalid_argument(
            py,
            format!("cannot resolve host {host:?}: {e}"),
        )),
    }
}
