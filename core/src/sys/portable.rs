//! The fallbacks: what a system without a given fast path does instead. Each is the plain,
//! portable way, compiled wherever it is used.

#![allow(dead_code)] // Each system takes only the fallbacks it needs.

use std::fs::File;
use std::io::{self, Write};
use std::net::TcpStream;

use socket2::Socket;

use super::OpenError;
use super::RootDir;

/// No resolver faster than the walk: `None` sends the caller to it.
pub(crate) fn open_native(_root: &RootDir, _name: &str) -> Option<Result<File, OpenError>> {
    None
}

/// No `sendfile`: large files go out from a buffer.
pub(crate) const SENDFILE: bool = false;

/// Never called where [`SENDFILE`] is false; says so if it is.
pub(crate) fn sendfile(
    _socket: &Socket,
    _file: &File,
    _offset: u64,
    _count: usize,
) -> io::Result<usize> {
    Err(io::ErrorKind::Unsupported.into())
}

/// A plain send: nothing holds the last bytes for the FIN.
pub(crate) fn send_held(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
    let mut socket = socket;
    socket.write(buf)
}

/// Accepted connections keep the system's acknowledgement behaviour.
pub(crate) fn start_with_delayed_acks(_listener: &Socket) {}

/// Acknowledgements were never delayed on purpose: nothing to do.
pub(crate) fn ack_now(_socket: &Socket) {}

/// No `splice`: there is no value of this type, so the receive path always reads and
/// writes through a buffer.
#[derive(Debug)]
pub(crate) enum Splicer {}

impl Splicer {
    pub(crate) fn new() -> Option<Splicer> {
        None
    }

    pub(crate) fn capacity(&self) -> usize {
        match *self {}
    }

    pub(crate) fn fill_from(&self, _socket: &TcpStream, _len: usize) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn drain_to(&self, _file: &File, _len: usize) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn read(&self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }

    pub(crate) fn unsupported(_e: &io::Error) -> bool {
        false
    }
}

/// No change notices on this system: the open-file cache looks each name up again at every
/// request instead (see `server::cache`). A type without values, so that the cache's code
/// is the same everywhere.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) enum Notifier {}

/// See [`Notifier`]: the watches of a name, of which there are none here.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) file: i32,
    pub(crate) dirs: Vec<(i32, Box<str>)>,
}

/// See the Linux `Notifier`'s notices.
#[cfg(not(target_os = "linux"))]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    Changed { wd: i32, name: Option<Box<str>> },
    Gone(i32),
    Lost,
}

#[cfg(not(target_os = "linux"))]
impl Notifier {
    pub(crate) fn new() -> Option<Notifier> {
        None
    }

    pub(crate) fn place(
        &self,
        _root: &RootDir,
        _name: &str,
        _file: &File,
        _file_id: (u64, u64),
    ) -> Result<(Placed, super::FileState), Vec<i32>> {
        match *self {}
    }

    pub(crate) fn unwatch(&self, _wd: i32) {
        match *self {}
    }

    pub(crate) fn pending(&self) -> bool {
        match *self {}
    }

    pub(crate) fn take(&self, _each: impl FnMut(Notice)) {
        match *self {}
    }
}
