//! Confinement: which names the server accepts, and opening them without leaving the root.
//!
//! A name is checked as text first ([`check_name`]); then it is opened relative to the root
//! directory's descriptor so that neither `..` nor a symbolic link can reach outside it. On
//! Linux this is one `openat2` call with `RESOLVE_BENEATH`; on other Unix systems (and where
//! `openat2` is unavailable) the path is walked one component at a time with `O_NOFOLLOW`,
//! resolving each symbolic link by hand inside the root. On Windows the name must also pass
//! the rules of Windows paths ([`check_windows_name`]), and the opened handle's final path
//! must be the root's followed by exactly that name, which refuses links, junctions and 8.3
//! short names.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::sys;
pub use crate::sys::OpenError;

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
    /// The name means something else to Windows than a plain relative path: a drive or a
    /// stream (`:`), a wildcard or another character Windows refuses in names, a device name
    /// (`CON`, `nul.txt`, `COM1`...), or a component ending in a dot or a space. Refused by
    /// servers on Windows only.
    WindowsSpecial,
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
            NameError::WindowsSpecial => {
                "name has a drive, stream, device name or other form special to Windows"
            }
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
/// use filefetch::server::confine::{check_name, NameError};
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
    if cfg!(windows) {
        check_windows_name(name)?;
    }
    Ok(name)
}

/// Device names Windows resolves in any directory, whatever the extension (`nul.txt`).
const WINDOWS_DEVICES: &[&str] = &[
    "CON",
    "PRN",
    "AUX",
    "NUL",
    "CONIN$",
    "CONOUT$",
    "CLOCK$",
    "COM0",
    "COM1",
    "COM2",
    "COM3",
    "COM4",
    "COM5",
    "COM6",
    "COM7",
    "COM8",
    "COM9",
    "COM\u{b9}",
    "COM\u{b2}",
    "COM\u{b3}",
    "LPT0",
    "LPT1",
    "LPT2",
    "LPT3",
    "LPT4",
    "LPT5",
    "LPT6",
    "LPT7",
    "LPT8",
    "LPT9",
    "LPT\u{b9}",
    "LPT\u{b2}",
    "LPT\u{b3}",
];

/// The rules Windows adds to [`check_name`]'s, for a name that passed those: refuses
/// whatever Windows would read as more than a relative path of plain names.
///
/// - `:` anywhere: a drive (`C:x`) or an alternate data stream (`a.txt:s`, `a.txt::$DATA`);
/// - `<`, `>`, `"`, `|`, `?`, `*`: wildcards and characters Windows does not allow in names;
/// - a device name as a component, in any case, with or without an extension or trailing
///   spaces (`CON`, `nul.txt`, `Com1.log`, `LPT9`, `AUX`);
/// - a component ending in `.` or a space, which Windows would strip (`secret.txt.`).
///
/// Backslashes, and so UNC and device paths (`\\?\`, `\\.\`), are already refused by
/// [`check_name`], and absolute names with them. Servers on Windows apply these rules; the
/// function is public so that any system can check a name as a Windows server would.
///
/// ```
/// use filefetch::server::confine::{check_windows_name, NameError};
/// assert_eq!(check_windows_name("docs/report.txt"), Ok(()));
/// assert_eq!(check_windows_name("C:x"), Err(NameError::WindowsSpecial));
/// assert_eq!(check_windows_name("logs/nul.txt"), Err(NameError::WindowsSpecial));
/// ```
pub fn check_windows_name(name: &str) -> Result<(), NameError> {
    if name.contains([':', '<', '>', '"', '|', '?', '*']) {
        return Err(NameError::WindowsSpecial);
    }
    for component in name.split('/') {
        if component.ends_with(['.', ' ']) {
            return Err(NameError::WindowsSpecial);
        }
        let stem = component.split('.').next().unwrap_or(component);
        let stem = stem.trim_end_matches(' ');
        if WINDOWS_DEVICES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
            return Err(NameError::WindowsSpecial);
        }
    }
    Ok(())
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
    dir: sys::RootDir,
    path: PathBuf,
}

impl Root {
    /// Opens `path` as the root directory.
    pub fn new(path: impl AsRef<Path>) -> io::Result<Root> {
        let path = path.as_ref().to_path_buf();
        Ok(Root {
            dir: sys::RootDir::open(&path)?,
            path,
        })
    }

    /// The path this root was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the regular file `name` (already passed through [`check_name`]) beneath the root.
    ///
    /// Symbolic links are followed only while their targets stay inside the root (on
    /// Windows, not at all). Special files (FIFOs, devices, sockets) and directories are
    /// refused with [`OpenError::NotRegular`]; opening never blocks on a FIFO.
    pub fn open(&self, name: &str, resolver: Resolver) -> Result<File, OpenError> {
        self.open_measured(name, resolver).map(|(file, _)| file)
    }

    /// [`Root::open`], also returning the file's state (size, times, identity) from the same
    /// `fstat`.
    pub(crate) fn open_measured(
        &self,
        name: &str,
        resolver: Resolver,
    ) -> Result<(File, sys::FileState), OpenError> {
        let native = match resolver {
            Resolver::Native => sys::open_native(&self.dir, name),
            Resolver::Portable => None,
        };
        let file = match native {
            Some(result) => result?,
            None => sys::open_walk(&self.dir, name)?,
        };
        let state = sys::file_state(&file)?;
        if !state.regular {
            return Err(OpenError::NotRegular);
        }
        Ok((file, state))
    }

    /// The state of whatever `name` leads to now (see `sys::name_state`).
    pub(crate) fn name_state(&self, name: &str) -> io::Result<sys::FileState> {
        sys::name_state(&self.dir, name)
    }

    /// Places `notifier`'s watches for `name`, which was opened beneath this root as `file`
    /// (`id`): see `sys::Notifier::place`.
    pub(crate) fn watch(
        &self,
        notifier: &sys::Notifier,
        name: &str,
        file: &std::fs::File,
        id: (u64, u64),
    ) -> Result<(sys::Placed, sys::FileState), Vec<i32>> {
        notifier.place(&self.dir, name, file, id)
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
            "...x",
            ".hidden",
            "a..b",
        ] {
            assert_eq!(check_name(name.as_bytes()), Ok(name), "{name}");
        }
        // Windows would strip the trailing dot; elsewhere it is a name like any other.
        let dots = check_name(b"...");
        assert_eq!(dots.is_ok(), !cfg!(windows), "{dots:?}");
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

    #[test]
    fn windows_rules() {
        for ok in [
            "a.txt",
            "dir/sub/file.bin",
            "...x",
            ".hidden",
            "CONSOLE.txt",
            "nullish",
            "COM10",
            "LPT",
            "my con.txt",
            "ünïcödé/文件.txt",
        ] {
            assert_eq!(check_windows_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "C:x",
            "c:/x",
            "a.txt:s",
            "a.txt::$DATA",
            "dir/a:b/c",
            "CON",
            "con",
            "nul.txt",
            "Com1.log",
            "LPT9",
            "aux",
            "AUX.tar.gz",
            "PRN ",
            "prn .txt",
            "dir/NUL",
            "COM\u{b9}",
            "conin$",
            "secret.txt.",
            "secret.txt ",
            "dir./x",
            "a?b",
            "*",
            "a<b",
            "a>b",
            "a|b",
            "a\"b",
        ] {
            assert_eq!(
                check_windows_name(bad),
                Err(NameError::WindowsSpecial),
                "{bad}"
            );
        }
    }

    #[test]
    fn check_name_applies_windows_rules_on_windows_only() {
        let got = check_name(b"nul.txt");
        if cfg!(windows) {
            assert_eq!(got, Err(NameError::WindowsSpecial));
        } else {
            assert_eq!(got, Ok("nul.txt"));
        }
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
            let ok = parts.iter().all(|p| {
                !p.is_empty() && p != "." && p != ".." && !(cfg!(windows) && p.ends_with('.'))
            });
            prop_assert_eq!(check_name(name.as_bytes()).is_ok(), ok);
        }
    }

    /// A FIFO is refused on its type, without being opened: a writer blocked in opening it
    /// (waiting for a reader) stays blocked, whichever resolver looks it up.
    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_being_opened() {
        use std::os::unix::fs::OpenOptionsExt;
        use std::sync::mpsc;
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let c_fifo = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path, valid for the call.
        assert_eq!(unsafe { libc::mkfifo(c_fifo.as_ptr(), 0o600) }, 0);
        let (opened, writer_opened) = mpsc::channel();
        let writer = std::thread::spawn({
            let fifo = fifo.clone();
            move || {
                // Blocks until a reader opens the FIFO.
                let file = std::fs::OpenOptions::new().write(true).open(&fifo);
                let _ = opened.send(());
                file
            }
        });
        // Let the writer reach its open (it shows as the FIFO's waiting writer).
        std::thread::sleep(Duration::from_millis(200));
        let root = Root::new(dir.path()).unwrap();
        for resolver in [Resolver::Native, Resolver::Portable] {
            assert!(
                matches!(root.open("pipe", resolver), Err(OpenError::NotRegular)),
                "{resolver:?}"
            );
        }
        // A reader would have let the writer through at once; give it a moment to show.
        let released = writer_opened
            .recv_timeout(Duration::from_millis(300))
            .is_ok();
        // Let the writer go either way (our own reader), then check what happened before.
        let reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        writer.join().unwrap().unwrap();
        drop(reader);
        assert!(!released, "looking the FIFO up opened it for reading");
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
