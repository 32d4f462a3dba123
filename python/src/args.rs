//! Python arguments into the values core's builders take. The ranges are core's
//! ([`filefetch::config`]); what is checked here is only what a Rust type cannot hold: an
//! integer beyond 64 bits or below 0, a number of seconds too large for a float, a port
//! outside 1 to 65535. Every such value is reported as core reports its own, as
//! [`Error::InvalidOption`] naming the keyword, so that Python sees `InvalidArgumentError`
//! and never a bare `OverflowError` from the conversion.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use filefetch::{config, Error};
use pyo3::exceptions::PyOverflowError;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::errors::{self, invalid_argument};

/// An integer argument as Python gave it: any `int` (or object with `__index__`), however
/// large, so that a value out of range is reported against its keyword.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Int {
    /// A value within 128 bits.
    Value(i128),
    /// A value beyond 128 bits, of this sign.
    Huge { negative: bool },
}

impl Int {
    /// A default, for the `#[pyo3(signature)]` of a function.
    pub(crate) const fn of(n: usize) -> Int {
        Int::Value(n as i128)
    }

    /// A default of a 64-bit setting (bytes, bytes a second).
    pub(crate) const fn of_u64(n: u64) -> Int {
        Int::Value(n as i128)
    }

    /// The value as the unsigned type `T`, or core's error naming `option`.
    fn to<T: TryFrom<i128>>(self, option: &'static str) -> Result<T, Error> {
        let problem = match self {
            Int::Value(v) => match T::try_from(v) {
                Ok(n) => return Ok(n),
                Err(_) if v < 0 => format!("must be 0 or more, not {v}"),
                Err(_) => format!("{v} is too large"),
            },
            Int::Huge { negative: true } => "must be 0 or more".to_owned(),
            Int::Huge { negative: false } => "is too large".to_owned(),
        };
        Err(Error::InvalidOption { option, problem })
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Int {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Int> {
        match obj.extract::<i128>() {
            Ok(v) => Ok(Int::Value(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => Ok(Int::Huge {
                negative: obj.lt(0)?,
            }),
            Err(e) => Err(e),
        }
    }
}

/// A number of seconds as Python gave it, an `int` or a `float`. An `int` too large for a
/// float is kept as the largest float of its sign, which core's rule refuses by name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds(f64);

impl Seconds {
    /// A default, for the `#[pyo3(signature)]` of a function.
    pub(crate) fn of(d: Duration) -> Seconds {
        Seconds(d.as_secs_f64())
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Seconds {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Seconds> {
        match obj.extract::<f64>() {
            Ok(v) => Ok(Seconds(v)),
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => {
                Ok(Seconds(if obj.lt(0)? { f64::MIN } else { f64::MAX }))
            }
            Err(e) => Err(e),
        }
    }
}

/// The addresses to listen on: one host (`str`) or several (a sequence of `str`).
#[derive(Debug, Clone)]
pub(crate) struct Hosts(Vec<String>);

impl Hosts {
    /// A default, for the `#[pyo3(signature)]` of a function.
    pub(crate) fn of(host: &str) -> Hosts {
        Hosts(vec![host.to_owned()])
    }
}

impl<'a, 'py> FromPyObject<'a, 'py> for Hosts {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Hosts> {
        if obj.is_instance_of::<PyString>() {
            return obj.extract().map(|host| Hosts(vec![host]));
        }
        obj.extract().map(Hosts)
    }
}

/// Text values given as one `str` or a sequence of them (the networks of `allow` and
/// `deny`, the rules of `access`); a bare `str` is one value, not a sequence of characters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Strings(pub(crate) Vec<String>);

impl<'a, 'py> FromPyObject<'a, 'py> for Strings {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Strings> {
        if obj.is_instance_of::<PyString>() {
            return obj.extract().map(|one| Strings(vec![one]));
        }
        obj.extract().map(Strings)
    }
}

/// `value` seconds as a duration for the keyword `option`, by core's rule.
pub(crate) fn duration(py: Python<'_>, option: &'static str, value: Seconds) -> PyResult<Duration> {
    config::seconds(option, value.0).map_err(|e| errors::to_py(py, e))
}

/// `value` as a count or size for the keyword `option`; its range is for the builder to check.
pub(crate) fn unsigned<T: TryFrom<i128>>(
    py: Python<'_>,
    option: &'static str,
    value: Int,
) -> PyResult<T> {
    value.to(option).map_err(|e| errors::to_py(py, e))
}

/// A port to connect to: 1 to 65535.
pub(crate) fn remote_port(py: Python<'_>, port: Int) -> PyResult<u16> {
    port_in(py, port, 1)
}

/// A port to listen on: 0 (any free port) to 65535.
pub(crate) fn local_port(py: Python<'_>, port: Int) -> PyResult<u16> {
    port_in(py, port, 0)
}

fn port_in(py: Python<'_>, port: Int, min: u16) -> PyResult<u16> {
    match port {
        Int::Value(v) => match u16::try_from(v) {
            Ok(p) if p >= min => Ok(p),
            _ => Err(errors::to_py(
                py,
                Error::InvalidOption {
                    option: "port",
                    problem: format!("must be from {min} to 65535, not {v}"),
                },
            )),
        },
        Int::Huge { .. } => Err(errors::to_py(
            py,
            Error::InvalidOption {
                option: "port",
                problem: format!("must be from {min} to 65535"),
            },
        )),
    }
}

/// A builder's result, its error reported with the Python keyword where core names the
/// setting otherwise (`idle_timeout` is `timeout`, the rate's window is `speed_time`).
pub(crate) fn built<T>(py: Python<'_>, result: filefetch::Result<T>) -> PyResult<T> {
    result.map_err(|e| {
        let e = match e {
            Error::InvalidOption { option, problem } => Error::InvalidOption {
                option: match option {
                    "idle_timeout" => "timeout",
                    "min_rate window" => "speed_time",
                    other => other,
                },
                problem,
            },
            other => other,
        };
        errors::to_py(py, e)
    })
}

/// The addresses `hosts` stand for, with `port`: IP literals, `""` (every IPv4 address, as in
/// Python's `socket.bind`) or names, resolved like Python would; duplicates once.
pub(crate) fn listen_addrs(py: Python<'_>, hosts: &Hosts, port: u16) -> PyResult<Vec<SocketAddr>> {
    if hosts.0.is_empty() {
        return Err(invalid_argument(
            py,
            "invalid host: no address to listen on".to_owned(),
        ));
    }
    let mut unique: Vec<SocketAddr> = Vec::new();
    for host in &hosts.0 {
        let host = match host.as_str() {
            "" => "0.0.0.0",
            h => filefetch::config::bare_host(h),
        };
        let resolved = py.detach(|| (host, port).to_socket_addrs().map(Vec::from_iter));
        match resolved {
            Ok(addrs) if !addrs.is_empty() => {
                for addr in addrs {
                    if !unique.contains(&addr) {
                        unique.push(addr);
                    }
                }
            }
            Ok(_) => {
                return Err(invalid_argument(
                    py,
                    format!("invalid host: {host:?} has no address to listen on"),
                ))
            }
            Err(e) => {
                return Err(invalid_argument(
                    py,
                    format!("invalid host: cannot resolve {host:?}: {e}"),
                ))
            }
        }
    }
    Ok(unique)
}
