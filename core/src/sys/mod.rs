//! Every call into the operating system that std does not make the same way on every system,
//! and every `unsafe` block of the crate, behind one interface.
//!
//! The rest of the crate is plain safe Rust that reads the same everywhere; it asks this
//! module for what differs:
//!
//! | what | Linux | macOS, FreeBSD | other Unix | Windows |
//! |---|---|---|---|---|
//! | opening a name beneath the root | `openat2(RESOLVE_BENEATH)`, else the walk | `openat(O_NOFOLLOW)` walk | walk | open, then the handle's final path checked |
//! | sending a large file | `sendfile(2)` | `sendfile(2)` | buffered | buffered |
//! | holding the last write for the FIN | `MSG_MORE` | - | - | - |
//! | receiving into a file | `splice(2)` through a pipe | buffered | buffered | buffered |
//! | accepting | `accept4(SOCK_NONBLOCK)` | `accept`, then non-blocking | same | tokio's listener, then non-blocking |
//! | a cached file still linked | link count | link count | link count | link count and delete-pending |
//! | a cached name still leading to its file | inotify notices, else a `stat` per request | `stat` per request | same | no file kept open |
//! | taking listening sockets passed by systemd | descriptors 3 on, `SO_ACCEPTCONN` | same (macOS: no peer) | same | not supported |
//!
//! Each fast path has a portable fallback that is compiled on every system and used where
//! the fast one is missing, refused by the kernel, or turned off (`portable`).

use std::time::SystemTime;

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
mod bsd;
#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
mod notify;
mod portable;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;

#[cfg(unix)]
pub(crate) use unix::{
    block_sigpipe, connect_in_progress, descriptor_limit, file_state, name_state,
    new_file_permissions, open_walk, out_of_descriptors, read_at, set_reuse_address,
    take_inherited_listeners, wait_writable, Listener, RootDir,
};
#[cfg(windows)]
pub(crate) use windows::{
    block_sigpipe, connect_in_progress, descriptor_limit, file_state, name_state,
    new_file_permissions, open_walk, out_of_descriptors, read_at, set_reuse_address, wait_writable,
    Listener, RootDir,
};

#[cfg(target_os = "linux")]
pub(crate) use linux::{ack_now, open_native, send_held, start_with_delayed_acks, Splicer};
#[cfg(all(unix, not(target_os = "linux")))]
pub(crate) use portable::open_native;
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{ack_now, send_held, start_with_delayed_acks, Splicer};
#[cfg(target_os = "linux")]
pub(crate) use unix::accept_waiting;
#[cfg(windows)]
pub(crate) use windows::open_native;

#[cfg(target_os = "linux")]
pub(crate) use notify::{Notice, Notifier, Placed};
#[cfg(not(target_os = "linux"))]
pub(crate) use portable::{Notice, Notifier, Placed};

#[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
pub(crate) use bsd::{sendfile, SENDFILE};
#[cfg(target_os = "linux")]
pub(crate) use linux::{sendfile, SENDFILE};
#[cfg(not(any(
    target_os = "linux",
    target_os = "macos",
    target_os = "ios",
    target_os = "freebsd"
)))]
pub(crate) use portable::{sendfile, SENDFILE};

/// Whether a file held open can still be replaced by a rename over its name (and so whether
/// the open-file cache may keep files open between requests). Not on Windows: unless the
/// renaming program asks for POSIX semantics and the file system has them, a rename over a
/// file that any handle holds open fails with "Access denied", whatever the sharing mode,
/// and the owner of the file must come first.
pub(crate) const CAN_REPLACE_OPEN_FILES: bool = cfg!(not(windows));

/// An accepted connection: a plain non-blocking socket the event loop does not know yet (a
/// connection registers only if it has to wait).
#[derive(Debug)]
pub(crate) struct Accepted(pub(crate) std::net::TcpStream);

/// What the cache needs to know of an open file: whether it is still the file its name
/// leads to, and whether its content may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileState {
    /// Which file this is: device (volume) and inode (file index).
    pub(crate) id: (u64, u64),
    /// Size in bytes.
    pub(crate) len: u64,
    /// Last modification of the content.
    pub(crate) modified: Option<SystemTime>,
    /// Last change of the content or of the metadata (ctime).
    pub(crate) changed: Option<SystemTime>,
    /// Still linked into the file system under some name (not deleted, not pending deletion).
    pub(crate) linked: bool,
    /// A regular file.
    pub(crate) regular: bool,
}

/// Why a checked name could not be opened for serving.
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// Resolving the name would leave the root (through `..` in a link, or an absolute link).
    Escapes,
    /// The name resolves to something other than a regular file.
    NotRegular,
    /// The file system said no (missing, no permission, too many links...).
    Io(std::io::Error),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Escapes => f.write_str("resolves outside the root"),
            OpenError::NotRegular => f.write_str("not a regular file"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> Self {
        OpenError::Io(e)
    }
}
