//! Where a download lands: the destination path, never outside the directory chosen, and the
//! temporary file beside it that becomes the destination only when the whole file arrived
//! (and had the digest expected of it, when one was).

use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::connection::Connection;
use super::digest::{Hashing, Sha256Digest};
use super::options::FetchOptions;
use super::receive;
use crate::error::{Error, NameProblem, Result};
use crate::sys;

/// A completed download.
///
/// Only the library makes these; `#[non_exhaustive]` lets it report more about a download
/// without breaking code that reads the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fetched {
    /// Where the file now is.
    pub path: PathBuf,
    /// Its size in bytes (the DataLength the server announced and sent).
    pub bytes: u64,
    /// The SHA-256 digest of the data, computed as it arrived, when it was asked for
    /// ([`FetchOptionsBuilder::sha256`](crate::FetchOptionsBuilder::sha256) or
    /// [`Fetch::expect_sha256`](crate::Fetch::expect_sha256)).
    pub sha256: Option<Sha256Digest>,
}

/// The local path a download of `name` goes to.
///
/// Only the last component of `name` is used, so a server (or a name with `..`) can never
/// steer the file outside the directory chosen.
pub fn destination(name: &str, output: Option<&Path>) -> Result<PathBuf> {
    let leaf = || -> Result<&str> {
        let leaf = name.rsplit('/').next().unwrap_or("");
        if leaf.is_empty() || leaf == "." || leaf == ".." || leaf.contains('\\') {
            return Err(Error::InvalidName {
                reason: NameProblem::NoFileName {
                    name: name.to_owned(),
                },
            });
        }
        Ok(leaf)
    };
    match output {
        Some(out) if out.is_dir() => Ok(out.join(leaf()?)),
        Some(out) => Ok(out.to_path_buf()),
        None => Ok(PathBuf::from(leaf()?)),
    }
}

/// Refuses an existing destination unless overwriting was asked for.
pub(crate) fn check_free(dest: &Path, options: &FetchOptions) -> Result<()> {
    if options.overwrite() {
        return Ok(());
    }
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(Error::DestinationExists {
            path: dest.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(dest, e)),
    }
}

/// Receives `total` bytes into a temporary file beside `dest` and moves it into place. With
/// `expected` (or [`FetchOptions::sha256`]) the data's digest is computed on the way, and a
/// digest other than `expected` leaves nothing behind and the destination untouched.
pub(crate) fn receive_file(
    conn: &mut Connection,
    total: u64,
    dest: PathBuf,
    options: &FetchOptions,
    progress: &mut dyn FnMut(u64, u64) -> ControlFlow<()>,
    expected: Option<Sha256Digest>,
) -> Result<Fetched> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new();
    temp.prefix(".filefetch-").suffix(".part");
    if let Some(permissions) = sys::new_file_permissions() {
        temp.permissions(permissions);
    }
    let mut temp = temp.tempfile_in(&dir).map_err(|e| Error::io(&dir, e))?;
    // From here on, returning early drops `temp`, which deletes the partial file.
    let temp_path = temp.path().to_path_buf();
    let mut hash = (options.sha256() || expected.is_some()).then(Hashing::default);
    receive::receive_to_file(
        conn,
        temp.as_file_mut(),
        total,
        progress,
        &temp_path,
        options.portable(),
        hash.as_mut(),
    )?;
    conn.expect_end(total)?;
    let sha256 = hash.map(|hash| hash.finish(expected)).transpose()?;
    if options.fsync() {
        temp.as_file()
            .sync_all()
            .map_err(|e| Error::io(temp.path(), e))?;
    }
    let persisted = if options.overwrite() {
        temp.persist(&dest)
    } else {
        temp.persist_noclobber(&dest)
    };
    match persisted {
        Ok(_) => Ok(Fetched {
            path: dest,
            bytes: total,
            sha256,
        }),
        // The temporary file inside the error is dropped, and so deleted, here.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(Error::DestinationExists { path: dest })
        }
        Err(e) => Err(Error::io(&dest, e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_uses_last_component_only() {
        assert_eq!(destination("a.txt", None).unwrap(), PathBuf::from("a.txt"));
        assert_eq!(
            destination("x/y/z.bin", None).unwrap(),
            PathBuf::from("z.bin")
        );
        assert_eq!(
            destination("../../etc/passwd", None).unwrap(),
            PathBuf::from("passwd")
        );
        for bad in ["dir/", "..", "a/..", ".", "/"] {
            assert!(
                matches!(
                    destination(bad, None),
                    Err(Error::InvalidName {
                        reason: NameProblem::NoFileName { .. }
                    })
                ),
                "{bad}"
            );
        }
        let out = tempfile::tempdir().unwrap();
        assert_eq!(
            destination("d/f", Some(out.path())).unwrap(),
            out.path().join("f")
        );
        assert_eq!(
            destination("dir/", Some(&out.path().join("new"))).unwrap(),
            out.path().join("new")
        );
    }
}
