//! Change notices from the kernel (inotify), for the open-file cache: a watch on a file and on
//! each directory of the name that leads to it, so that the cache learns of any change to
//! them without looking the name up again at each request.
//!
//! The kernel queues a notice within the call that makes the change (the `rename`, `unlink`,
//! `write` or `truncate`), before that call returns; a request that arrives after the change
//! therefore finds the notice queued, and one `ioctl(FIONREAD)` tells whether any is.

use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{AtFlags, Mode, OFlags};

use super::unix::{state_of, RootDir};
use super::FileState;

/// What changes a file's content, size, times, permissions or links, or takes it away.
const FILE_EVENTS: WatchFlags = WatchFlags::MODIFY
    .union(WatchFlags::ATTRIB)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::DELETE_SELF);
/// What changes which entry a name in a directory leads to, or takes the directory away.
const DIR_EVENTS: WatchFlags = WatchFlags::CREATE
    .union(WatchFlags::DELETE)
    .union(WatchFlags::MOVED_FROM)
    .union(WatchFlags::MOVED_TO)
    .union(WatchFlags::MOVE_SELF)
    .union(WatchFlags::DELETE_SELF)
    .union(WatchFlags::ONLYDIR);

/// An inotify instance, non-blocking.
#[derive(Debug)]
pub(crate) struct Notifier(OwnedFd);

/// One notice read from the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Something happened to the watched inode itself, or (for a directory) to its entry
    /// `name`.
    Changed { wd: i32, name: Option<Box<str>> },
    /// The watch is gone (its inode was deleted or its file system unmounted, or it was
    /// removed).
    Gone(i32),
    /// The queue overflowed: notices were lost.
    Lost,
}

impl Notifier {
    /// A new instance, or `None` where inotify is unavailable (or its instances used up).
    pub(crate) fn new() -> Option<Notifier> {
        inotify::init(CreateFlags::NONBLOCK | CreateFlags::CLOEXEC)
            .ok()
            .map(Notifier)
    }

    /// Watches the open file `file` (its inode, whatever its names).
    fn watch_file(&self, file: &File) -> io::Result<i32> {
        self.watch(file.as_fd(), FILE_EVENTS)
    }

    /// Watches the directory open as `dir`.
    fn watch_dir(&self, dir: BorrowedFd<'_>) -> io::Result<i32> {
        self.watch(dir, DIR_EVENTS)
    }

    fn watch(&self, fd: BorrowedFd<'_>, events: WatchFlags) -> io::Result<i32> {
        // inotify takes a path: the descriptor's own, which leads to the very inode open.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        Ok(inotify::add_watch(&self.0, path, events)?)
    }

    /// Removes a watch (gone already is no error).
    pub(crate) fn unwatch(&self, wd: i32) {
        let _ = inotify::remove_watch(&self.0, wd);
    }

    /// Whether notices are queued: one `ioctl`, with nothing read.
    pub(crate) fn pending(&self) -> bool {
        // An error here (there is none in practice) is taken as news, which costs a read.
        rustix::io::ioctl_fionread(&self.0).map_or(true, |n| n > 0)
    }

    /// Reads every queued notice.
    pub(crate) fn take(&self, mut each: impl FnMut(Notice)) {
        let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.0, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    let flags = event.events();
                    let notice = if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                        Notice::Lost
                    } else if flags.contains(ReadFlags::IGNORED) {
                        Notice::Gone(event.wd())
                    } else {
                        let name = event
                            .file_name()
                            .map(|n| n.to_string_lossy())
                            .filter(|n| !n.is_empty())
                            .map(Into::into);
                        Notice::Changed {
                            wd: event.wd(),
                            name,
                        }
                    };
                    each(notice);
                }
                Err(rustix::io::Errno::INTR) => {}
                // Drained (EAGAIN), or an error no retry would mend: whatever was lost is
                // bounded by the cache's lifetime, as without notices.
                Err(rustix::io::Errno::AGAIN) => return,
                Err(_) => return each(Notice::Lost),
            }
        }
    }
}

/// The watches placed for one name: on the file, and on each directory from the root to the
/// file's with the entry looked up in it.
#[derive(Debug)]
pub(crate) struct Placed {
    pub(crate) file: i32,
    pub(crate) dirs: Vec<(i32, Box<str>)>,
}

impl Notifier {
    /// Watches what `name` depends on, given `file` opened for it beneath the root: the file,
    /// then each directory from the root down, each before the entry in it is looked up, so
    /// that a change from then on is noticed. Returns the watches and the file's state as the
    /// name leads to it now, once all are in place; `Err` with the watches placed so far when
    /// the name crosses a symbolic link (whose target's directories are not watched), does not
    /// lead to `file`, or a watch cannot be placed.
    pub(crate) fn place(
        &self,
        root: &RootDir,
        name: &str,
        file: &File,
        file_id: (u64, u64),
    ) -> Result<(Placed, FileState), Vec<i32>> {
        let mut added = Vec::new();
        let placed = self.place_into(root, name, file, file_id, &mut added);
        placed.ok_or(added)
    }

    fn place_into(
        &self,
        root: &RootDir,
        name: &str,
        file: &File,
        file_id: (u64, u64),
        added: &mut Vec<i32>,
    ) -> Option<(Placed, FileState)> {
        let file_wd = self.watch_file(file).ok()?;
        added.push(file_wd);
        let mut dirs = Vec::new();
        let mut dir: Option<OwnedFd> = None;
        let mut parts = name.split('/').peekable();
        while let Some(part) = parts.next() {
            let wd = self
                .watch_dir(dir.as_ref().map_or(root.0.as_fd(), |d| d.as_fd()))
                .ok()?;
            added.push(wd);
            dirs.push((wd, part.into()));
            if parts.peek().is_none() {
                let state = entry_state(root, dir.as_ref(), part).ok()?;
                let placed = Placed {
                    file: file_wd,
                    dirs,
                };
                return (state.regular && state.id == file_id).then_some((placed, state));
            }
            dir = Some(open_dir_no_links(root, dir.as_ref(), part).ok()?);
        }
        None
    }
}

/// A directory beneath `dir` (the root's descriptor when `None`), opened only to be watched
/// and looked into: never through a symbolic link.
fn open_dir_no_links(root: &RootDir, dir: Option<&OwnedFd>, name: &str) -> io::Result<OwnedFd> {
    let from = dir.unwrap_or(&root.0);
    Ok(rustix::fs::openat(
        from,
        name,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The state of the entry `name` in `dir` (the root's when `None`) itself, a symbolic link
/// not followed.
fn entry_state(root: &RootDir, dir: Option<&OwnedFd>, name: &str) -> io::Result<FileState> {
    let from = dir.unwrap_or(&root.0);
    Ok(state_of(&rustix::fs::statat(
        from,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
    )?))
}
