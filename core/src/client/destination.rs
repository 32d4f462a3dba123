//! Where a download lands: the destination path, never outside the directory chosen, and the
//! temporary file beside it that becomes the destination only when the whole file arrived
//! (and had the digest expected of it, when one was).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

use super::connection::Connection;
use super::digest::{self, Hashing, Sha256Digest};
use super::options::FetchOptions;
use super::receive;
use super::rules::ProgressFn;
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
pub(crate) fn check_free(dest: &Path, overwrite: bool) -> Result<()> {
    if overwrite {
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

/// The running digest of a download into a file, when one is wanted: asked for by the
/// options, or to check against `expected`.
pub(crate) fn hashing(options: &FetchOptions, expected: Option<Sha256Digest>) -> Option<Hashing> {
    (options.sha256() || expected.is_some()).then(Hashing::default)
}

/// A new temporary file in the directory of `dest`, open for writing, and its path, which
/// deletes the file when dropped (unless it was landed first).
pub(crate) fn temp_beside(dest: &Path) -> Result<(File, TempPath)> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new();
    temp.prefix(".filefetch-").suffix(".part");
    if let Some(permissions) = sys::new_file_permissions() {
        temp.permissions(permissions);
    }
    let temp = temp.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    Ok(temp.into_parts())
}

/// Moves the temporary file at `temp`, which holds the whole file and is closed, into place
/// at `dest`, without replacing an existing file unless `overwrite`. On failure the temporary
/// file is deleted.
pub(crate) fn land(
    temp: TempPath,
    dest: PathBuf,
    overwrite: bool,
    bytes: u64,
    sha256: Option<Sha256Digest>,
) -> Result<Fetched> {
    let persisted = if overwrite {
        temp.persist(&dest)
    } else {
        temp.persist_noclobber(&dest)
    };
    match persisted {
        Ok(()) => Ok(Fetched {
            path: dest,
            bytes,
            sha256,
        }),
        // The temporary path inside the error is dropped, and so deleted, here.
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            Err(Error::DestinationExists { path: dest })
        }
        Err(e) => Err(Error::io(&dest, e.error)),
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
    progress: &mut ProgressFn<'_>,
    expected: Option<Sha256Digest>,
) -> Result<Fetched> {
    let (mut file, temp) = temp_beside(&dest)?;
    // From here on, returning early drops `temp`, which deletes the partial file.
    let mut hash = hashing(options, expected);
    receive::receive_to_file(
        conn,
        &mut file,
        total,
        progress,
        &temp,
        options.portable(),
        hash.as_mut(),
    )?;
    conn.expect_end(total)?;
    let sha256 = digest::check(hash, expected)?;
    if options.fsync() {
        file.sync_all().map_err(|e| Error::io(&*temp, e))?;
    }
    drop(file);
    land(temp, dest, options.overwrite(), total, sha256)
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
