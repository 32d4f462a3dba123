//! The server's open-file cache: small files opened for one request are kept open for a short
//! while and reused for the next requests of the same name, saving the path resolution and
//! the open and close of every request for a popular file.
//!
//! What stays exact: the size announced comes from an `fstat` of the open file at each
//! request, so a file grown or truncated in place is announced as it is now; a file deleted
//! or replaced by a rename (its link count drops to zero) is noticed at once and the name
//! resolved afresh. What may lag by up to the cache's lifetime: a file renamed away or
//! hard-linked elsewhere and then unlinked, a permission change, or a symbolic link pointed
//! elsewhere. Every file in the cache was opened beneath the root, so the lag never serves
//! anything from outside it.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::confine::{OpenError, Resolver, Root};

/// Files up to this size are kept (larger ones are opened for each request: their transfer
/// costs far more than the open).
pub(crate) const MAX_CACHED_SIZE: u64 = 64 * 1024;
/// Most files kept open at once.
const CAPACITY: usize = 1024;

/// A map from requested name to an open file, each entry reused for `ttl` after opening.
#[derive(Debug)]
pub(crate) struct FileCache {
    ttl: Duration,
    entries: Mutex<HashMap<Box<str>, Entry>>,
}

#[derive(Debug)]
struct Entry {
    file: Arc<File>,
    opened: Instant,
}

impl FileCache {
    /// A cache whose entries live `ttl`; a zero `ttl` caches nothing.
    pub(crate) fn new(ttl: Duration) -> FileCache {
        FileCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Opens `name` beneath `root` (see [`Root::open`]), or reuses the file opened for it
    /// less than the cache's lifetime before `now`. Returns the file and its current size.
    pub(crate) fn open(
        &self,
        root: &Root,
        name: &str,
        resolver: Resolver,
        now: Instant,
    ) -> Result<(Arc<File>, u64), OpenError> {
        if self.ttl.is_zero() {
            return root
                .open_measured(name, resolver)
                .map(|(file, len)| (Arc::new(file), len));
        }
        if let Some(file) = self.lookup(name, now) {
            match still_linked(&file) {
                Some(len) => return Ok((file, len)),
                None => {
                    self.lock().remove(name);
                }
            }
        }
        let (file, len) = root.open_measured(name, resolver)?;
        let file = Arc::new(file);
        if len <= MAX_CACHED_SIZE {
            self.insert(name, file.clone(), now);
        }
        Ok((file, len))
    }

    /// Closes the files whose time is up, so that a deleted file's space is freed and its
    /// descriptor returned even when its name is never asked for again.
    pub(crate) fn sweep(&self, now: Instant) {
        let ttl = self.ttl;
        self.lock()
            .retain(|_, e| now.saturating_duration_since(e.opened) < ttl);
    }

    /// How long entries live (zero: no caching).
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lookup(&self, name: &str, now: Instant) -> Option<Arc<File>> {
        let entries = self.lock();
        let entry = entries.get(name)?;
        (now.saturating_duration_since(entry.opened) < self.ttl).then(|| entry.file.clone())
    }

    fn insert(&self, name: &str, file: Arc<File>, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(name) {
            let ttl = self.ttl;
            entries.retain(|_, e| now.saturating_duration_since(e.opened) < ttl);
            if entries.len() >= CAPACITY {
                return;
            }
        }
        entries.insert(name.into(), Entry { file, opened: now });
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Entry>> {
        // The map is consistent after any panic (each change is a single call).
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The file's size if it is still a regular file linked into the tree somewhere.
#[cfg(unix)]
fn still_linked(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata().ok()?;
    (meta.nlink() > 0 && meta.is_file()).then_some(meta.len())
}

/// Without link counts, a cached file cannot be told from a deleted one: never reuse.
#[cfg(not(unix))]
fn still_linked(_file: &File) -> Option<u64> {
    None
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Read;

    fn read_all(file: &File) -> Vec<u8> {
        let mut out = Vec::new();
        (&*file).read_to_end(&mut out).unwrap();
        out
    }

    fn setup() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn reuses_the_open_file_within_its_lifetime() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"one").unwrap();
        let cache = FileCache::new(Duration::from_secs(60));
        let t = Instant::now();
        let (first, len) = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert_eq!(len, 3);
        let (second, _) = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        // Past its lifetime the name is resolved again.
        let later = t + Duration::from_secs(61);
        let (third, _) = cache.open(&root, "a", Resolver::Native, later).unwrap();
        assert!(!Arc::ptr_eq(&first, &third));
    }

    #[test]
    fn size_is_measured_at_each_request() {
        let (dir, root) = setup();
        let path = dir.path().join("grows");
        std::fs::write(&path, b"12").unwrap();
        let cache = FileCache::new(Duration::from_secs(60));
        let t = Instant::now();
        assert_eq!(
            cache.open(&root, "grows", Resolver::Native, t).unwrap().1,
            2
        );
        std::fs::write(&path, b"12345").unwrap();
        let (file, len) = cache.open(&root, "grows", Resolver::Native, t).unwrap();
        assert_eq!(len, 5);
        assert_eq!(read_all(&file), b"12345");
    }

    #[test]
    fn deleted_or_replaced_files_are_noticed_at_once() {
        let (dir, root) = setup();
        let path = dir.path().join("f");
        std::fs::write(&path, b"old").unwrap();
        let cache = FileCache::new(Duration::from_secs(60));
        let t = Instant::now();
        cache.open(&root, "f", Resolver::Native, t).unwrap();
        // Replaced by a rename: the new content is served.
        std::fs::write(dir.path().join("f.new"), b"new!").unwrap();
        std::fs::rename(dir.path().join("f.new"), &path).unwrap();
        let (file, len) = cache.open(&root, "f", Resolver::Native, t).unwrap();
        assert_eq!((len, read_all(&file)), (4, b"new!".to_vec()));
        // Deleted: not found.
        std::fs::remove_file(&path).unwrap();
        let err = cache.open(&root, "f", Resolver::Native, t).unwrap_err();
        assert!(matches!(err, OpenError::Io(e) if e.kind() == std::io::ErrorKind::NotFound));
        assert_eq!(cache.len(), 0);
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
        let cache = FileCache::new(Duration::from_secs(60));
        let t = Instant::now();
        cache.open(&root, "big", Resolver::Native, t).unwrap();
        assert!(cache.open(&root, "missing", Resolver::Native, t).is_err());
        assert!(matches!(
            cache.open(&root, "d", Resolver::Native, t),
            Err(OpenError::NotRegular)
        ));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn zero_lifetime_caches_nothing() {
        let (dir, root) = setup();
        std::fs::write(dir.path().join("a"), b"x").unwrap();
        let cache = FileCache::new(Duration::ZERO);
        let t = Instant::now();
        let (a, _) = cache.open(&root, "a", Resolver::Native, t).unwrap();
        let (b, _) = cache.open(&root, "a", Resolver::Native, t).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn sweep_closes_expired_files_and_capacity_is_bounded() {
        let (dir, root) = setup();
        let cache = FileCache::new(Duration::from_secs(10));
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
}
