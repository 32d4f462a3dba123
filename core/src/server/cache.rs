//! The server's open-file cache: small files opened for one request are kept open for a short
//! while and reused for the next requests of the same name, saving the path resolution and
//! the open and close of every request for a popular file.
//!
//! What stays exact: the cached file is used only while the name still leads to it (same
//! device and inode), so a file deleted, renamed away or replaced by a rename is noticed at
//! once, even when another hard link keeps it alive, and so is a symbolic link pointed
//! elsewhere; and the size announced is the file's size now, so a file grown or truncated in
//! place is announced as it is. On Linux the cache learns of changes from the kernel
//! (inotify: `sys::Notifier`): watches on the file and on each directory of its name are
//! placed when it is opened, the kernel queues a notice within the very call that makes a
//! change, and each request asks with one `ioctl` whether any notice is queued; a name whose
//! watches could not be placed (a symbolic link on the way, no inotify instance left) is
//! looked up again with one `stat` (from the root's descriptor) at each request instead, as
//! it is on other systems. A notice about the file's content or attributes has the name
//! looked up once more; one about a directory on the way drops the entry. What may lag by up
//! to the cache's lifetime: a permission change (of a directory; with notices, of the file
//! too), and a file system mounted over a directory on the way. Every file in the cache was opened beneath the root, and a name that
//! leads anywhere else is opened afresh with the confinement rules, so nothing from outside
//! the root is ever served from it.
//!
//! A file that has not changed for a while also has its whole response (header and data)
//! kept in memory, so that a request for it costs no read: each request compares the file's
//! size, modification time and change time from that same `stat` with the ones the bytes
//! were read under, and reads afresh on any difference. Only files whose last change is at
//! least [`SETTLED`] old are kept this way: any later change then gets a newer change time,
//! even on file systems with coarse timestamps, so it cannot go unnoticed. The one change
//! that leaves the times alone, a second write through a shared memory mapping to a page
//! already dirty, is seen when the entry's lifetime ends (the cache's lifetime, 1 s by
//! default, as nginx's `open_file_cache_valid` bounds the same thing).

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;

use super::confine::{OpenError, Resolver, Root};
use crate::protocol::{ResponseHeader, RESPONSE_HEADER_LEN};
use crate::sys;

/// Files up to this size are kept (larger ones are opened for each request: their transfer
/// costs far more than the open).
pub(crate) const MAX_CACHED_SIZE: u64 = 64 * 1024;
/// Most files kept open at once (fewer where descriptors are scarce: see [`FileCache::new`]).
pub(crate) const CAPACITY: usize = 1024;
/// Most bytes of responses kept in memory at once, over all files.
const RESPONSE_BUDGET: usize = 8 * 1024 * 1024;
/// How long a file must have gone unchanged before its response is kept in memory: longer
/// than the timestamp granularity of any common file system (FAT's is 2 s).
pub(crate) const SETTLED: Duration = Duration::from_secs(3);

/// A map from requested name to an open file, each entry reused for `ttl` after opening.
#[derive(Debug)]
pub(crate) struct FileCache {
    ttl: Duration,
    /// Most files kept open at once.
    capacity: usize,
    /// How long a file must have gone unchanged for its response to be kept ([`SETTLED`]).
    settled: Duration,
    state: Mutex<State>,
    /// Where change notices come from (the same as the state's), asked without the lock
    /// whether any is waiting.
    notifier: Option<Arc<sys::Notifier>>,
    /// The metrics' counters of hits and misses, if there are metrics.
    counters: Option<(Counter, Counter)>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Box<str>, Entry>,
    /// Bytes of the responses held by `entries`.
    response_bytes: usize,
    /// Where change notices come from, if this system and its limits allow them.
    notifier: Option<Arc<sys::Notifier>>,
    /// How many entries rely on each watch (removed when none does).
    uses: HashMap<i32, usize>,
}

#[derive(Debug)]
struct Entry {
    file: Arc<File>,
    /// Which file it is (device and inode), to tell whether the name still leads to it.
    id: FileId,
    opened: Instant,
    response: Option<Kept>,
    /// The watches on what the name depends on, if they could be placed.
    watched: Option<Watched>,
}

#[derive(Debug)]
struct Watched {
    placed: sys::Placed,
    /// The file's state when it was last known to be the one the name leads to; `None`
    /// after a notice about the file, until the name is looked up again.
    known: Option<Stamp>,
}

/// How a cached entry is to be checked before use.
enum Check {
    /// Watched, with no notice since its state was taken: used as it is.
    Known(Stamp),
    /// Watched, but the file changed: the name is looked up again, and if it still leads to
    /// the file, its state is known again.
    Again,
    /// Not watched: the name is looked up at each request.
    Each,
}

/// A file's identity: device (volume) and inode (file index).
type FileId = (u64, u64);

/// A whole response kept in memory, and the state of the file it was read in.
type Kept = (Stamp, Arc<[u8]>);

/// What a request found: the open file, its size now, and (for a small file unchanged since
/// it was last read) the whole response, header included, ready to send.
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) file: Arc<File>,
    pub(crate) len: u64,
    pub(crate) response: Option<Arc<[u8]>>,
}

/// The parts of a file's status that change whenever its content does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    changed: Option<SystemTime>,
}

impl Stamp {
    /// Unchanged for `period` by `now`: with a period longer than the timestamps'
    /// granularity, any change from here on shows in the stamp.
    fn settled(&self, now: SystemTime, period: Duration) -> bool {
        let old_enough = |t: Option<SystemTime>| {
            t.and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age >= period)
        };
        old_enough(self.modified) && old_enough(self.changed)
    }
}

impl FileCache {
    /// A cache whose entries live `ttl` (zero caches nothing), keeping at most `capacity`
    /// files open.
    pub(crate) fn new(ttl: Duration, capacity: usize) -> FileCache {
        let notifier = if ttl.is_zero() {
            None
        } else {
            sys::Notifier::new().map(Arc::new)
        };
        FileCache {
            ttl,
            capacity,
            settled: SETTLED,
            state: Mutex::new(State {
                notifier: notifier.clone(),
                ..State::default()
            }),
            notifier,
            counters: None,
        }
    }

    /// Counts each lookup (while the cache is on) in `hits` when it finds the file open,
    /// in `misses` when the name has to be opened afresh.
    pub(crate) fn counting(self, hits: Counter, misses: Counter) -> FileCache {
        FileCache {
            counters: Some((hits, misses)),
            ..self
        }
    }

    /// Opens `name` beneath `root` (see [`Root::open`]), or reuses the file opened for it
    /// less than the cache's lifetime before `now`.
    pub(crate) fn open(
        &self,
        root: &Root,
        name: &str,
        resolver: Resolver,
        now: Instant,
    ) -> Result<Found, OpenError> {
        if self.ttl.is_zero() {
            return root
                .open_measured(name, resolver)
                .map(|(file, state)| Found {
                    file: Arc::new(file),
                    len: state.len,
                    response: None,
                });
        }
        if let Some((file, id, kept, check)) = self.lookup(name, now) {
            let stamp = match check {
                Check::Known(stamp) => Some(stamp),
                Check::Again => self.look_again(root, name, &file, id),
                Check::Each => still_leads_to(root, name, id),
            };
            match stamp {
                Some(stamp) => {
                    if let Some((hits, _)) = &self.counters {
                        hits.inc();
                    }
                    let response = match kept {
                        Some((at, response)) if at == stamp => Some(response),
                        outdated => self.keep_response(name, &file, stamp, outdated.is_some()),
                    };
                    return Ok(Found {
                        file,
                        len: stamp.len,
                        response,
                    });
                }
                None => self.lock().remove(name),
            }
        }
        if let Some((_, misses)) = &self.counters {
            misses.inc();
        }
        let (file, state) = match root.open_measured(name, resolver) {
            // Out of descriptors: the cache gives way before a request is refused. Files in
            // transfers keep theirs; the others close now.
            Err(OpenError::Io(e)) if sys::out_of_descriptors(&e) && self.clear() > 0 => {
                root.open_measured(name, resolver)?
            }
            result => result?,
        };
        let file = Arc::new(file);
        if state.len <= MAX_CACHED_SIZE {
            self.insert(root, name, file.clone(), state.id, now);
        }
        Ok(Found {
            file,
            len: state.len,
            response: None,
        })
    }

    /// Closes the files whose time is up, so that a deleted file's space is freed and its
    /// descriptor returned even when its name is never asked for again.
    pub(crate) fn sweep(&self, now: Instant) {
        let ttl = self.ttl;
        self.lock()
            .retain(|e| now.saturating_duration_since(e.opened) < ttl);
    }

    /// Closes every file kept open; returns how many entries there were.
    fn clear(&self) -> usize {
        let mut state = self.lock();
        let n = state.entries.len();
        state.retain(|_| false);
        n
    }

    /// How long entries live (zero: no caching).
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lookup(&self, name: &str, now: Instant) -> Option<(Arc<File>, FileId, Option<Kept>, Check)> {
        // Asked before taking the lock, which is held only for memory: notices are read and
        // applied under the lock, so none read by another request can be missed here.
        let news = self.notifier.as_ref().is_some_and(|n| n.pending());
        let mut state = self.lock();
        if news {
            state.take_notices();
        }
        let entry = state.entries.get(name)?;
        let check = match &entry.watched {
            Some(Watched {
                known: Some(stamp), ..
            }) => Check::Known(*stamp),
            Some(_) => Check::Again,
            None => Check::Each,
        };
        (now.saturating_duration_since(entry.opened) < self.ttl)
            .then(|| (entry.file.clone(), entry.id, entry.response.clone(), check))
    }

    /// Looks `name` up again after a notice about its file, with the lock held so that no
    /// notice can be taken meanwhile: if it still leads to `file`, the state found is known
    /// until the next notice.
    fn look_again(&self, root: &Root, name: &str, file: &Arc<File>, id: FileId) -> Option<Stamp> {
        let mut state = self.lock();
        state.take_notices();
        let stamp = still_leads_to(root, name, id)?;
        if let Some(entry) = state.entries.get_mut(name) {
            if let (true, Some(watched)) = (Arc::ptr_eq(&entry.file, file), &mut entry.watched) {
                watched.known = Some(stamp);
            }
        }
        Some(stamp)
    }

    fn insert(&self, root: &Root, name: &str, file: Arc<File>, id: FileId, now: Instant) {
        let mut state = self.lock();
        if state.entries.len() >= self.capacity && !state.entries.contains_key(name) {
            let ttl = self.ttl;
            state.retain(|e| now.saturating_duration_since(e.opened) < ttl);
            if state.entries.len() >= self.capacity {
                return;
            }
        }
        // Notices about a file this name led to before are of no use now.
        state.take_notices();
        let watched = state.watch(root, name, &file, id);
        let old = state.entries.insert(
            name.into(),
            Entry {
                file,
                id,
                opened: now,
                response: None,
                watched,
            },
        );
        state.forget(old);
    }

    /// Reads the whole response of a file that has settled (see [`SETTLED`]) and keeps it
    /// with its entry, in place of the outdated one it may hold (`outdated`), if the memory
    /// budget allows. `None` when there is none to send (the entry then holds none either).
    fn keep_response(
        &self,
        name: &str,
        file: &Arc<File>,
        stamp: Stamp,
        outdated: bool,
    ) -> Option<Arc<[u8]>> {
        let len = usize::try_from(stamp.len).unwrap_or(usize::MAX);
        let wanted = stamp.len <= MAX_CACHED_SIZE
            && stamp.settled(SystemTime::now(), self.settled)
            && self.lock().response_bytes + RESPONSE_HEADER_LEN + len <= RESPONSE_BUDGET;
        let response = if wanted {
            read_response(file, len)
        } else {
            None
        };
        if response.is_none() && !outdated {
            // Nothing to keep and nothing to drop: spare the lock (a file changing often is
            // asked for here at every request).
            return None;
        }
        let mut state = self.lock();
        let budget = RESPONSE_BUDGET.saturating_sub(state.response_bytes);
        let Some(entry) = state.entries.get_mut(name) else {
            return response;
        };
        // Another request may have reopened the name meanwhile: this file is not its file.
        if !Arc::ptr_eq(&entry.file, file) {
            return response;
        }
        let freed = entry.response.take().map_or(0, |(_, r)| r.len());
        let kept = response.clone().filter(|r| r.len() <= budget + freed);
        let added = kept.as_ref().map_or(0, |r| r.len());
        entry.response = kept.map(|r| (stamp, r));
        state.response_bytes = state.response_bytes - freed + added;
        response
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after any panic (each change completes under the lock
        // without calls that can panic between its steps).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    #[cfg(test)]
    fn response_bytes(&self) -> usize {
        self.lock().response_bytes
    }
}

impl State {
    fn remove(&mut self, name: &str) {
        let old = self.entries.remove(name);
        self.forget(old);
    }

    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let gone: Vec<Box<str>> = self
            .entries
            .iter()
            .filter(|(_, e)| !keep(e))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.remove(&name);
        }
    }

    /// Accounts for an entry that left the map, and gives up the watches it relied on.
    fn forget(&mut self, old: Option<Entry>) {
        let Some(old) = old else { return };
        if let Some((_, r)) = old.response {
            self.response_bytes -= r.len();
        }
        if let Some(watched) = old.watched {
            let sys::Placed { file, dirs } = watched.placed;
            for wd in std::iter::once(file).chain(dirs.into_iter().map(|(wd, _)| wd)) {
                self.release(wd);
            }
        }
    }

    /// One entry fewer relies on the watch `wd`; the last one removes it.
    fn release(&mut self, wd: i32) {
        let Some(uses) = self.uses.get_mut(&wd) else {
            return;
        };
        *uses -= 1;
        if *uses == 0 {
            self.uses.remove(&wd);
            if let Some(notifier) = &self.notifier {
                notifier.unwatch(wd);
            }
        }
    }

    /// Places the watches for `name`, which leads to `file` (`id`), if notices are on; `None`
    /// when they cannot be placed (the name is then looked up at each request).
    fn watch(&mut self, root: &Root, name: &str, file: &File, id: FileId) -> Option<Watched> {
        let notifier = self.notifier.as_ref()?;
        let placed = root.watch(notifier, name, file, id);
        let wds = match &placed {
            Ok((placed, _)) => std::iter::once(placed.file)
                .chain(placed.dirs.iter().map(|(wd, _)| *wd))
                .collect(),
            Err(added) => added.clone(),
        };
        for wd in wds {
            *self.uses.entry(wd).or_insert(0) += 1;
        }
        match placed {
            Ok((placed, now)) => Some(Watched {
                placed,
                known: Some(Stamp {
                    len: now.len,
                    modified: now.modified,
                    changed: now.changed,
                }),
            }),
            Err(added) => {
                for wd in added {
                    self.release(wd);
                }
                None
            }
        }
    }

    /// Applies the queued notices: an entry whose file changed is looked up again before its
    /// next use; one whose name may lead elsewhere now is dropped.
    fn take_notices(&mut self) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let mut notices = Vec::new();
        notifier.take(|n| notices.push(n));
        let mut dropped = Vec::new();
        for notice in notices {
            if let sys::Notice::Gone(wd) = notice {
                // Removed by the kernel: nothing to remove any more.
                self.uses.remove(&wd);
            }
            for (name, entry) in &mut self.entries {
                let Some(watched) = &mut entry.watched else {
                    continue;
                };
                match affects(&notice, &watched.placed) {
                    Effect::None => {}
                    Effect::LookAgain => watched.known = None,
                    Effect::Drop => dropped.push(name.clone()),
                }
            }
        }
        for name in dropped {
            self.remove(&name);
        }
    }
}

/// What a notice means for an entry.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    None,
    /// Its file changed: look the name up again.
    LookAgain,
    /// Its name may lead elsewhere now (or its watches are gone): drop it.
    Drop,
}

fn affects(notice: &sys::Notice, placed: &sys::Placed) -> Effect {
    let on_path = |wd: i32| placed.dirs.iter().any(|(w, _)| *w == wd);
    match notice {
        sys::Notice::Lost => Effect::Drop,
        sys::Notice::Gone(wd) if *wd == placed.file || on_path(*wd) => Effect::Drop,
        sys::Notice::Changed { wd, .. } if *wd == placed.file => Effect::LookAgain,
        sys::Notice::Changed { wd, name } => {
            let hit = placed
                .dirs
                .iter()
                .any(|(w, entry)| *w == *wd && name.as_deref().is_none_or(|n| n == &**entry));
            if hit {
                Effect::Drop
            } else {
                Effect::None
            }
        }
        sys::Notice::Gone(_) => Effect::None,
    }
}

/// The response for a file of `len` bytes: its header and all of its data, or `None` if the
/// file does not hold exactly `len` bytes now (it is changing; it will be read afresh).
fn read_response(file: &File, len: usize) -> Option<Arc<[u8]>> {
    let header = ResponseHeader::Found(u32::try_from(len).ok()?).encode();
    let mut buf = vec![0u8; RESPONSE_HEADER_LEN + len + 1];
    buf[..RESPONSE_HEADER_LEN].copy_from_slice(&header);
    let mut got = 0;
    // One byte more than expected shows a file that grew.
    while got < len + 1 {
        match sys::read_at(file, &mut buf[RESPONSE_HEADER_LEN + got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    if got != len {
        return None;
    }
    buf.truncate(RESPONSE_HEADER_LEN + len);
    Some(buf.into())
}

/// The file's size and times if `name` still leads to it (the file `id` names) from the
/// root, and it is still a regular file: one `stat` by name, which notices at once a file
/// deleted, renamed away or replaced by a rename, even when another hard link keeps it alive.
fn still_leads_to(root: &Root, name: &str, id: FileId) -> Option<Stamp> {
    let state = root.name_state(name).ok()?;
    (state.id == id && state.regular && state.linked).then_some(Stamp {
        len: state.len,
        modified: state.modified,
        changed: state.changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(file: &File) -> Vec<u8> {
        let mut out = Vec::new();
        (&*file).read_to_end(&mut out).unwrap();
        out
    }

    impl FileCache {
        fn new_for_tests(ttl: Duration) -> FileCache {
            FileCache::new(ttl, CAPACITY)
        }

        /// Without change notices, as on systems that have none: each name is looked up at
        /// each request.
        fn without_notices(mut self) -> FileCache {
            self.lock().notifier = None;
            self.notifier = None;
            self
        }

        /// How the entry for `name` is checked: "known", "again" or "each".
        #[cfg(target_os = "linux")]
        fn check_of(&self, name: &str) -> &'static str {
            match self.lock().entries.get(name).map(|e| &e.watched) {
                Some(Some(Watched { known: Some(_), .. })) => "known",
                Some(Some(_)) => "again",
                Some(None) => "each",
                None => "none",
            }
        }
    }

    /// The caches each exactness test runs with: with change notices where the system has
    /// them, and without.
    fn both(make: fn(Duration) -> FileCache, ttl: Duration) -> [FileCache; 2] {
        [make(ttl), make(ttl).without_notices()]
    }

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    /// A cache that keeps the response of any file, however recently changed.
    #[cfg(unix)]
    fn eager(ttl: Duration) -> FileCache {
        FileCache {
            settled: Duration::ZERO,
            ..FileCache::new(ttl, CAPACITY)
        }
    }

    fn response_for(data: &[u8]) -> Vec<u8> {
        let mut r = ResponseHeader::Found(data.len() as u32).encode().to_vec();
        r.extend_from_slice(data);
        r
    }

    /// Overwrites the start of the file at `path` with `data`: same inode, size kept if
    /// `data` is no longer.
    #[cfg(unix)]
    fn rewrite_in_place(path: &std::path::Path, data: &[u8]) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, data))
            .unwrap();
    }

    /// Past the granularity of the file system's timestamps, so a change made now gets a
    /// change time unlike one made before.
    #[cfg(unix)]
    fn next_tick() {
        std::thread::sleep(Duration::from_millis(50));
    }

    // Unix only: reuse needs the name looked up by `stat`, which Windows lacks (there the
    // server keeps no file open between requests: see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn reuses_the_open_file_within_its_lifetime() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
        let t = Instant::now();
        let first = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!(first.len, 3);
        let second = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert!(Arc::ptr_eq(&first.file, &second.file));
        // Past its lifetime the name is resolved again.
        let later = t + Duration::from_secs(61);
        let third = cache.open(&root, "a", Resolver::Native, later).unwrap();
        assert!(!Arc::ptr_eq(&first.file, &third.file));
    }

    #[test]
    fn size_is_measured_at_each_request() {
        for cache in both(FileCache::new_for_tests, Duration::from_secs(60)) {
            let (dir, root) = setup();
            let path = dir.path().join("grows");
            std::fs::write(&path, b"12").unwrap();
            let t = Instant::now();
            assert_eq!(
                cache.open(&root, "grows", Resolver::Native, t).unwrap().len,
                2
            );
            std::fs::write(&path, b"12345").unwrap();
            let found = cache.open(&root, "grows", Resolver::Native, t).unwrap();
            assert_eq!(found.len, 5);
            assert_eq!(read_all(&found.file), b"12345");
        }
    }

    // Windows refuses a rename over a file any handle holds open (so the server never keeps
    // files open there; see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn deleted_or_replaced_files_are_noticed_at_once() {
        for cache in both(FileCache::new_for_tests, Duration::from_secs(60)) {
            let (dir, root) = setup();
            let path = dir.path().join("f");
            std::fs::write(&path, b"old").unwrap();
            let t = Instant::now();
            cache.open(&root, "f", Resolver::Native, t).unwrap();
            // Replaced by a rename: the new content is served.
            std::fs::write(dir.path().join("f.new"), b"new!").unwrap();
            std::fs::rename(dir.path().join("f.new"), &path).unwrap();
            let found = cache.open(&root, "f", Resolver::Native, t).unwrap();
            assert_eq!((found.len, read_all(&found.file)), (4, b"new!".to_vec()));
            // Deleted: not found.
            std::fs::remove_file(&path).unwrap();
            let err = cache.open(&root, "f", Resolver::Native, t).unwrap_err();
            assert!(matches!(err, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
            assert_eq!(cache.len(), 0);
        }
    }

    /// A file that another hard link keeps alive (its link count stays above zero): the
    /// name is still checked at every request, so a deletion, a rename away or a rename over
    /// the name is noticed at once.
    #[cfg(unix)]
    #[test]
    fn a_name_that_no_longer_leads_to_the_file_is_noticed_with_other_links() {
        for cache in both(FileCache::new_for_tests, Duration::from_secs(60)) {
            let (dir, root) = setup();
            let elsewhere = tempfile::tempdir().unwrap();
            let path = dir.path().join("report.txt");

            let t = Instant::now();
            let keep_alive = |n: usize| {
                let other = elsewhere.path().join(format!("link{n}"));
                std::fs::hard_link(&path, other).unwrap();
            };

            std::fs::write(&path, b"old").unwrap();
            keep_alive(0);
            cache
                .open(&root, "report.txt", Resolver::Native, t)
                .unwrap();
            std::fs::remove_file(&path).unwrap();
            let err = cache
                .open(&root, "report.txt", Resolver::Native, t)
                .unwrap_err();
            assert!(matches!(err, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));

            std::fs::write(&path, b"old").unwrap();
            keep_alive(1);
            cache
                .open(&root, "report.txt", Resolver::Native, t)
                .unwrap();
            std::fs::write(dir.path().join("new"), b"new!").unwrap();
            std::fs::rename(dir.path().join("new"), &path).unwrap();
            let found = cache
                .open(&root, "report.txt", Resolver::Native, t)
                .unwrap();
            assert_eq!((found.len, read_all(&found.file)), (4, b"new!".to_vec()));

            keep_alive(2);
            std::fs::rename(&path, dir.path().join("moved.txt")).unwrap();
            let err = cache
                .open(&root, "report.txt", Resolver::Native, t)
                .unwrap_err();
            assert!(matches!(err, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
        }
    }

    #[test]
    fn large_files_and_failures_are_not_kept() {
        let (dir, root) = setup();
        std::fs::write(
            dir.path().join("big"),
            vec![0u8; MAX_CACHED_SIZE as usize + 1],
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
        let t = Instant::now();
        cache.open(&root, "big", Resolver::Native, t).unwrap();
        assert!(cache.open(&root, "missing", Resolver::Native, t).is_err());
        assert!(matches!(
            cache.open(&root, "d", Resolver::Native, t),
            Err(OpenError::NotRegular)
        ));
        assert_eq!(cache.len(), 0);
    }

    // Unix only, as reuse is (see above).
    #[cfg(unix)]
    #[test]
    fn hits_and_misses_are_counted() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let (hits, misses) = (Counter::default(), Counter::default());
        let cache = FileCache::new_for_tests(Duration::from_secs(60))
            .counting(hits.clone(), misses.clone());
        let t = Instant::now();
        cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!((hits.get(), misses.get()), (0, 1));
        cache.open(&root, "a", Resolver::Native, t).unwrap();
        cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!((hits.get(), misses.get()), (2, 1));
        // A name that does not lead to a file, a file replaced, an entry past its time: misses.
        assert!(cache.open(&root, "missing", Resolver::Native, t).is_err());
        std::fs::write(dir.path().join("a.new"), b"two").unwrap();
        std::fs::rename(dir.path().join("a.new"), dir.path().join("a")).unwrap();
        cache.open(&root, "a", Resolver::Native, t).unwrap();
        let later = t + Duration::from_secs(61);
        cache.open(&root, "a", Resolver::Native, later).unwrap();
        assert_eq!((hits.get(), misses.get()), (2, 4));

        // With the cache off nothing is counted.
        let (hits, misses) = (Counter::<u64>::default(), Counter::<u64>::default());
        let off = FileCache::new_for_tests(Duration::ZERO).counting(hits.clone(), misses.clone());
        off.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!((hits.get(), misses.get()), (0, 0));
    }

    #[test]
    fn zero_lifetime_caches_nothing() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let cache = FileCache::new_for_tests(Duration::ZERO);
        let t = Instant::now();
        let a = cache.open(&root, "a", Resolver::Native, t).unwrap();
        let b = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert!(!Arc::ptr_eq(&a.file, &b.file));
        assert!(b.response.is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn sweep_closes_expired_files_and_capacity_is_bounded() {
        let (dir, root) = setup();
        let cache = FileCache::new_for_tests(Duration::from_secs(10));
        let t = Instant::now();
        for i in 0..CAPACITY + 50 {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), b"x").unwrap();
            cache.open(&root, &name, Resolver::Portable, t).unwrap();
        }
        assert_eq!(cache.len(), CAPACITY);
        cache.sweep(t + Duration::from_secs(5));
        assert_eq!(cache.len(), CAPACITY);
        cache.sweep(t + Duration::from_secs(10));
        assert_eq!(cache.len(), 0);
    }

    // Unix only: reuse needs the name looked up by `stat`, which Windows lacks (there the
    // server keeps no file open between requests: see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn a_settled_file_is_answered_from_memory() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"hello").unwrap();
        let cache = eager(Duration::from_secs(60));
        let t = Instant::now();
        // The first request opens the file; the next one reads and keeps its response.
        assert!(cache
            .open(&root, "a", Resolver::Native, t)
            .unwrap()
            .response
            .is_none());
        let second = cache.open(&root, "a", Resolver::Native, t).unwrap();
        let kept = second.response.expect("response kept");
        assert_eq!(&kept[..], &response_for(b"hello")[..]);
        assert_eq!(cache.response_bytes(), kept.len());
        let third = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert!(Arc::ptr_eq(&kept, third.response.as_ref().unwrap()));
        // Gone with its entry.
        cache.sweep(t + Duration::from_secs(60));
        assert_eq!((cache.len(), cache.response_bytes()), (0, 0));
    }

    // Unix only: reuse needs the name looked up by `stat`, which Windows lacks (there the
    // server keeps no file open between requests: see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn a_kept_response_follows_changes_of_the_same_size() {
        for cache in both(eager, Duration::from_secs(60)) {
            let (dir, root) = setup();
            let path = dir.path().join("a");
            std::fs::write(&path, b"one").unwrap();
            let t = Instant::now();
            cache.open(&root, "a", Resolver::Native, t).unwrap();
            let before = cache.open(&root, "a", Resolver::Native, t).unwrap();
            assert_eq!(&before.response.unwrap()[..], &response_for(b"one")[..]);
            next_tick();
            // Rewritten in place, same inode and same size.
            rewrite_in_place(&path, b"two");
            let after = cache.open(&root, "a", Resolver::Native, t).unwrap();
            assert!(Arc::ptr_eq(&before.file, &after.file));
            assert_eq!(&after.response.unwrap()[..], &response_for(b"two")[..]);
            assert_eq!(cache.response_bytes(), response_for(b"two").len());
            // Grown: the response is re-read at the new size.
            next_tick();
            std::fs::write(&path, b"three").unwrap();
            let grown = cache.open(&root, "a", Resolver::Native, t).unwrap();
            assert_eq!(grown.len, 5);
            assert_eq!(&grown.response.unwrap()[..], &response_for(b"three")[..]);
            assert_eq!(cache.response_bytes(), response_for(b"three").len());
        }
    }

    /// A change that the file's times do not show (a second write through a shared memory
    /// mapping to a page already dirty) is not seen while the entry lives: it is seen once
    /// the entry's lifetime is over, which bounds how long a kept response can be stale.
    // Unix only: Windows keeps no file open between requests (see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn a_change_the_times_do_not_show_lasts_at_most_the_lifetime() {
        let (dir, root) = setup();
        let path = dir.path().join("a");
        std::fs::write(&path, b"one").unwrap();
        let ttl = Duration::from_secs(60);
        let cache = eager(ttl);
        let t = Instant::now();
        cache.open(&root, "a", Resolver::Native, t).unwrap();
        let kept = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!(&kept.response.unwrap()[..], &response_for(b"one")[..]);
        next_tick();
        rewrite_in_place(&path, b"two");
        // Make the kept response's record match the file as it is now, as if the write had
        // left the times alone.
        let now = root.name_state("a").unwrap();
        let stamp = Stamp {
            len: now.len,
            modified: now.modified,
            changed: now.changed,
        };
        if let Some(entry) = cache.lock().entries.get_mut("a") {
            entry.response.as_mut().unwrap().0 = stamp;
        }
        let stale = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!(&stale.response.unwrap()[..], &response_for(b"one")[..]);
        // Past the lifetime, the name is opened afresh and the file read as it is.
        let later = t + ttl;
        let fresh = cache.open(&root, "a", Resolver::Native, later).unwrap();
        assert!(fresh.response.is_none());
        assert_eq!(read_all(&fresh.file), b"two");
    }

    #[test]
    fn a_recently_changed_file_is_read_at_every_request() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("fresh"), b"just written").unwrap();
        // The real settling period: a file written a moment ago is never kept in memory.
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
        let t = Instant::now();
        for _ in 0..3 {
            let found = cache.open(&root, "fresh", Resolver::Native, t).unwrap();
            assert!(found.response.is_none());
            // Positioned reads, as the server makes: the file is shared.
            let now = read_response(&found.file, found.len as usize).unwrap();
            assert_eq!(&now[..], &response_for(b"just written")[..]);
        }
        assert_eq!((cache.len(), cache.response_bytes()), (1, 0));
    }

    // Unix only: reuse needs the name looked up by `stat`, which Windows lacks (there the
    // server keeps no file open between requests: see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn kept_responses_stay_within_the_memory_budget() {
        let (dir, root) = setup();
        let size = MAX_CACHED_SIZE as usize;
        let files = RESPONSE_BUDGET / size + 8;
        let cache = eager(Duration::from_secs(60));
        let t = Instant::now();
        let mut kept = 0;
        for i in 0..files {
            let name = format!("f{i}");
            std::fs::write(dir.path().join(&name), vec![i as u8; size]).unwrap();
            cache.open(&root, &name, Resolver::Native, t).unwrap();
            let found = cache.open(&root, &name, Resolver::Native, t).unwrap();
            // Past the budget the file is still served, read from the file.
            assert_eq!(found.len, size as u64);
            if found.response.is_some() {
                kept += 1;
            }
            assert!(cache.response_bytes() <= RESPONSE_BUDGET);
        }
        assert!(kept > 0 && kept < files, "{kept} of {files} kept");
        assert_eq!(cache.response_bytes(), kept * (RESPONSE_HEADER_LEN + size));
        cache.sweep(t + Duration::from_secs(60));
        assert_eq!(cache.response_bytes(), 0);
    }

    #[test]
    fn a_file_that_is_not_its_measured_size_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"12345").unwrap();
        let file = File::open(&path).unwrap();
        assert_eq!(
            read_response(&file, 5).as_deref(),
            Some(&response_for(b"12345")[..])
        );
        // Measured at 4 or 6 bytes, but holding 5: changing under the reader.
        assert!(read_response(&file, 4).is_none());
        assert!(read_response(&file, 6).is_none());
    }

    /// Where the system has change notices, a name is watched once opened and used without
    /// a lookup until a notice comes; a name with a symbolic link on the way is looked up at
    /// each request instead; the watches go with their entries.
    #[cfg(target_os = "linux")]
    #[test]
    fn names_are_watched_where_they_can_be() {
        let (dir, root) = setup();
        let d = dir.path();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/f"), b"one").unwrap();
        std::os::unix::fs::symlink("sub", d.join("link")).unwrap();
        std::os::unix::fs::symlink("f", d.join("sub/alias")).unwrap();
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
        let t = Instant::now();
        for name in ["sub/f", "link/f", "sub/alias"] {
            cache.open(&root, name, Resolver::Native, t).unwrap();
        }
        assert_eq!(cache.check_of("sub/f"), "known");
        assert_eq!(cache.check_of("link/f"), "each");
        assert_eq!(cache.check_of("sub/alias"), "each");
        // The file changed: looked up again at the next request, then known again.
        rewrite_in_place(&d.join("sub/f"), b"two");
        cache.lock().take_notices();
        assert_eq!(cache.check_of("sub/f"), "again");
        let found = cache.open(&root, "sub/f", Resolver::Native, t).unwrap();
        assert_eq!((found.len, read_all(&found.file)), (3, b"two".to_vec()));
        assert_eq!(cache.check_of("sub/f"), "known");
        // A change elsewhere in a watched directory leaves the entry alone.
        std::fs::write(d.join("sub/unrelated"), b"x").unwrap();
        cache.lock().take_notices();
        assert_eq!(cache.check_of("sub/f"), "known");
        assert!(!cache.lock().uses.is_empty());
        cache.sweep(t + Duration::from_secs(60));
        assert_eq!(cache.len(), 0);
        assert!(cache.lock().uses.is_empty());
    }

    /// A directory on the way replaced by another, or swapped for a symbolic link, is
    /// noticed at once, and so is the file's removal.
    #[cfg(unix)]
    #[test]
    fn a_directory_on_the_way_that_changes_is_noticed_at_once() {
        for cache in both(FileCache::new_for_tests, Duration::from_secs(60)) {
            let (dir, root) = setup();
            let d = dir.path();
            std::fs::create_dir_all(d.join("a/b")).unwrap();
            std::fs::write(d.join("a/b/f"), b"one").unwrap();
            let t = Instant::now();
            assert_eq!(
                cache.open(&root, "a/b/f", Resolver::Native, t).unwrap().len,
                3
            );
            let opened = cache.open(&root, "a/b/f", Resolver::Native, t).unwrap();
            assert_eq!(read_all(&opened.file), b"one");
            // The first directory replaced by another holding a file of the same name.
            std::fs::create_dir_all(d.join("new/b")).unwrap();
            std::fs::write(d.join("new/b/f"), b"two!").unwrap();
            std::fs::rename(d.join("a"), d.join("old")).unwrap();
            std::fs::rename(d.join("new"), d.join("a")).unwrap();
            let found = cache.open(&root, "a/b/f", Resolver::Native, t).unwrap();
            assert_eq!((found.len, read_all(&found.file)), (4, b"two!".to_vec()));
            // The innermost directory swapped for a symbolic link to another.
            std::fs::create_dir_all(d.join("other")).unwrap();
            std::fs::write(d.join("other/f"), b"three").unwrap();
            std::fs::rename(d.join("a/b"), d.join("a/b.old")).unwrap();
            std::os::unix::fs::symlink("../other", d.join("a/b")).unwrap();
            let found = cache.open(&root, "a/b/f", Resolver::Native, t).unwrap();
            assert_eq!((found.len, read_all(&found.file)), (5, b"three".to_vec()));
            std::fs::remove_file(d.join("other/f")).unwrap();
            let err = cache.open(&root, "a/b/f", Resolver::Native, t).unwrap_err();
            assert!(matches!(err, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
        }
    }

    #[test]
    fn each_notice_has_its_effect() {
        let placed = sys::Placed {
            file: 1,
            dirs: vec![(2, "a".into()), (3, "f".into())],
        };
        let changed = |wd: i32, name: Option<&str>| sys::Notice::Changed {
            wd,
            name: name.map(Into::into),
        };
        let cases = [
            (sys::Notice::Lost, Effect::Drop),
            (sys::Notice::Gone(1), Effect::Drop),
            (sys::Notice::Gone(3), Effect::Drop),
            (sys::Notice::Gone(9), Effect::None),
            (changed(1, None), Effect::LookAgain),
            (changed(2, Some("a")), Effect::Drop),
            (changed(2, Some("f")), Effect::None),
            (changed(3, Some("f")), Effect::Drop),
            (changed(3, Some("g")), Effect::None),
            (changed(3, None), Effect::Drop),
            (changed(9, Some("a")), Effect::None),
        ];
        for (notice, effect) in cases {
            assert_eq!(affects(&notice, &placed), effect, "{notice:?}");
        }
    }
}
