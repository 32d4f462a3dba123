//! What every Unix system has: directory descriptors and `openat`, link counts, `poll`,
//! signal masks.

use std::fs::{File, Permissions};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::OpenError;
use super::{Accepted, FileState};

/// The root directory, held open: every name is resolved from this descriptor, so the
/// directory keeps being served even if it is moved.
#[derive(Debug)]
pub(crate) struct RootDir(pub(super) OwnedFd);

impl RootDir {
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir(fd))
    }
}

/// Links followed in one lookup before giving up, as the kernel does (ELOOP).
const MAX_LINKS: usize = 40;

/// The portable resolver: one `openat(O_NOFOLLOW)` per component from the root's
/// descriptor, with symbolic links read and resolved by hand. A `..` that would climb above
/// the root, or an absolute link, is refused; a component swapped for a link between two
/// calls is seen as a link (`O_NOFOLLOW`), never followed blindly.
pub(crate) fn open_walk(root: &RootDir, name: &str) -> Result<File, OpenError> {
    // Components still to resolve, last one on top.
    let mut pending: Vec<Vec<u8>> = name
        .split('/')
        .rev()
        .map(|c| c.as_bytes().to_vec())
        .collect();
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        match component.as_slice() {
            b"" | b"." => {
                if pending.is_empty() {
                    return Err(OpenError::NotRegular);
                }
                continue;
            }
            b".." => {
                if dirs.pop().is_none() {
                    return Err(OpenError::Escapes);
                }
                if pending.is_empty() {
                    return Err(OpenError::NotRegular);
                }
                continue;
            }
            _ => {}
        }
        let parent = dirs.last().unwrap_or(&root.0);
        let name = component.as_slice();
        let failed = if pending.is_empty() {
            // The last component: its type first, without opening it, so that a FIFO's
            // blocked writer is not released nor a device's open routine run.
            match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => Errno::LOOP,
                Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile => {
                    return Err(OpenError::NotRegular)
                }
                Ok(st) => return open_regular(parent, name, stat_id(&st)),
                Err(e) => e,
            }
        } else {
            let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC;
            match rustix::fs::openat(parent, name, flags, Mode::empty()) {
                Ok(dir) => {
                    dirs.push(dir);
                    continue;
                }
                Err(e) => e,
            }
        };
        // Any failure may be a symbolic link (ELOOP on Linux, EMLINK on FreeBSD, ENOTDIR for
        // a link where a directory was wanted): ask.
        let target = match rustix::fs::readlinkat(parent, name, Vec::new()) {
            Ok(target) => target.into_bytes(),
            Err(_) => return Err(OpenError::Io(failed.into())),
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(OpenError::Io(Errno::LOOP.into()));
        }
        if target.first() == Some(&b'/') {
            return Err(OpenError::Escapes);
        }
        if target.is_empty() {
            return Err(OpenError::Io(Errno::NOENT.into()));
        }
        pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
    }
    Err(OpenError::NotRegular)
}

/// Opens the regular file `name` in `dir` for reading, if it is still the file `id` names
/// (the one whose type was checked): one swapped in meanwhile is refused. (A FIFO swapped in
/// during that instant would be opened, without blocking, before being refused.)
fn open_regular(dir: &OwnedFd, name: &[u8], id: (u64, u64)) -> Result<File, OpenError> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = rustix::fs::openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)?;
    let st = rustix::fs::fstat(&file).map_err(io::Error::from)?;
    if stat_id(&st) != id {
        return Err(OpenError::NotRegular);
    }
    Ok(File::from(file))
}

/// A file's identity: device and inode, whose types differ between systems.
#[allow(clippy::unnecessary_cast)]
fn stat_id(stat: &rustix::fs::Stat) -> (u64, u64) {
    (stat.st_dev as u64, stat.st_ino as u64)
}

pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.read_at(buf, offset)
}

pub(crate) fn file_state(file: &File) -> io::Result<FileState> {
    Ok(state_of(&rustix::fs::fstat(file)?))
}

/// The state of the file that `name` leads to from the root now (links followed), for
/// telling whether a name still leads to the file opened for it before. Only compared with
/// a file opened beneath the root, never used to open anything.
pub(crate) fn name_state(root: &RootDir, name: &str) -> io::Result<FileState> {
    Ok(state_of(&rustix::fs::statat(
        &root.0,
        name,
        rustix::fs::AtFlags::empty(),
    )?))
}

/// A file's state from its `stat`, whose field types differ between systems (hence casts
/// that are no-ops on some of them).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
pub(super) fn state_of(stat: &rustix::fs::Stat) -> FileState {
    let time = |secs: i64, nanos: i64| {
        let nanos = u32::try_from(nanos).ok()?;
        let since = Duration::new(secs.unsigned_abs(), nanos);
        if secs >= 0 {
            SystemTime::UNIX_EPOCH.checked_add(since)
        } else {
            SystemTime::UNIX_EPOCH.checked_sub(since)
        }
    };
    FileState {
        id: stat_id(stat),
        len: u64::try_from(stat.st_size as i64).unwrap_or(0),
        modified: time(stat.st_mtime as i64, stat.st_mtime_nsec as i64),
        changed: time(stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        linked: stat.st_nlink as u64 > 0,
        regular: FileType::from_raw_mode(stat.st_mode as _) == FileType::RegularFile,
    }
}

/// How many descriptors the process may have open (its soft RLIMIT_NOFILE); `None` for no
/// limit.
pub(crate) fn descriptor_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Whether an error says that the process (EMFILE) or the system (ENFILE) has no descriptor
/// left.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::MFILE | Errno::NFILE)
    )
}

/// The permissions a downloaded file is created with: like any new file, 0666 less the
/// umask (applied by open(2)).
pub(crate) fn new_file_permissions() -> Option<Permissions> {
    Some(Permissions::from_mode(0o666))
}

/// Like the original server: a restart can reuse the port at once.
pub(crate) fn set_reuse_address(socket: &Socket) -> io::Result<()> {
    socket.set_reuse_address(true)
}

/// Whether a non-blocking `connect` failed only because it is under way (EINPROGRESS).
pub(crate) fn connect_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::INPROGRESS.raw_os_error())
}

/// Waits at most `timeout` for the socket to become writable (a connection attempt to
/// finish); `Ok(false)` when the time ran out first.
pub(crate) fn wait_writable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    let mut fds = [rustix::event::PollFd::new(
        socket,
        rustix::event::PollFlags::OUT,
    )];
    let timeout = rustix::event::Timespec {
        tv_sec: timeout.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: timeout.subsec_nanos().into(),
    };
    match rustix::event::poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// `sendfile` raises SIGPIPE on a closed connection, and a library cannot assume its host
/// process ignores it. Blocked on the server's own threads, it turns into EPIPE instead.
pub(crate) fn block_sigpipe() {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `set` is initialised by sigemptyset before use; pthread_sigmask only changes
    // the calling thread's mask.
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        libc::sigaddset(set.as_mut_ptr(), libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
    }
}

/// A listening socket shared by the accept loops of every worker thread. Accepted sockets
/// come out non-blocking and unknown to the event loop: a connection registers only if it
/// has to wait.
#[derive(Debug)]
pub(crate) struct Listener(AsyncFd<std::net::TcpListener>);

impl Listener {
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        // SAFETY: a std TcpListener owns its descriptor, which stays open and the same for as
        // long as the AsyncFd owns the listener.
        unsafe { AsyncFd::register_with_interest(listener, Interest::READABLE) }
            .map(Listener)
            .map_err(io::Error::from)
    }

    /// Accepts one connection, waiting for one if none is there.
    pub(crate) async fn accept(&self) -> io::Result<(Accepted, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|l| accept_nonblocking(l.get_ref())) {
                // A connection reset while it waited in the backlog: take the next one.
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::Interrupted
                    ) => {}
                Ok(result) => return result,
                Err(_would_block) => {}
            }
        }
    }
}

/// Waits in `accept` itself for a connection on a listening socket in blocking mode; the
/// socket accepted is non-blocking all the same.
#[cfg(target_os = "linux")]
pub(crate) fn accept_waiting(
    listener: &std::net::TcpListener,
) -> io::Result<(Accepted, SocketAddr)> {
    accept_nonblocking(listener)
}

/// `accept4` hands the socket over non-blocking and close-on-exec in one call.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn accept_nonblocking(listener: &std::net::TcpListener) -> io::Result<(Accepted, SocketAddr)> {
    let (socket, addr) =
        socket2::SockRef::from(listener).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    // Linux hands TCP_NODELAY on from the listening socket; elsewhere, set it again.
    #[cfg(not(target_os = "linux"))]
    let _ = socket.set_tcp_nodelay(true);
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("peer address is not an IP address"))?;
    Ok((Accepted(socket.into()), peer))
}

/// Set once the inherited listening sockets were taken: a descriptor has one owner.
static INHERITED_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes over the listening sockets a service manager passed to this process as the
/// descriptors `fds` (systemd's socket activation: 3 onwards, `LISTEN_FDS` of them): each is
/// made close-on-exec and must be a listening TCP socket, IPv4 or IPv6.
///
/// The caller has read `fds` from the variables addressed to this process (`LISTEN_PID` is
/// its own) and removed them; this runs once per process (later calls fail), so no
/// descriptor gets two owners.
pub(crate) fn take_inherited_listeners(
    fds: Range<RawFd>,
) -> io::Result<Vec<std::net::TcpListener>> {
    if INHERITED_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other("the inherited sockets were already taken"));
    }
    // Check them all before owning any: a descriptor that is not open is never adopted.
    for fd in fds.clone() {
        // SAFETY: F_GETFD reads the descriptor's flags and nothing else; on a descriptor
        // that is not open it fails with EBADF.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(io::Error::other(format!("descriptor {fd} is not open")));
        }
    }
    let mut listeners = Vec::with_capacity(fds.len());
    for fd in fds {
        // SAFETY: the descriptor is open (checked above) and was handed to this process to
        // own: the service manager addressed it to our pid, the caller removed the
        // variables that named it, and the flag above lets this run once, so nothing else
        // in the process owns it.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
        let socket = Socket::from(owned);
        check_listening(&socket).map_err(|why| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("descriptor {fd} {why}"),
            )
        })?;
        listeners.push(socket.into());
    }
    Ok(listeners)
}

/// Whether `socket` is a listening TCP socket; if not, what it is instead.
fn check_listening(socket: &Socket) -> Result<(), &'static str> {
    let not_tcp = "is not a TCP socket (the socket unit needs ListenStream=)";
    if socket.r#type().map_err(|_| "is not a socket")? != socket2::Type::STREAM {
        return Err(not_tcp);
    }
    match socket
        .local_addr()
        .map_err(|_| "is not a socket")?
        .as_socket()
    {
        Some(addr) if addr.port() != 0 => {}
        Some(_) => return Err("is a socket that is not bound to a port"),
        None => return Err(not_tcp),
    }
    // SO_ACCEPTCONN, where the system implements it (not macOS); there, a listening socket
    // is one with no peer.
    #[cfg(not(any(target_os = "macos", target_os = "ios")))]
    let listening = rustix::net::sockopt::socket_acceptconn(socket).unwrap_or(false);
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let listening = socket.peer_addr().is_err();
    if !listening {
        return Err("is a connection, not a listening socket (the socket unit needs Accept=no)");
    }
    Ok(())
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn accept_nonblocking(listener: &std::net::TcpListener) -> io::Result<(Accepted, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nonblocking(true)?;
    let _ = stream.set_nodelay(true);
    Ok((Accepted(stream), peer))
}
