//! Confinement: which names the server accepts, and opening them without leaving the root.
//!
//! A name is checked as text first ([`check_name`]); then it is opened relative to the root
//! directory's descriptor so that neither `..` nor a symbolic link can reach outside it. On
//! Linux this is one `openat2` call with `RESOLVE_BENEATH`; elsewhere (and where `openat2` is
//! unavailable) the path is walked one component at a time with `O_NOFOLLOW`, resolving each
//! symbolic link by hand inside the root.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Why a requested name was refused before touching the file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameError {
    /// The name is not valid UTF-8.
    NotUtf8,
    /// The name is empty.
    Empty,
    /// The name is longer than 1024 bytes.
    TooLong,
    /// The name starts with `/`.
    Absolute,
    /// The name has an empty component (`a//b`, or a trailing `/`).
    EmptyComponent,
    /// The name has a `.` or `..` component.
    DotComponent,
    /// The name contains a NUL byte.
    Nul,
    /// The name contains a backslash.
    Backslash,
    /// The name contains a control character.
    Control,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameError::NotUtf8 => "name is not valid UTF-8",
            NameError::Empty => "name is empty",
            NameError::TooLong => "name is longer than 1024 bytes",
            NameError::Absolute => "name is an absolute path",
            NameError::EmptyComponent => "name has an empty component",
            NameError::DotComponent => "name has a '.' or '..' component",
            NameError::Nul => "name contains a NUL byte",
            NameError::Backslash => "name contains a backslash",
            NameError::Control => "name contains a control character",
        })
    }
}

impl std::error::Error for NameError {}

/// Checks a requested name and returns it as a relative path inside the root.
///
/// Accepted names are relative paths of `/`-separated, non-empty components, none of them
/// `.` or `..`, with no NUL, backslash or control character, at most 1024 bytes of UTF-8.
/// Percent signs and other punctuation are taken literally: nothing is decoded.
///
/// ```
/// use filefetch::confine::{check_name, NameError};
/// assert_eq!(check_name(b"docs/report 2024.pdf"), Ok("docs/report 2024.pdf"));
/// assert_eq!(check_name(b"../etc/passwd"), Err(NameError::DotComponent));
/// assert_eq!(check_name(b"/etc/passwd"), Err(NameError::Absolute));
/// ```
pub fn check_name(raw: &[u8]) -> Result<&str, NameError> {
    if raw.is_empty() {
        return Err(NameError::Empty);
    }
    if raw.len() > crate::protocol::MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    let name = std::str::from_utf8(raw).map_err(|_| NameError::NotUtf8)?;
    for c in name.chars() {
        match c {
            '\0' => return Err(NameError::Nul),
            '\\' => return Err(NameError::Backslash),
            c if c.is_control() => return Err(NameError::Control),
            _ => {}
        }
    }
    if name.starts_with('/') {
        return Err(NameError::Absolute);
    }
    for component in name.split('/') {
        match component {
            "" => return Err(NameError::EmptyComponent),
            "." | ".." => return Err(NameError::DotComponent),
            _ => {}
        }
    }
    Ok(name)
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
    Io(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Escapes => f.write_str("resolves outside the root"),
            OpenError::NotRegular => f.write_str("not a regular file"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        OpenError::Io(e)
    }
}

/// How [`Root::open`] resolves names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolver {
    /// The fastest safe way the system offers (`openat2` on Linux).
    Native,
    /// The portable walk, one component at a time.
    Portable,
}

/// The directory files are served from, held open so that every lookup starts from it.
#[derive(Debug)]
pub struct Root {
    #[cfg(unix)]
    dir: File,
    path: PathBuf,
}

impl Root {
    /// Opens `path` as the root directory.
    pub fn new(path: impl AsRef<Path>) -> io::Result<Root> {
        let path = path.as_ref().to_path_buf();
        #[cfg(unix)]
        let root = Root {
            dir: open_dir(&path)?,
            path,
        };
        #[cfg(not(unix))]
        let root = {
            if !std::fs::metadata(&path)?.is_dir() {
                return Err(io::Error::new(io::ErrorKind::Other, "not a directory"));
            }
            Root { path }
        };
        Ok(root)
    }

    /// The path this root was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the regular file `name` (already passed through [`check_name`]) beneath the root.
    ///
    /// Symbolic links are followed only while their targets stay inside the root. Special
    /// files (FIFOs, devices, sockets) and directories are refused with
    /// [`OpenError::NotRegular`]; opening never blocks on a FIFO.
    pub fn open(&self, name: &str, resolver: Resolver) -> Result<File, OpenError> {
        self.open_measured(name, resolver).map(|(file, _)| file)
    }

    /// [`Root::open`], also returning the file's size from the same `fstat`.
    pub(crate) fn open_measured(
        &self,
        name: &str,
        resolver: Resolver,
    ) -> Result<(File, u64), OpenError> {
        let file = match resolver {
            #[cfg(target_os = "linux")]
            Resolver::Native => match linux::open_beneath(&self.dir, name) {
                Some(result) => result?,
                None => self.walk(name)?,
            },
            _ => self.walk(name)?,
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(OpenError::NotRegular);
        }
        Ok((file, meta.len()))
    }
}

impl Root {
    #[cfg(unix)]
    fn walk(&self, name: &str) -> Result<File, OpenError> {
        walk::open(&self.dir, name)
    }

    #[cfg(not(unix))]
    fn walk(&self, name: &str) -> Result<File, OpenError> {
        walk::open(&self.path, name)
    }
}

#[cfg(unix)]
fn open_dir(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(target_os = "linux")]
mod linux {
    //! `openat2(2)` with `RESOLVE_BENEATH`: the kernel refuses any resolution that leaves the
    //! starting directory, atomically.
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::OpenError;

    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }

    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_BENEATH: u64 = 0x08;

    /// Set once `openat2` turned out to be missing (old kernel, or a seccomp filter).
    static UNAVAILABLE: AtomicBool = AtomicBool::new(false);

    /// Returns `None` when `openat2` is not available, so the caller falls back to the walk.
    pub(super) fn open_beneath(dir: &File, name: &str) -> Option<Result<File, OpenError>> {
        if UNAVAILABLE.load(Ordering::Relaxed) {
            return None;
        }
        let Ok(cname) = CString::new(name) else {
            return Some(Err(OpenError::Io(io::Error::from(
                io::ErrorKind::InvalidInput,
            ))));
        };
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
            mode: 0,
            resolve: RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
        };
        // SAFETY: the path is NUL-terminated, `how` is a valid open_how of the size passed,
        // and `dir` is an open descriptor for the duration of the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                cname.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Some(Ok(unsafe { File::from_raw_fd(fd as i32) }));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) if is_unavailable(&err) => {
                UNAVAILABLE.store(true, Ordering::Relaxed);
                None
            }
            Some(libc::EXDEV) => Some(Err(OpenError::Escapes)),
            _ => Some(Err(OpenError::Io(err))),
        }
    }

    /// ENOSYS always means a missing syscall; EPERM means a seccomp filter only when a plain
    /// open of the directory itself is also refused by openat2.
    fn is_unavailable(err: &io::Error) -> bool {
        err.raw_os_error() == Some(libc::ENOSYS) || probe_denied()
    }

    fn probe_denied() -> bool {
        let how = OpenHow {
            flags: (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_DIRECTORY) as u64,
            mode: 0,
            resolve: 0,
        };
        // SAFETY: as above; "/" is a valid NUL-terminated path.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                libc::AT_FDCWD,
                c"/".as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: we own the descriptor just returned.
            drop(unsafe { File::from_raw_fd(fd as i32) });
            false
        } else {
            true
        }
    }
}

#[cfg(unix)]
mod walk {
    //! The portable resolver: one `openat(O_NOFOLLOW)` per component from the root's
    //! descriptor, with symbolic links read and resolved by hand. A `..` that would climb above
    //! the root, or an absolute link, is refused; a component swapped for a link between two
    //! calls is seen as a link (`O_NOFOLLOW`), never followed blindly.
    use std::ffi::CString;
    use std::fs::File;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd};

    use super::OpenError;

    /// Links followed in one lookup before giving up, as the kernel does (ELOOP).
    const MAX_LINKS: usize = 40;

    pub(super) fn open(root: &File, name: &str) -> Result<File, OpenError> {
        // Components still to resolve, last one on top.
        let mut pending: Vec<Vec<u8>> = name
            .split('/')
            .rev()
            .map(|c| c.as_bytes().to_vec())
            .collect();
        let mut dirs: Vec<File> = Vec::new();
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
            let parent = dirs.last().unwrap_or(root);
            let last = pending.is_empty();
            let flags = if last {
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY
            } else {
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_DIRECTORY
            } | libc::O_CLOEXEC;
            let cname = CString::new(component.clone())
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            match openat(parent, &cname, flags) {
                Ok(file) if last => return Ok(file),
                Ok(dir) => dirs.push(dir),
                Err(open_err) => {
                    // Any failure may be a symbolic link (ELOOP on Linux, EMLINK on FreeBSD,
                    // ENOTDIR for a link where a directory was wanted): ask.
                    let target = match readlinkat(parent, &cname) {
                        Ok(target) => target,
                        Err(_) => return Err(OpenError::Io(open_err)),
                    };
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(OpenError::Io(io::Error::from_raw_os_error(libc::ELOOP)));
                    }
                    if target.first() == Some(&b'/') {
                        return Err(OpenError::Escapes);
                    }
                    if target.is_empty() {
                        return Err(OpenError::Io(io::Error::from_raw_os_error(libc::ENOENT)));
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
            }
        }
        Err(OpenError::NotRegular)
    }

    fn openat(dir: &File, name: &CString, flags: i32) -> io::Result<File> {
        // SAFETY: `name` is NUL-terminated and `dir` is open for the duration of the call.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor is new and owned by nobody else.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    fn readlinkat(dir: &File, name: &CString) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for its whole length; `name` is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }
}

#[cfg(not(unix))]
mod walk {
    //! Systems without `openat`: canonicalise and compare prefixes. Not race-free, but the
    //! names were checked as text first, so only a link planted inside the root can mislead it.
    use std::fs::File;
    use std::path::Path;

    use super::OpenError;

    pub(super) fn open(root_path: &Path, name: &str) -> Result<File, OpenError> {
        let root = root_path.canonicalize()?;
        let target = root.join(name).canonicalize()?;
        if !target.starts_with(&root) {
            return Err(OpenError::Escapes);
        }
        Ok(File::open(target)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in [
            "a",
            "a.txt",
            "dir/sub/file.bin",
            "with space.txt",
            "ünïcödé/文件.txt",
            "%2e%2e/literal",
            "...",
            ".hidden",
            "a..b",
        ] {
            assert_eq!(check_name(name.as_bytes()), Ok(name), "{name}");
        }
    }

    #[test]
    fn refuses_each_kind() {
        let cases: &[(&[u8], NameError)] = &[
            (b"", NameError::Empty),
            (b"/etc/passwd", NameError::Absolute),
            (b"//x", NameError::Absolute),
            (b"..", NameError::DotComponent),
            (b"../x", NameError::DotComponent),
            (b"a/../../x", NameError::DotComponent),
            (b"a/..", NameError::DotComponent),
            (b".", NameError::DotComponent),
            (b"./a", NameError::DotComponent),
            (b"a/./b", NameError::DotComponent),
            (b"a//b", NameError::EmptyComponent),
            (b"a/", NameError::EmptyComponent),
            (b"a\0b", NameError::Nul),
            (b"a\\..\\b", NameError::Backslash),
            (b"a\nb", NameError::Control),
            (b"a\x7fb", NameError::Control),
            ("a\u{85}b".as_bytes(), NameError::Control),
            (b"\xff\xfe", NameError::NotUtf8),
            (b"\xc0\xae\xc0\xae/x", NameError::NotUtf8),
        ];
        for (raw, want) in cases {
            assert_eq!(check_name(raw), Err(*want), "{raw:?}");
        }
        assert_eq!(check_name(&[b'a'; 1025]), Err(NameError::TooLong));
        assert!(check_name(&[b'a'; 255]).is_ok());
    }

    proptest! {
        /// Whatever the bytes, an accepted name never climbs out or starts at the top.
        #[test]
        fn accepted_names_stay_relative(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(name) = check_name(&raw) {
                prop_assert!(!name.starts_with('/'));
                prop_assert!(name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
                prop_assert!(!name.contains('\0') && !name.contains('\\'));
            }
        }

        #[test]
        fn accepted_names_from_path_alphabet(parts in proptest::collection::vec("[a-z.]{0,3}", 1..5)) {
            let name = parts.join("/");
            let ok = parts.iter().all(|p| !p.is_empty() && p != "." && p != "..");
            prop_assert_eq!(check_name(name.as_bytes()).is_ok(), ok);
        }
    }

    #[cfg(unix)]
    #[test]
    fn both_resolvers_confine() {
        use std::os::unix::fs::symlink;
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("sub/deeper/f.txt"), b"inside").unwrap();
        std::fs::write(top.path().join("secret"), b"outside").unwrap();
        symlink("deeper/f.txt", root.join("sub/rel_in")).unwrap();
        symlink("../sub/deeper/f.txt", root.join("sub/up_in")).unwrap();
        symlink("../../secret", root.join("sub/up_out")).unwrap();
        symlink(top.path().join("secret"), root.join("abs_out")).unwrap();
        symlink(root.join("sub/deeper/f.txt"), root.join("abs_in")).unwrap();
        symlink("sub", root.join("dirlink")).unwrap();
        symlink("..", root.join("parent")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        let r = Root::new(&root).unwrap();
        for resolver in [Resolver::Native, Resolver::Portable] {
            for ok in [
                "sub/deeper/f.txt",
                "sub/rel_in",
                "sub/up_in",
                "dirlink/deeper/f.txt",
            ] {
                let mut f = r.open(ok, resolver).unwrap_or_else(|e| panic!("{ok}: {e}"));
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s).unwrap();
                assert_eq!(s, "inside");
            }
            for bad in [
                "sub/up_out",
                "abs_out",
                "abs_in",
                "parent/secret",
                "parent/root/sub/deeper/f.txt",
            ] {
                assert!(
                    matches!(r.open(bad, resolver), Err(OpenError::Escapes)),
                    "{bad} with {resolver:?}"
                );
            }
            assert!(matches!(
                r.open("sub", resolver),
                Err(OpenError::NotRegular)
            ));
            assert!(matches!(
                r.open("dirlink", resolver),
                Err(OpenError::NotRegular)
            ));
            assert!(matches!(r.open("missing", resolver), Err(OpenError::Io(_))));
            assert!(matches!(r.open("loop", resolver), Err(OpenError::Io(_))));
        }
    }
}
