//! Many files from one server: `filefetch_fetch_many`, over core's `FetchMany`.
//!
//! Core decides everything about the list (the `jobs` range, the output directory several
//! files need, names that would land on the same file, the interrupt check); this module
//! reads the C arrays, refuses what core cannot be given at all (NULL, invalid UTF-8, one
//! digest for several files), and writes each file's outcome into the caller's arrays.

use std::ffi::c_char;
use std::ptr::NonNull;

use filefetch::{config, FetchMany};

use crate::error::{filefetch_status, Failure};
use crate::fetch::filefetch_fetch_options;
use crate::guard::{guard, non_null, try_ref, try_str, write_out};

/// Downloads the files `names[0]` to `names[count - 1]` from `host`:`port` into local files,
/// each over its own connection, at most `jobs` at a time on worker threads of the library.
///
/// Each file is fetched as `filefetch_fetch` fetches one, with the same options (the time
/// limits, retries and maximum size apply to each file on its own): it lands whole under its
/// own name or not at all, and one file's failure does not stop the others. `jobs` is from 1
/// to 64; 0 means the default, 4.
///
/// - With more than one name, the options' output must be an existing directory, each file
///   going to its name's last component in it (without an output: in the current
///   directory).
/// - A name whose destination an earlier name of the list already takes (the same last
///   component; on Windows and macOS also one differing only in case) fails with
///   `FILEFETCH_STATUS_EXISTS` without connecting, even when overwriting: no file of the list
///   replaces another.
/// - Once the interrupt callback returns nonzero, the transfers under way stop and the files
///   not yet started fail with `FILEFETCH_STATUS_INTERRUPTED` without connecting. The
///   callback may be called from the worker threads, possibly from several at once: it and
///   its `user_data` must be safe to use from any thread, concurrently.
/// - The progress callback is not called (it could not tell the files apart). A SHA-256
///   digest (`filefetch_fetch_options_set_sha256`) checks one file: it applies when `count`
///   is 1, and with more names the call is refused.
///
/// Once the files have been tried, `statuses[i]` receives the status of `names[i]` and, when
/// `sizes` is not NULL, `sizes[i]` its size in bytes (0 for a file that failed). The call
/// then returns `FILEFETCH_STATUS_OK` when every file landed, or else the status of the first
/// failed file in list order, which `filefetch_last_error` describes after its name, with
/// the number of failed files for a list of several (as in "b.txt: server has no such file:
/// b.txt (1 of 3 files failed)"). `count` 0 fetches nothing and returns `FILEFETCH_STATUS_OK`.
///
/// The call is refused as a whole with `FILEFETCH_STATUS_INVALID_ARGUMENT`, before
/// connecting and without writing to `statuses` or `sizes`, when an argument is NULL (`names`
/// and `statuses` may be NULL only when `count` is 0, `sizes` always), `host` or a name is
/// not valid UTF-8, `jobs` is above 64, the options set a SHA-256 digest and `count` is above
/// 1, or there are several names and the output is not an existing directory; the message
/// names the argument (`names[2]`, `jobs`, `output`...). A name that cannot be requested
/// (such as "" or "dir/") does not refuse the call: that file alone fails, with
/// `FILEFETCH_STATUS_INVALID_ARGUMENT` as its status. To tell the two apart, fill `statuses`
/// beforehand with a value no file gets, such as `FILEFETCH_STATUS_PANIC`.
///
/// `host` and `options` must not be NULL. Blocks the calling thread until every file is done.
/// Thread-safe: several threads may fetch at once, sharing an options handle or not.
#[no_mangle]
pub extern "C" fn filefetch_fetch_many(
    host: *const c_char,
    port: u16,
    names: *const *const c_char,
    count: usize,
    options: *const filefetch_fetch_options,
    jobs: usize,
    statuses: *mut filefetch_status,
    sizes: *mut u64,
) -> filefetch_status {
    guard(|| {
        // SAFETY: a non-NULL `host` is a NUL-terminated string per the contract.
        let host = unsafe { try_str(host, "host") }?;
        // SAFETY: per the contract, a non-NULL `names` points to `count` pointers, each NULL
        // or a NUL-terminated string.
        let names = unsafe { name_list(names, count) }?;
        // SAFETY: a non-NULL `options` is a live handle per the contract.
        let options = unsafe { try_ref(options, "options") }?;
        let statuses = match count {
            0 => None,
            _ => Some(non_null(statuses, "statuses")?),
        };
        let sizes = NonNull::new(sizes);

        let built = options.build()?;
        let jobs = if jobs == 0 { config::JOBS } else { jobs };
        let mut many = FetchMany::new(host, port).options(&built).jobs(jobs);
        many = match (options.expected(), names.as_slice()) {
            (None, names) => many.files(names.iter().copied()),
            (Some(digest), [name]) => many.file_with_sha256(*name, digest),
            (Some(_), []) => many,
            (Some(_), names) => {
                return Err(Failure::invalid(format!(
                    "`options` sets a SHA-256 digest, which checks a single file, not {} \
                     (remove it with filefetch_fetch_options_set_sha256(options, NULL))",
                    names.len()
                )))
            }
        };
        let results = many.run()?;

        let Some(statuses) = statuses else {
            return Ok(());
        };
        let mut first_failure = None;
        let mut failed = 0usize;
        for (index, (name, result)) in results.iter().enumerate().take(count) {
            let (status, size) = match result {
                Ok(fetched) => (filefetch_status::Ok, fetched.bytes),
                Err(error) => {
                    failed += 1;
                    let status = filefetch_status::of(error.kind());
                    first_failure.get_or_insert_with(|| (status, format!("{name}: {error}")));
                    (status, 0)
                }
            };
            // SAFETY: `index` < `count`, and the caller provides `count` entries in
            // `statuses` and, when it is not NULL, in `sizes`.
            unsafe {
                write_out(statuses.add(index), status);
                if let Some(sizes) = sizes {
                    write_out(sizes.add(index), size);
                }
            }
        }
        match first_failure {
            None => Ok(()),
            Some((status, message)) => Err(Failure {
                status,
                message: if count > 1 {
                    format!("{message} ({failed} of {count} files failed)")
                } else {
                    message
                },
            }),
        }
    })
}

/// The `count` names at `names`, checked: no NULL array (unless `count` is 0), no NULL
/// name, each valid UTF-8.
///
/// # Safety
///
/// A non-NULL `names` must point to `count` pointers, each NULL or a NUL-terminated string,
/// all valid for `'a`.
unsafe fn name_list<'a>(
    names: *const *const c_char,
    count: usize,
) -> Result<Vec<&'a str>, Failure> {
    if count == 0 {
        return Ok(Vec::new());
    }
    // No array of `count` entries (of `u64`, the largest element of the three arrays) can be
    // larger than `isize::MAX` bytes.
    if count > isize::MAX as usize / size_of::<u64>() {
        return Err(Failure::invalid(format!("`count` is too large: {count}")));
    }
    let names = non_null(names.cast_mut(), "names")?;
    (0..count)
        .map(|index| {
            // SAFETY: `index` < `count`, within the caller's array of `count` pointers.
            let name = unsafe { names.add(index).read() };
            // SAFETY: a non-NULL name is a NUL-terminated string per the contract.
            unsafe { try_str(name, &format!("names[{index}]")) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::last_error_ptr;
    use crate::fetch::{
        filefetch_fetch_options_free, filefetch_fetch_options_new,
        filefetch_fetch_options_set_output, filefetch_fetch_options_set_sha256,
    };
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: filefetch_last_error returns a valid NUL-terminated string.
        unsafe { CStr::from_ptr(last_error_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    /// A fresh options handle, released when dropped.
    struct Options(*mut filefetch_fetch_options);

    impl Options {
        fn new() -> Self {
            let mut options = std::ptr::null_mut();
            assert_eq!(
                filefetch_fetch_options_new(&raw mut options),
                filefetch_status::Ok
            );
            Options(options)
        }
    }

    impl Drop for Options {
        fn drop(&mut self) {
            filefetch_fetch_options_free(self.0);
        }
    }

    /// Every refusal of the call as a whole happens before connecting (nothing listens on
    /// port 9, and no fetch is tried), names the argument, and writes no status or size.
    #[test]
    fn refused_as_a_whole_without_writing() {
        let options = Options::new();
        let names = [c"a".as_ptr(), c"b".as_ptr()];
        let mut statuses = [filefetch_status::Panic; 2];
        let mut sizes = [77u64; 2];
        let bad_utf8 = [c"a".as_ptr(), c"\xff".as_ptr()];
        let with_null = [c"a".as_ptr(), std::ptr::null()];
        let cases: [(_, _, _, usize, *const filefetch_fetch_options, usize, _); 8] = [
            (
                "host",
                std::ptr::null(),
                names.as_ptr(),
                2,
                options.0,
                2,
                true,
            ),
            (
                "names",
                c"h".as_ptr(),
                std::ptr::null(),
                2,
                options.0,
                2,
                true,
            ),
            (
                "names[1]",
                c"h".as_ptr(),
                with_null.as_ptr(),
                2,
                options.0,
                2,
                true,
            ),
            (
                "names[1]",
                c"h".as_ptr(),
                bad_utf8.as_ptr(),
                2,
                options.0,
                2,
                true,
            ),
            (
                "options",
                c"h".as_ptr(),
                names.as_ptr(),
                2,
                std::ptr::null(),
                2,
                true,
            ),
            (
                "statuses",
                c"h".as_ptr(),
                names.as_ptr(),
                2,
                options.0,
                2,
                false,
            ),
            (
                "jobs",
                c"127.0.0.1".as_ptr(),
                names.as_ptr(),
                2,
                options.0,
                65,
                true,
            ),
            (
                "count",
                c"h".as_ptr(),
                names.as_ptr(),
                usize::MAX,
                options.0,
                2,
                true,
            ),
        ];
        for (what, host, names, count, options, jobs, with_statuses) in cases {
            let out = if with_statuses {
                statuses.as_mut_ptr()
            } else {
                std::ptr::null_mut()
            };
            let status = filefetch_fetch_many(
                host,
                9,
                names,
                count,
                options,
                jobs,
                out,
                sizes.as_mut_ptr(),
            );
            assert_eq!(status, filefetch_status::InvalidArgument, "{what}");
            assert!(last_error().contains(what), "{what}: {}", last_error());
        }

        // Several names and an output that is not a directory.
        assert_eq!(
            filefetch_fetch_options_set_output(options.0, c"no-such-directory/x".as_ptr()),
            filefetch_status::Ok
        );
        let status = filefetch_fetch_many(
            c"127.0.0.1".as_ptr(),
            9,
            names.as_ptr(),
            2,
            options.0,
            0,
            statuses.as_mut_ptr(),
            sizes.as_mut_ptr(),
        );
        assert_eq!(status, filefetch_status::InvalidArgument);
        assert!(last_error().contains("output"), "{}", last_error());

        // One digest for several files.
        let hex = c"853ff93762a06ddbf722c4ebe9ddd66d8f63ddaea97f521c3ecc20da7c976020";
        let options = Options::new();
        assert_eq!(
            filefetch_fetch_options_set_sha256(options.0, hex.as_ptr()),
            filefetch_status::Ok
        );
        let status = filefetch_fetch_many(
            c"127.0.0.1".as_ptr(),
            9,
            names.as_ptr(),
            2,
            options.0,
            0,
            statuses.as_mut_ptr(),
            std::ptr::null_mut(),
        );
        assert_eq!(status, filefetch_status::InvalidArgument);
        assert!(last_error().contains("SHA-256"), "{}", last_error());

        assert_eq!(statuses, [filefetch_status::Panic; 2]);
        assert_eq!(sizes, [77; 2]);
    }

    /// The header states core's numbers: `jobs` 0 means 4, and at most 64.
    #[test]
    fn the_documented_jobs_are_cores() {
        assert_eq!((config::JOBS, config::MAX_JOBS), (4, 64));
    }

    #[test]
    fn an_empty_list_does_nothing() {
        let options = Options::new();
        let status = filefetch_fetch_many(
            c"127.0.0.1".as_ptr(),
            9,
            std::ptr::null(),
            0,
            options.0,
            0,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        assert_eq!(status, filefetch_status::Ok);
    }

    /// A name that cannot be requested fails alone, without connecting; the message starts
    /// with the name of the first failure and counts the failures.
    #[test]
    fn each_file_gets_its_own_status() {
        let options = Options::new();
        let names = [c"".as_ptr(), c"dir/".as_ptr()];
        let mut statuses = [filefetch_status::Panic; 2];
        let mut sizes = [77u64; 2];
        let status = filefetch_fetch_many(
            c"127.0.0.1".as_ptr(),
            9,
            names.as_ptr(),
            2,
            options.0,
            1,
            statuses.as_mut_ptr(),
            sizes.as_mut_ptr(),
        );
        assert_eq!(status, filefetch_status::InvalidArgument);
        assert_eq!(statuses, [filefetch_status::InvalidArgument; 2]);
        assert_eq!(sizes, [0; 2]);
        let message = last_error();
        assert!(message.starts_with(": invalid file name"), "{message}");
        assert!(message.ends_with("(2 of 2 files failed)"), "{message}");
    }
}
