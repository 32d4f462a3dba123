//! systemd's socket activation: the service manager opens the listening sockets (a `.socket`
//! unit with `ListenStream=` and `Accept=no`) and starts the server with them as descriptors
//! 3 onwards, saying so in `LISTEN_FDS` (how many) and `LISTEN_PID` (for which process).
//! [`systemd_listeners`] takes them, for [`Server::from_listeners`](super::Server::from_listeners).

use std::ffi::OsStr;
use std::net::TcpListener;

use crate::error::{Error, Result};
use crate::sys;

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// The listening sockets systemd passed to this process, as `sd_listen_fds` finds them:
/// `None` when there are none for it (no `LISTEN_FDS`, no `LISTEN_PID`, a `LISTEN_PID` of
/// another process, or `LISTEN_FDS=0`), else descriptors 3 to 3 + `LISTEN_FDS` - 1, each
/// made close-on-exec and checked to be a listening TCP socket, IPv4 or IPv6.
///
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the environment in every
/// case, so that a child process does not take the sockets for its own. Changing the
/// environment is not safe while other threads may read it: call this at the start of
/// `main`, before starting threads. The sockets can be taken once; a second call finds no
/// variables and returns `None`.
///
/// A malformed variable, a descriptor that is not open, or one that is not a listening TCP
/// socket (a socket unit with `Accept=yes`, or `ListenDatagram=`) is
/// [`Error::InvalidOption`] for `LISTEN_FDS` (or `LISTEN_PID`).
pub fn systemd_listeners() -> Result<Option<Vec<TcpListener>>> {
    let pid = std::env::var_os("LISTEN_PID");
    let fds = std::env::var_os("LISTEN_FDS");
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(name);
    }
    let Some(count) = addressed(pid.as_deref(), fds.as_deref(), std::process::id())? else {
        return Ok(None);
    };
    let last = i32::try_from(count)
        .ok()
        .and_then(|n| FIRST_FD.checked_add(n))
        .ok_or_else(|| Error::invalid("LISTEN_FDS", format!("{count} descriptors is too many")))?;
    sys::take_inherited_listeners(FIRST_FD..last)
        .map(Some)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::Other => {
                Error::invalid("LISTEN_FDS", e.to_string())
            }
            _ => Error::Io {
                path: None,
                source: e,
            },
        })
}

/// How many descriptors the variables pass to the process `ours`: `None` when they pass
/// none to it.
fn addressed(pid: Option<&OsStr>, fds: Option<&OsStr>, ours: u32) -> Result<Option<usize>> {
    let (Some(pid), Some(fds)) = (pid, fds) else {
        return Ok(None);
    };
    let number = |name: &'static str, value: &OsStr| {
        value
            .to_str()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| Error::invalid(name, format!("{value:?} is not a number")))
    };
    if number("LISTEN_PID", pid)? != u64::from(ours) {
        return Ok(None);
    }
    match number("LISTEN_FDS", fds)? {
        0 => Ok(None),
        n => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressed_to(pid: Option<&str>, fds: Option<&str>) -> Result<Option<usize>> {
        addressed(pid.map(OsStr::new), fds.map(OsStr::new), 4242)
    }

    #[test]
    fn only_sockets_for_this_process_are_taken() {
        assert_eq!(addressed_to(Some("4242"), Some("2")).unwrap(), Some(2));
        // Not for us: another process's, or no pid at all (as sd_listen_fds).
        assert_eq!(addressed_to(Some("1"), Some("2")).unwrap(), None);
        assert_eq!(addressed_to(None, Some("2")).unwrap(), None);
        assert_eq!(addressed_to(Some("4242"), None).unwrap(), None);
        assert_eq!(addressed_to(Some("4242"), Some("0")).unwrap(), None);
        for (pid, fds, option) in [
            ("x", "1", "LISTEN_PID"),
            ("-4242", "1", "LISTEN_PID"),
            ("4242", "", "LISTEN_FDS"),
            ("4242", "+1", "LISTEN_FDS"),
            ("4242", "one", "LISTEN_FDS"),
            ("4242", "99999999999999999999999", "LISTEN_FDS"),
        ] {
            let e = addressed_to(Some(pid), Some(fds)).unwrap_err();
            assert!(
                matches!(e, Error::InvalidOption { option: o, .. } if o == option),
                "{pid} {fds}: {e}"
            );
        }
    }
}
