//! The server's open-file cache: small files opened for one request are kept open for a short
//! while and reused for the next requests of the same name, saving the path resolution and
//! the open and close of every request for a popular file.
//!
//! What stays exact: at each request the name is looked up again with one `stat` (from the
//! root's descriptor), and the cached file is used only while the name still leads to it
//! (same device and inode), so a file deleted, renamed away or replaced by a rename is
//! noticed at once, even when another hard link keeps it alive, and so is a symbolic link
//! pointed elsewhere; the size announced comes from that same `stat`, so a file grown or
//! truncated in place is announced as it is now. What may lag by up to the cache's lifetime:
//! a permission change. Every file in the cache was opened beneath the root, and a name that
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
    /// The metrics' counters of hits and misses, if there are metrics.
    counters: Option<(Counter, Counter)>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Box<str>, Entry>,
    /// Bytes of the responses held by `entries`.
    response_bytes: usize,
}

#[derive(Debug)]
struct Entry {
    file: Arc<File>,
    /// Which file it is (device and inode), to tell whether the name still leads to it.
    id: FileId,
    opened: Instant,
    response: Option<Kept>,
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
        FileCache {
            ttl,
            capacity,
            settled: SETTLED,
            state: Mutex::new(State::default()),
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
        if let Some((file, id, kept)) = self.lookup(name, now) {
            match still_leads_to(root, name, id) {
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
            self.insert(name, file.clone(), state.id, now);
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

    fn lookup(&self, name: &str, now: Instant) -> Option<(Arc<File>, FileId, Option<Kept>)> {
        let state = self.lock();
        let entry = state.entries.get(name)?;
        (now.saturating_duration_since(entry.opened) < self.ttl)
            .then(|| (entry.file.clone(), entry.id, entry.response.clone()))
    }

    fn insert(&self, name: &str, file: Arc<File>, id: FileId, now: Instant) {
        let mut state = self.lock();
        if state.entries.len() >= self.capacity && !state.entries.contains_key(name) {
            let ttl = self.ttl;
            state.retain(|e| now.saturating_duration_since(e.opened) < ttl);
            if state.entries.len() >= self.capacity {
                return;
            }
        }
        let old = state.entries.insert(
            name.into(),
            Entry {
                file,
                id,
                opened: now,
                response: None,
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
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                freed += e.response.as_ref().map_or(0, |(_, r)| r.len());
            }
            kept
        });
        self.response_bytes -= freed;
    }

    /// Accounts for an entry that left the map.
    fn forget(&mut self, old: Option<Entry>) {
        if let Some((_, r)) = old.and_then(|e| e.response) {
            self.response_bytes -= r.len();
        }
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
        let (dir, root) = setup();
        let path = dir.path().join("grows");
        std::fs::write(&path, b"12").unwrap();
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
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

    // Windows refuses a rename over a file any handle holds open (so the server never keeps
    // files open there; see sys::CAN_REPLACE_OPEN_FILES).
    #[cfg(unix)]
    #[test]
    fn deleted_or_replaced_files_are_noticed_at_once() {
        let (dir, root) = setup();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
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

    /// A file that another hard link keeps alive (its link count stays above zero): the
    /// name is still checked at every request, so a deletion, a rename away or a rename over
    /// the name is noticed at once.
    #[cfg(unix)]
    #[test]
    fn a_name_that_no_longer_leads_to_the_file_is_noticed_with_other_links() {
        let (dir, root) = setup();
        let elsewhere = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.txt");
        let cache = FileCache::new_for_tests(Duration::from_secs(60));
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
        let (dir, root) = setup();
        let path = dir.path().join("a");
        std::fs::write(&path, b"one").unwrap();
        let cache = eager(Duration::from_secs(60));
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
}
