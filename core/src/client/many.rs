//! Many files from one server: [`FetchMany`] runs a [`Fetch::to_file`] for each, over its own
//! connection, at most `jobs` at a time on threads of the standard library (the client is
//! blocking I/O; no runtime is involved).

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::destination::{destination, Fetched};
use super::digest::Sha256Digest;
use super::options::FetchOptions;
use super::Fetch;
use crate::config::{check_count, JOBS, MAX_JOBS};
use crate::error::{Error, Result};

/// `(index, received, total)` for the file at `index` of the list.
type Progress<'a> = Box<dyn Fn(usize, u64, u64) -> ControlFlow<()> + Send + Sync + 'a>;
/// `(index, result)` once the file at `index` is done with.
type Done<'a> = Box<dyn Fn(usize, &Result<Fetched>) + Send + Sync + 'a>;
/// `(index, error, attempt, wait)` before a retry of the file at `index`.
type Retry<'a> = Box<dyn Fn(usize, &Error, u32, Duration) + Send + Sync + 'a>;

/// A list of files to fetch from `host:port`, several at a time.
///
/// Each file is fetched as [`Fetch::to_file`] fetches one, with the same options (time
/// limits, retries and maximum size apply to each file on its own): it lands whole under
/// its own name or not at all, and one file's failure does not stop the others.
///
/// - With more than one file, [`FetchOptions::output`] must be an existing directory, or
///   [`FetchMany::run`] fails with [`Error::InvalidOption`] before connecting.
/// - Two names that would land on the same path (the same last component, or names that
///   differ only in case on Windows and macOS, whose file names ignore case) are decided in
///   the order given: the first is fetched, each later one fails with
///   [`Error::DestinationExists`] without connecting. So no file of the list replaces
///   another, even when overwriting.
/// - Once the interrupt check ([`FetchOptionsBuilder::interrupt`]) fires, the fetches under
///   way stop and those not started fail with [`Error::Interrupted`] without connecting.
///
/// The callbacks are called from the worker threads, hence `Send + Sync`, with the index of
/// the file in the list.
///
/// ```no_run
/// use filefetch::{FetchMany, FetchOptions};
///
/// let options = FetchOptions::builder().output("downloads/").build()?;
/// let results = FetchMany::new("files.example.org", 5000)
///     .files(["a.txt", "b.txt", "logs/c.log"])
///     .options(&options)
///     .jobs(2)
///     .run()?;
/// for (name, result) in results {
///     match result {
///         Ok(fetched) => println!("{name}: {} bytes", fetched.bytes),
///         Err(e) => eprintln!("{name}: {e}"),
///     }
/// }
/// # Ok::<(), filefetch::Error>(())
/// ```
///
/// [`FetchOptionsBuilder::interrupt`]: crate::FetchOptionsBuilder::interrupt
pub struct FetchMany<'a> {
    host: &'a str,
    port: u16,
    files: Vec<(String, Option<Sha256Digest>)>,
    options: Cow<'a, FetchOptions>,
    jobs: usize,
    progress: Option<Progress<'a>>,
    on_done: Option<Done<'a>>,
    on_retry: Option<Retry<'a>>,
}

impl std::fmt::Debug for FetchMany<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchMany")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("files", &self.files)
            .field("options", &self.options)
            .field("jobs", &self.jobs)
            .finish_non_exhaustive()
    }
}

impl<'a> FetchMany<'a> {
    /// An empty list of files to fetch from `host:port`, [`JOBS`] at a time, with the
    /// default options.
    pub fn new(host: &'a str, port: u16) -> Self {
        FetchMany {
            host,
            port,
            files: Vec::new(),
            options: Cow::Owned(FetchOptions::default()),
            jobs: JOBS,
            progress: None,
            on_done: None,
            on_retry: None,
        }
    }

    /// Adds `name` to the list.
    pub fn file(mut self, name: impl Into<String>) -> Self {
        self.files.push((name.into(), None));
        self
    }

    /// Adds `name`, whose data must have the SHA-256 `digest` (see
    /// [`Fetch::expect_sha256`]).
    pub fn file_with_sha256(
        mut self,
        name: impl Into<String>,
        digest: impl Into<Sha256Digest>,
    ) -> Self {
        self.files.push((name.into(), Some(digest.into())));
        self
    }

    /// Adds each of `names`.
    pub fn files<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.files
            .extend(names.into_iter().map(|name| (name.into(), None)));
        self
    }

    /// Uses `options` for every file instead of the defaults.
    pub fn options(mut self, options: &'a FetchOptions) -> Self {
        self.options = Cow::Borrowed(options);
        self
    }

    /// Fetches at most `jobs` files at once ([`JOBS`] by default; from 1 to [`MAX_JOBS`],
    /// checked by [`FetchMany::run`]).
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs;
        self
    }

    /// Calls `progress(index, received, total)` as the data of the file at `index` arrives,
    /// as [`Fetch::progress`] does; [`ControlFlow::Break`] stops that file with
    /// [`Error::Aborted`] (the others go on).
    pub fn progress(
        mut self,
        progress: impl Fn(usize, u64, u64) -> ControlFlow<()> + Send + Sync + 'a,
    ) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// Calls `done(index, result)` once the file at `index` has landed or failed, as soon as
    /// it has: for reporting each file while the others go on.
    pub fn on_done(mut self, done: impl Fn(usize, &Result<Fetched>) + Send + Sync + 'a) -> Self {
        self.on_done = Some(Box::new(done));
        self
    }

    /// Calls `report(index, error, attempt, wait)` before each retry of the file at `index`
    /// (after the options' own [`on_retry`](crate::FetchOptionsBuilder::on_retry) hook,
    /// which does not say which file it is).
    pub fn on_retry(
        mut self,
        report: impl Fn(usize, &Error, u32, Duration) + Send + Sync + 'a,
    ) -> Self {
        self.on_retry = Some(Box::new(report));
        self
    }

    /// Fetches every file and returns each name with its outcome, in the order given.
    ///
    /// Fails as a whole, before connecting, only when the request itself is wrong: `jobs`
    /// out of range, or several files and an output path that is not a directory.
    pub fn run(self) -> Result<Vec<(String, Result<Fetched>)>> {
        check_count("jobs", self.jobs, 1, MAX_JOBS)?;
        if self.files.len() > 1 {
            if let Some(out) = self.options.output().filter(|out| !out.is_dir()) {
                return Err(Error::invalid(
                    "output",
                    format!(
                        "{} is not a directory, and several files need one",
                        out.display()
                    ),
                ));
            }
        }
        let mut outcomes: Vec<Option<Result<Fetched>>> = self.duplicates();
        for (index, outcome) in outcomes.iter().enumerate() {
            if let (Some(outcome), Some(done)) = (outcome, &self.on_done) {
                done(index, outcome);
            }
        }
        let todo: Vec<usize> = (0..self.files.len())
            .filter(|&index| outcomes[index].is_none())
            .collect();
        let results = Mutex::new(Vec::with_capacity(todo.len()));
        let next = AtomicUsize::new(0);
        let work = || {
            while let Some(&index) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                let result = self.fetch_one(index);
                if let Some(done) = &self.on_done {
                    done(index, &result);
                }
                results
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push((index, result));
            }
        };
        let workers = self.jobs.min(todo.len());
        if workers <= 1 {
            work();
        } else {
            // A panic in a callback ends the scope with that panic, once every worker ended.
            std::thread::scope(|scope| {
                for _ in 0..workers {
                    scope.spawn(work);
                }
            });
        }
        let results = results
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (index, result) in results {
            outcomes[index] = Some(result);
        }
        Ok(self
            .files
            .into_iter()
            .zip(outcomes)
            .map(|((name, _), outcome)| {
                // Every file was decided up front or fetched.
                (name, outcome.unwrap_or(Err(Error::Interrupted)))
            })
            .collect())
    }

    /// The outcomes decided before any fetch: a name whose destination an earlier name of
    /// the list already takes fails with [`Error::DestinationExists`]. (A name with no
    /// usable destination is left to its fetch, which refuses it without connecting.)
    fn duplicates(&self) -> Vec<Option<Result<Fetched>>> {
        let mut taken = HashSet::new();
        self.files
            .iter()
            .map(|(name, _)| {
                let path = destination(name, self.options.output()).ok()?;
                if taken.insert(same_file(&path)) {
                    None
                } else {
                    Some(Err(Error::DestinationExists { path }))
                }
            })
            .collect()
    }

    /// Fetches the file at `index`, unless the interrupt check has fired.
    fn fetch_one(&self, index: usize) -> Result<Fetched> {
        if self.options.interrupt().is_some_and(|check| check()) {
            return Err(Error::Interrupted);
        }
        let (name, expected) = &self.files[index];
        let mut fetch = Fetch::new(self.host, self.port, name).options(&self.options);
        if let Some(progress) = &self.progress {
            fetch = fetch.progress(move |received, total| progress(index, received, total));
        }
        if let Some(report) = &self.on_retry {
            fetch = fetch
                .report_retries(move |error, attempt, wait| report(index, error, attempt, wait));
        }
        if let Some(digest) = expected {
            fetch = fetch.expect_sha256(*digest);
        }
        fetch.to_file()
    }
}

/// What decides whether two destinations are the same file: the path itself, in lowercase
/// where file names ignore case by default.
fn same_file(path: &Path) -> PathBuf {
    if cfg!(any(windows, target_os = "macos")) {
        PathBuf::from(path.to_string_lossy().to_lowercase())
    } else {
        path.to_path_buf()
    }
}

/// Fetches each of `names` from `host:port` into a file, `jobs` at a time; see
/// [`FetchMany`].
pub fn fetch_many<S: AsRef<str>>(
    host: &str,
    port: u16,
    names: &[S],
    options: &FetchOptions,
    jobs: usize,
) -> Result<Vec<(String, Result<Fetched>)>> {
    FetchMany::new(host, port)
        .files(names.iter().map(|name| name.as_ref()))
        .options(options)
        .jobs(jobs)
        .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_as_a_whole_before_connecting() {
        // Nothing listens on port 9; these fail before trying.
        for jobs in [0, MAX_JOBS + 1] {
            let err = FetchMany::new("127.0.0.1", 9)
                .file("a")
                .jobs(jobs)
                .run()
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidOption { option: "jobs", .. }),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let options = FetchOptions::builder().output(&file).build().unwrap();
        let err = fetch_many("127.0.0.1", 9, &["a", "b"], &options, 2).unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidOption {
                    option: "output",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn later_names_for_the_same_destination_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let options = FetchOptions::builder()
            .output(dir.path())
            .overwrite(true)
            .build()
            .unwrap();
        let many = FetchMany::new("127.0.0.1", 9)
            .files(["x/a", "b", "y/a", "a", "", "dir/"])
            .options(&options);
        let decided: Vec<bool> = many.duplicates().iter().map(Option::is_some).collect();
        assert_eq!(decided, [false, false, true, true, false, false]);
        assert!(matches!(
            &many.duplicates()[2],
            Some(Err(Error::DestinationExists { path })) if *path == dir.path().join("a")
        ));
    }
}
