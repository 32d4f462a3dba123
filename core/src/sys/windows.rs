//! Windows: names opened by path and checked on the handle, file sharing that lets owners
//! replace and delete served files, link counts and pending deletes, `WSAPoll`.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::windows::ffi::OsStringExt;
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::{AsRawHandle, AsRawSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use socket2::Socket;
use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, ERROR_TOO_MANY_OPEN_FILES};
use windows_sys::Win32::Networking::WinSock::{WSAPoll, POLLWRNORM, WSAPOLLFD};
use windows_sys::Win32::Storage::FileSystem::{
    FileBasicInfo, FileNameInfo, FileStandardInfo, GetFileInformationByHandle,
    GetFileInformationByHandleEx, GetFinalPathNameByHandleW, BY_HANDLE_FILE_INFORMATION,
    FILE_BASIC_INFO, FILE_FLAG_BACKUP_SEMANTICS, FILE_FLAG_OPEN_REPARSE_POINT,
    FILE_NAME_NORMALIZED, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE, FILE_STANDARD_INFO,
    VOLUME_NAME_DOS, VOLUME_NAME_NONE,
};

use super::OpenError;
use super::{Accepted, FileState};

/// Served files (and the root) are opened so that their owners can still replace, rename and
/// delete them while the server holds them open.
const SHARE_ALL: u32 = FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE;

/// The root directory, held open: every request finds where it is now from this handle, so
/// the directory keeps being served even if it is moved.
#[derive(Debug)]
pub(crate) struct RootDir(File);

impl RootDir {
    pub(crate) fn open(path: &Path) -> io::Result<RootDir> {
        let dir = OpenOptions::new()
            .read(true)
            .share_mode(SHARE_ALL)
            // Needed to open a directory at all.
            .custom_flags(FILE_FLAG_BACKUP_SEMANTICS)
            .open(path)?;
        if !dir.metadata()?.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "the root is not a directory",
            ));
        }
        Ok(RootDir(dir))
    }
}

/// Opens `name` (checked as text by `check_name`, Windows rules included) beneath the root.
///
/// Windows has no `openat` that stays beneath a directory, so the file is opened by path and
/// the opened handle is then asked where it really is (`GetFinalPathNameByHandleW`): it must
/// be the root's path, as the root's own handle gives it now, followed by exactly the
/// requested name. That check is made on the handle, after opening, so no race between
/// checking and opening can fool it, and it refuses whatever leads elsewhere: a symbolic link
/// or junction (inside the root or out of it), an 8.3 short name standing for a long one, or
/// anything else the system's path rules would map onto another file. The last component is
/// opened without following a reparse point, so a link there is seen as a link and refused.
pub(crate) fn open_native(root: &RootDir, name: &str) -> Option<Result<File, OpenError>> {
    Some(open_checked(root, name))
}

/// The same as [`open_native`]: Windows has one resolver.
pub(crate) fn open_walk(root: &RootDir, name: &str) -> Result<File, OpenError> {
    open_checked(root, name)
}

fn open_checked(root: &RootDir, name: &str) -> Result<File, OpenError> {
    let base = final_path(&root.0, VOLUME_NAME_DOS)?;
    let path = base.join(name.split('/').collect::<PathBuf>());
    let file = match OpenOptions::new()
        .read(true)
        .share_mode(SHARE_ALL)
        .custom_flags(FILE_FLAG_OPEN_REPARSE_POINT)
        .open(&path)
    {
        Ok(file) => file,
        // A directory cannot be opened as a file: say so rather than "access denied".
        Err(_) if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) => {
            return Err(OpenError::NotRegular);
        }
        Err(e) => return Err(e.into()),
    };
    let meta = file.metadata()?;
    if meta.file_type().is_symlink() || meta.is_dir() {
        return Err(OpenError::NotRegular);
    }
    // Compared within the volume (paths from its root), on the same volume.
    let (root_at, file_at) = (located(&root.0)?, located(&file)?);
    if root_at.volume != file_at.volume || !same_relative(&root_at.path, &file_at.path, name) {
        return Err(OpenError::Escapes);
    }
    Ok(file)
}

/// Where a handle's file is: its volume, and its path from the volume's root (`\dir\f.txt`).
struct Located {
    volume: u32,
    path: PathBuf,
}

fn located(file: &File) -> io::Result<Located> {
    let path = match final_path(file, VOLUME_NAME_NONE) {
        // Wine's GetFinalPathNameByHandleW fails so for any path longer than MAX_PATH,
        // whatever the buffer; the file name information is the same path there.
        Err(e) if e.raw_os_error() == Some(ERROR_MORE_DATA as i32) => volume_path(file)?,
        other => other?,
    };
    let mut info = MaybeUninit::<BY_HANDLE_FILE_INFORMATION>::zeroed();
    // SAFETY: the handle is open for the call; `info` is writable for the structure.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), info.as_mut_ptr()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded and filled the structure (zeroed is a valid value anyway).
    let volume = unsafe { info.assume_init() }.dwVolumeSerialNumber;
    Ok(Located { volume, path })
}

/// The file's path from its volume's root, from the file name information.
fn volume_path(file: &File) -> io::Result<PathBuf> {
    // FILE_NAME_INFO: a u32 length in bytes, then that many bytes of UTF-16.
    let mut buf = vec![0u32; 16 * 1024];
    let size = u32::try_from(buf.len() * 4).unwrap_or(u32::MAX);
    // SAFETY: the handle is open for the call; `buf` is writable for `size` bytes and
    // aligned for FILE_NAME_INFO.
    let ok = unsafe {
        GetFileInformationByHandleEx(
            file.as_raw_handle(),
            FileNameInfo,
            buf.as_mut_ptr().cast(),
            size,
        )
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    let bytes = usize::try_from(buf[0]).unwrap_or(usize::MAX);
    let words: Vec<u16> = buf[1..]
        .iter()
        .flat_map(|w| {
            let b = w.to_ne_bytes();
            [
                u16::from_ne_bytes([b[0], b[1]]),
                u16::from_ne_bytes([b[2], b[3]]),
            ]
        })
        .take(bytes / 2)
        .collect();
    if words.len() * 2 != bytes {
        return Err(io::Error::other("file name information cut short"));
    }
    Ok(PathBuf::from(OsString::from_wide(&words)))
}

/// Whether `opened` is `base`, a separator, and `name` (its `/` as `\`), compared without
/// regard to case as the file system does.
fn same_relative(base: &Path, opened: &Path, name: &str) -> bool {
    let (base, opened) = (base.to_string_lossy(), opened.to_string_lossy());
    let base = base.trim_end_matches('\\');
    let Some(rest) = opened
        .get(..base.len())
        .filter(|head| head.to_lowercase() == base.to_lowercase())
        .and_then(|_| opened.get(base.len()..))
        .and_then(|rest| rest.strip_prefix('\\'))
    else {
        return false;
    };
    rest.to_lowercase() == name.replace('/', "\\").to_lowercase()
}

/// Where the handle's file is now (`\\?\C:\...` with `VOLUME_NAME_DOS`, `\...` with
/// `VOLUME_NAME_NONE`), links and short names resolved.
fn final_path(file: &File, volume: u32) -> io::Result<PathBuf> {
    let mut buf = vec![0u16; 512];
    loop {
        let capacity = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        // SAFETY: the handle is open for the call; `buf` is writable for `capacity` u16s.
        let n = unsafe {
            GetFinalPathNameByHandleW(
                file.as_raw_handle(),
                buf.as_mut_ptr(),
                capacity,
                FILE_NAME_NORMALIZED | volume,
            )
        };
        let n = n as usize;
        if n == 0 {
            return Err(io::Error::last_os_error());
        }
        if n < buf.len() {
            buf.truncate(n);
            return Ok(PathBuf::from(OsString::from_wide(&buf)));
        }
        // Too small: `n` is the size needed, terminating NUL included.
        buf.resize(n, 0);
    }
}

pub(crate) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek_read(buf, offset)
}

pub(crate) fn file_state(file: &File) -> io::Result<FileState> {
    let standard: FILE_STANDARD_INFO = file_info(file, FileStandardInfo)?;
    let basic: FILE_BASIC_INFO = file_info(file, FileBasicInfo)?;
    let meta = file.metadata()?;
    let mut info = MaybeUninit::<BY_HANDLE_FILE_INFORMATION>::zeroed();
    // SAFETY: the handle is open for the call; `info` is writable for the structure.
    if unsafe { GetFileInformationByHandle(file.as_raw_handle(), info.as_mut_ptr()) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded and filled the structure (zeroed is a valid value anyway).
    let info = unsafe { info.assume_init() };
    Ok(FileState {
        id: (
            u64::from(info.dwVolumeSerialNumber),
            u64::from(info.nFileIndexHigh) << 32 | u64::from(info.nFileIndexLow),
        ),
        len: u64::try_from(standard.EndOfFile).unwrap_or(0),
        modified: system_time(basic.LastWriteTime),
        changed: system_time(basic.ChangeTime),
        linked: standard.NumberOfLinks > 0 && !standard.DeletePending,
        regular: !standard.Directory && meta.is_file(),
    })
}

/// `GetFileInformationByHandleEx` for an information class whose structure is `T`.
fn file_info<T: Copy>(file: &File, class: i32) -> io::Result<T> {
    let mut info = MaybeUninit::<T>::zeroed();
    let size = u32::try_from(size_of::<T>()).unwrap_or(u32::MAX);
    // SAFETY: the handle is open for the call, and `info` is writable for the size of the
    // structure the class names (the caller pairs each class with its structure).
    let ok = unsafe {
        GetFileInformationByHandleEx(file.as_raw_handle(), class, info.as_mut_ptr().cast(), size)
    };
    if ok == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the call succeeded, so it filled the structure; and zeroed bytes are a valid
    // value of these plain-data structures anyway.
    Ok(unsafe { info.assume_init() })
}

/// A FILETIME (100 ns since 1601) as a SystemTime; 0 means "not known".
fn system_time(t: i64) -> Option<SystemTime> {
    const UNIX_EPOCH_AS_FILETIME: i64 = 116_444_736_000_000_000;
    if t == 0 {
        return None;
    }
    let since_unix = t.checked_sub(UNIX_EPOCH_AS_FILETIME)?;
    let d = Duration::from_nanos(since_unix.unsigned_abs().checked_mul(100)?);
    if since_unix >= 0 {
        SystemTime::UNIX_EPOCH.checked_add(d)
    } else {
        SystemTime::UNIX_EPOCH.checked_sub(d)
    }
}

/// What `name` leads to now, for the open-file cache, which keeps nothing open on Windows
/// (see `CAN_REPLACE_OPEN_FILES`): never asked.
pub(crate) fn name_state(_root: &RootDir, _name: &str) -> io::Result<FileState> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Windows has no small per-process limit on open handles.
pub(crate) fn descriptor_limit() -> Option<u64> {
    None
}

/// Whether an error says that no more files can be opened.
pub(crate) fn out_of_descriptors(e: &io::Error) -> bool {
    e.raw_os_error() == Some(ERROR_TOO_MANY_OPEN_FILES as i32)
}

/// New files get Windows' defaults; there is no mode to set.
pub(crate) fn new_file_permissions() -> Option<Permissions> {
    None
}

/// Left off on Windows: there SO_REUSEADDR would let a second server bind the same port
/// and take its connections.
pub(crate) fn set_reuse_address(_socket: &Socket) -> io::Result<()> {
    Ok(())
}

/// Whether a non-blocking `connect` failed only because it is under way (WSAEWOULDBLOCK).
pub(crate) fn connect_in_progress(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Waits at most `timeout` for the socket to become writable (a connection attempt to
/// finish); `Ok(false)` when the time ran out first.
pub(crate) fn wait_writable(socket: &Socket, timeout: Duration) -> io::Result<bool> {
    let mut fd = WSAPOLLFD {
        fd: socket.as_raw_socket() as usize,
        events: POLLWRNORM,
        revents: 0,
    };
    // SAFETY: one valid WSAPOLLFD, for the count given, for the duration of the call.
    let n = unsafe { WSAPoll(&mut fd, 1, millis(timeout)) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n > 0)
}

/// No SIGPIPE on Windows: a write to a closed connection fails with an error.
pub(crate) fn block_sigpipe() {}

/// The listening socket, through tokio's listener. Accepted sockets leave the event loop
/// again (as plain non-blocking sockets), so that the request is read with a plain `recv`
/// straight away, as elsewhere, rather than after a readiness event: a connection registers
/// again only if it has to wait.
#[derive(Debug)]
pub(crate) struct Listener(tokio::net::TcpListener);

impl Listener {
    pub(crate) fn new(listener: std::net::TcpListener) -> io::Result<Listener> {
        tokio::net::TcpListener::from_std(listener).map(Listener)
    }

    /// Accepts one connection, waiting for one if none is there.
    pub(crate) async fn accept(&self) -> io::Result<(Accepted, SocketAddr)> {
        loop {
            match self.0.accept().await {
                // A connection reset while it waited in the backlog: take the next one.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                Err(e) => return Err(e),
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let stream = stream.into_std()?;
                    stream.set_nonblocking(true)?;
                    return Ok((Accepted(stream), peer));
                }
            }
        }
    }
}

/// A wait for calls taking milliseconds: at least 1 ms (0 would not wait), at most what an
/// `i32` holds.
fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision the final-path check makes, for the paths (from the volume's root)
    /// Windows reports for what a name opened: the root's, then exactly the name; anything
    /// else is refused.
    #[test]
    fn opened_file_must_be_the_root_then_the_name() {
        let root = Path::new(r"\srv\files");
        let ok = |opened: &str, name: &str| same_relative(root, Path::new(opened), name);
        assert!(ok(r"\srv\files\a.txt", "a.txt"));
        assert!(ok(r"\srv\files\sub dir\b.txt", "sub dir/b.txt"));
        // Windows matches names without regard to case, and so does the check.
        assert!(ok(r"\SRV\Files\A.TXT", "a.txt"));
        assert!(ok("\\srv\\files\\\u{c4}b.txt", "\u{e4}b.txt"));
        // A link (or junction) out of the root: the handle is on the target.
        assert!(!ok(r"\Windows\win.ini", "link"));
        assert!(!ok(r"\srv\secret.txt", "dir_link/secret.txt"));
        // A sibling directory whose name starts with the root's.
        assert!(!ok(r"\srv\files2\a.txt", "a.txt"));
        // A link inside the root, to another name: refused too (one name, one file).
        assert!(!ok(r"\srv\files\target.txt", "link.txt"));
        // An 8.3 short name: the handle gives the long one.
        assert!(!ok(r"\srv\files\a rather long name.text", "ARATHE~1.TEX"));
        // The root itself, or a prefix of it.
        assert!(!ok(r"\srv\files", "a.txt"));
        assert!(!ok(r"\srv", "a.txt"));
    }

    #[test]
    fn a_volume_root_works_as_root() {
        let root = Path::new(r"\");
        assert!(same_relative(root, Path::new(r"\a.txt"), "a.txt"));
        assert!(same_relative(root, Path::new(r"\sub\a.txt"), "sub/a.txt"));
        assert!(!same_relative(root, Path::new(r"\a.txt"), "sub/a.txt"));
    }

    #[test]
    fn filetimes_convert() {
        assert_eq!(system_time(0), None);
        assert_eq!(
            system_time(116_444_736_000_000_000),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            system_time(116_444_736_000_000_000 + 10_000_000),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        );
        assert_eq!(
            system_time(116_444_736_000_000_000 - 10_000_000),
            SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(1))
        );
    }
}
