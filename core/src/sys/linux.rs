//! Linux's fast paths: `openat2`, `sendfile`, `splice`, `MSG_MORE` and delayed
//! acknowledgements.

use std::fs::File;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;
use rustix::pipe::{PipeFlags, SpliceFlags};
use socket2::Socket;

use super::OpenError;
use super::RootDir;

/// Set once `openat2` turned out to be missing (old kernel, or a seccomp filter).
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// `openat2(2)` with `RESOLVE_BENEATH`: the kernel refuses, atomically, any resolution that
/// leaves the root. `None` when `openat2` is not available, so the caller falls back to the
/// walk.
///
/// The name is first resolved to an `O_PATH` descriptor, which opens nothing for reading:
/// a FIFO, a device or a socket is refused on its type alone, so a FIFO's blocked writer is
/// not released and no device's open routine runs. Only a regular file is then opened for
/// reading, through that very descriptor (`/proc/self/fd`), so nothing can be swapped in
/// between; without /proc, by name again, and refused unless it is the same file.
pub(crate) fn open_native(root: &RootDir, name: &str) -> Option<Result<File, OpenError>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    let path_flags = OFlags::PATH | OFlags::CLOEXEC;
    let located = match rustix::fs::openat2(&root.0, name, path_flags, Mode::empty(), resolve) {
        Ok(fd) => fd,
        Err(Errno::NOSYS) => return unavailable(),
        // EPERM means a seccomp filter only when a plain open of "/" is also refused.
        Err(Errno::PERM) if probe_denied() => return unavailable(),
        Err(Errno::XDEV) => return Some(Err(OpenError::Escapes)),
        Err(e) => return Some(Err(OpenError::Io(e.into()))),
    };
    Some(open_located(root, name, located, resolve))
}

fn open_located(
    root: &RootDir,
    name: &str,
    located: OwnedFd,
    resolve: ResolveFlags,
) -> Result<File, OpenError> {
    let found = rustix::fs::fstat(&located).map_err(io::Error::from)?;
    if rustix::fs::FileType::from_raw_mode(found.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(OpenError::NotRegular);
    }
    let read_flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let by_descriptor = format!("/proc/self/fd/{}", located.as_raw_fd());
    let file = match rustix::fs::open(by_descriptor.as_str(), read_flags, Mode::empty()) {
        Ok(fd) => fd,
        // No /proc here: by name, under the same rules.
        Err(Errno::NOENT | Errno::ACCESS | Errno::PERM) => {
            rustix::fs::openat2(&root.0, name, read_flags, Mode::empty(), resolve)
                .map_err(io::Error::from)?
        }
        Err(e) => return Err(OpenError::Io(e.into())),
    };
    let opened = rustix::fs::fstat(&file).map_err(io::Error::from)?;
    if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino) {
        // Replaced between the two opens (only possible without /proc): not this file.
        return Err(OpenError::NotRegular);
    }
    Ok(File::from(file))
}

fn unavailable() -> Option<Result<File, OpenError>> {
    NO_OPENAT2.store(true, Ordering::Relaxed);
    None
}

fn probe_denied() -> bool {
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::DIRECTORY;
    rustix::fs::openat2(
        rustix::fs::CWD,
        "/",
        flags,
        Mode::empty(),
        ResolveFlags::empty(),
    )
    .is_err()
}

/// `sendfile(2)` exists here.
pub(crate) const SENDFILE: bool = true;

/// Sends up to `count` bytes of `file` from `offset` without copying them through user space.
pub(crate) fn sendfile(
    socket: &Socket,
    file: &File,
    offset: u64,
    count: usize,
) -> io::Result<usize> {
    let mut offset = offset;
    Ok(rustix::fs::sendfile(
        socket,
        file,
        Some(&mut offset),
        count,
    )?)
}

/// `send(2)` with MSG_MORE: the bytes wait in the send queue for the close or shutdown that
/// must follow, and leave with the FIN in one segment (MSG_NOSIGNAL: EPIPE, not SIGPIPE).
pub(crate) fn send_held(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        socket,
        buf,
        SendFlags::MORE | SendFlags::NOSIGNAL,
    )?)
}

/// Accepted connections start with delayed acknowledgement, so the response itself
/// acknowledges the request: one segment fewer per connection than a bare ACK first. Linux
/// hands the mode on to accepted sockets; it must be set after listen(), which resets it.
pub(crate) fn start_with_delayed_acks(listener: &Socket) {
    let _ = listener.set_tcp_quickack(false);
}

/// Acknowledges what has arrived at once, and whatever follows as it comes.
pub(crate) fn ack_now(socket: &Socket) {
    let _ = socket.set_tcp_quickack(true);
}

/// Pipe capacity asked for: fewer, larger splices. The kernel may grant less.
const PIPE_SIZE: usize = 1024 * 1024;

/// A pipe for moving socket data into a file with `splice(2)`: the socket's pages go into
/// the pipe without a copy, and from the pipe into the file with the only copy the kernel
/// needs.
#[derive(Debug)]
pub(crate) struct Splicer {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Splicer {
    /// A new pipe; `None` if the system will not make one (the caller reads and writes).
    pub(crate) fn new() -> Option<Splicer> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ok()?;
        let _ = rustix::pipe::fcntl_setpipe_size(&write, PIPE_SIZE);
        let capacity = rustix::pipe::fcntl_getpipe_size(&write)
            .unwrap_or(0)
            .max(4096);
        Some(Splicer {
            read,
            write,
            capacity,
        })
    }

    /// Most bytes the pipe holds.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Moves up to `len` bytes from the socket into the (empty) pipe.
    pub(crate) fn fill_from(&self, socket: &TcpStream, len: usize) -> io::Result<usize> {
        splice(socket.as_fd(), self.write.as_fd(), len)
    }

    /// Moves up to `len` bytes from the pipe into the file, at its position.
    pub(crate) fn drain_to(&self, file: &File, len: usize) -> io::Result<usize> {
        splice(self.read.as_fd(), file.as_fd(), len)
    }

    /// Reads what the pipe holds into `buf` (for a file that cannot take spliced pages).
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(&self.read, buf)?)
    }

    /// Whether a failed splice means "not supported here" rather than a real failure.
    pub(crate) fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error().map(Errno::from_raw_os_error),
            Some(Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
        )
    }
}

fn splice(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    Ok(rustix::pipe::splice(
        from,
        None,
        to,
        None,
        len,
        SpliceFlags::MOVE,
    )?)
}
