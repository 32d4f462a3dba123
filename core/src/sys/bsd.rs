//! `sendfile(2)` on macOS and FreeBSD: the file's pages go to the socket without a copy
//! through user space. Their signatures differ from Linux's and from each other's.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use socket2::Socket;

/// `sendfile(2)` exists here.
pub(crate) const SENDFILE: bool = true;

/// Sends up to `count` bytes of `file` from `offset`. On a non-blocking socket the call
/// can fail with EAGAIN after sending part: that part is reported as sent.
pub(crate) fn sendfile(
    socket: &Socket,
    file: &File,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let (result, sent) = call(file.as_raw_fd(), socket.as_raw_fd(), offset, count);
    match result {
        Ok(()) => Ok(sent),
        Err(e)
            if sent > 0
                && matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
        {
            Ok(sent)
        }
        Err(e) => Err(e),
    }
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn call(
    file: libc::c_int,
    socket: libc::c_int,
    offset: libc::off_t,
    count: usize,
) -> (io::Result<()>, usize) {
    let mut len = libc::off_t::try_from(count).unwrap_or(libc::off_t::MAX);
    // SAFETY: both descriptors are open for the call (borrowed from live owners); `len` is a
    // valid off_t the kernel overwrites with the bytes sent; no header/trailer vector.
    let r = unsafe { libc::sendfile(file, socket, offset, &mut len, std::ptr::null_mut(), 0) };
    let sent = usize::try_from(len).unwrap_or(0);
    (
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        },
        sent,
    )
}

#[cfg(target_os = "freebsd")]
fn call(
    file: libc::c_int,
    socket: libc::c_int,
    offset: libc::off_t,
    count: usize,
) -> (io::Result<()>, usize) {
    let mut sent: libc::off_t = 0;
    // SAFETY: both descriptors are open for the call (borrowed from live owners); `sent` is a
    // valid off_t the kernel writes the bytes sent into; no header/trailer vector.
    let r = unsafe {
        libc::sendfile(
            file,
            socket,
            offset,
            count,
            std::ptr::null_mut(),
            &mut sent,
            0,
        )
    };
    let sent = usize::try_from(sent).unwrap_or(0);
    (
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        },
        sent,
    )
}
