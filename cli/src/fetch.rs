//! `filefetch fetch`: download one file, or several at once, with progress bars when a person
//! is watching, and optionally check or print each file's SHA-256 digest.

use std::fs;
use std::io::{self, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use filefetch::{Error, Fetch, FetchMany, FetchOptions, Fetched, Sha256Digest, Sha256Sums};
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::FetchArgs;
use crate::exit::{describe, Exit, Failure};
use crate::signals::Interrupt;

const BAR_TEMPLATE: &str = "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
/// One file of several: its name, then the same bar.
const FILE_TEMPLATE: &str =
    "{prefix:24!} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";
/// The last line under the files' bars.
const TOTAL_TEMPLATE: &str = "{prefix:24!} {wide_bar} {pos}/{len} files, {msg}";

/// Downloads the files; reports each one's size and where it went, or its digest.
pub fn run(args: FetchArgs) -> Result<(), Failure> {
    let names = names(&args)?;
    let digests = digests(&args, &names)?;
    // The first signal stops the transfers (and removes their temporary files); a second one
    // ends the process at once.
    let interrupt = Interrupt::install(2)
        .map_err(|e| Failure::new(Exit::Other, format!("cannot handle signals: {e}")))?;
    let mut options = FetchOptions::builder()
        .idle_timeout(args.timeout)
        .connect_timeout(args.connect_timeout)
        .min_rate(args.speed_limit, args.speed_time)
        .overwrite(args.overwrite)
        .retries(args.retries)
        .retry_delay(args.retry_delay)
        .sha256(args.print_sha256)
        .interrupt(move || interrupt.raised());
    if let Some(output) = &args.output {
        options = options.output(output);
    }
    if let Some(limit) = args.max_time {
        options = options.max_time(limit);
    }
    if let Some(limit) = args.max_size {
        options = options.max_size(limit);
    }
    match (names.as_slice(), digests.as_slice()) {
        ([name], [digest]) => one(&args, options, name, *digest),
        _ => many(&args, options.build()?, &names, &digests),
    }
}

/// One file, as `filefetch fetch HOST PORT NAME` always did: a progress bar, then the
/// "received" line.
fn one(
    args: &FetchArgs,
    mut options: filefetch::FetchOptionsBuilder,
    name: &str,
    digest: Option<Sha256Digest>,
) -> Result<(), Failure> {
    // Created on the first report, once the size is known; shared with the retry reports,
    // which are printed above it.
    let bar: Arc<OnceLock<ProgressBar>> = Arc::default();
    if !args.quiet {
        let (bar, retries) = (bar.clone(), args.retries);
        options = options.on_retry(move |error, attempt, wait| {
            let line = format!("filefetch: {}", retry_line(error, attempt, wait, retries));
            match bar.get() {
                Some(bar) => bar.suspend(|| eprintln!("{line}")),
                None => eprintln!("{line}"),
            }
        });
    }
    let options = options.build()?;

    let show_progress = !args.quiet && io::stderr().is_terminal();
    let mut fetch = Fetch::new(&args.host, args.port, name)
        .options(&options)
        .progress(|received, total| {
            if show_progress {
                // A retry starts again from 0, and its file may have another size.
                let bar = bar.get_or_init(|| new_bar(total));
                bar.set_length(total);
                bar.set_position(received);
            }
            ControlFlow::Continue(())
        });
    if let Some(digest) = digest {
        fetch = fetch.expect_sha256(digest);
    }
    let result = fetch.to_file();
    if let Some(bar) = bar.get() {
        match result {
            Ok(_) => bar.finish_and_clear(),
            Err(_) => bar.abandon(),
        }
    }

    if let Some(line) = success_line(&result?, args) {
        // The file is in place whatever happens to stdout (a closed pipe, say).
        let _ = writeln!(io::stdout(), "{line}");
    }
    Ok(())
}

/// Several files, `--jobs` at a time: a bar for each file under way and one for the total,
/// each file's line as soon as it is done, and a summary.
fn many(
    args: &FetchArgs,
    options: FetchOptions,
    names: &[String],
    digests: &[Option<Sha256Digest>],
) -> Result<(), Failure> {
    let bars = (!args.quiet && io::stderr().is_terminal()).then(|| Bars::new(names));
    let show = |line: &str, to_stdout: bool| {
        let print = || {
            // A closed stdout does not stop the fetches; errors go to stderr.
            let _ = if to_stdout {
                writeln!(io::stdout(), "{line}")
            } else {
                writeln!(io::stderr(), "{line}")
            };
        };
        match &bars {
            Some(bars) => bars.multi.suspend(print),
            None => print(),
        }
    };
    let mut list = FetchMany::new(&args.host, args.port)
        .options(&options)
        .jobs(args.jobs)
        .on_done(|index, result| {
            if let Some(bars) = &bars {
                bars.done(index);
            }
            match result {
                Ok(fetched) => {
                    if let Some(line) = success_line(fetched, args) {
                        show(&line, true);
                    }
                }
                // The summary counts them; a line for each file not started says nothing.
                Err(Error::Interrupted) => {}
                Err(error) => show(
                    &format!("filefetch: error: {}: {}", names[index], describe(error)),
                    false,
                ),
            }
        });
    if let Some(bars) = &bars {
        list = list.progress(|index, received, total| {
            bars.progress(index, received, total);
            ControlFlow::Continue(())
        });
    }
    if !args.quiet {
        list = list.on_retry(|index, error, attempt, wait| {
            let line = retry_line(error, attempt, wait, args.retries);
            show(&format!("filefetch: {}: {line}", names[index]), false);
        });
    }
    for (name, digest) in names.iter().zip(digests) {
        list = match digest {
            Some(digest) => list.file_with_sha256(name, *digest),
            None => list.file(name),
        };
    }
    let results = list.run();
    if let Some(bars) = &bars {
        bars.finish();
    }
    let results = results?;

    let summary = Summary::of(&results);
    let exit = Exit::for_many(
        results
            .iter()
            .filter_map(|(_, result)| result.as_ref().err().map(Error::kind)),
    );
    if exit == Exit::Ok {
        if !args.quiet {
            eprintln!("{summary}");
        }
        Ok(())
    } else {
        Err(Failure::new(exit, summary.to_string()))
    }
}

/// The line printed for a file that landed: its digest in `sha256sum`'s format with
/// `--print-sha256` (even with `-q`: it was asked for), else "received N bytes into PATH".
fn success_line(fetched: &Fetched, args: &FetchArgs) -> Option<String> {
    match fetched.sha256 {
        Some(digest) if args.print_sha256 => {
            Some(Sha256Sums::line(&digest, &fetched.path.to_string_lossy()))
        }
        _ if args.quiet => None,
        _ => Some(format!(
            "received {} bytes into {}",
            fetched.bytes,
            fetched.path.display()
        )),
    }
}

/// What a list of fetches came to: "fetched 9 of 10 files, 123456 bytes; 1 failed".
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    files: usize,
    fetched: usize,
    bytes: u64,
    failed: usize,
    interrupted: usize,
}

impl Summary {
    fn of(results: &[(String, filefetch::Result<Fetched>)]) -> Summary {
        let mut summary = Summary {
            files: results.len(),
            fetched: 0,
            bytes: 0,
            failed: 0,
            interrupted: 0,
        };
        for (_, result) in results {
            match result {
                Ok(fetched) => {
                    summary.fetched += 1;
                    summary.bytes += fetched.bytes;
                }
                Err(Error::Interrupted) => summary.interrupted += 1,
                Err(_) => summary.failed += 1,
            }
        }
        summary
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetched {} of {} files, {} bytes",
            self.fetched, self.files, self.bytes
        )?;
        let mut sep = "; ";
        for (count, what) in [(self.failed, "failed"), (self.interrupted, "interrupted")] {
            if count > 0 {
                write!(f, "{sep}{count} {what}")?;
                sep = ", ";
            }
        }
        Ok(())
    }
}

/// The names to fetch: those on the command line, then those of `--from`.
fn names(args: &FetchArgs) -> Result<Vec<String>, Failure> {
    let mut names = args.names.clone();
    if let Some(from) = &args.from {
        let text = read_list(from, "--from")?;
        names.extend(list_lines(&text).map(str::to_owned));
    }
    if names.is_empty() {
        return Err(Failure::new(Exit::Usage, "no file names to fetch"));
    }
    if args.sha256.is_some() && names.len() > 1 {
        return Err(Failure::new(
            Exit::Usage,
            "--sha256 checks one file; give several files' digests with --sha256-file",
        ));
    }
    Ok(names)
}

/// The lines of a `--from` list that name a file: blank lines skipped, a trailing `\r`
/// ignored.
fn list_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .filter(|line| !line.trim().is_empty())
}

/// The digest each name must have: `--sha256`'s, or each one's in `--sha256-file` (every
/// name must be listed there).
fn digests(args: &FetchArgs, names: &[String]) -> Result<Vec<Option<Sha256Digest>>, Failure> {
    if let Some(digest) = args.sha256 {
        return Ok(vec![Some(digest)]);
    }
    let Some(file) = &args.sha256_file else {
        return Ok(vec![None; names.len()]);
    };
    if file == Path::new("-") && args.from.as_deref() == Some(Path::new("-")) {
        return Err(Failure::new(
            Exit::Usage,
            "--from and --sha256-file cannot both read standard input",
        ));
    }
    let sums: Sha256Sums = read_list(file, "--sha256-file")?
        .parse()
        .map_err(|e: Error| Failure::new(Exit::Usage, format!("{}: {e}", file.display())))?;
    let digests: Vec<Option<Sha256Digest>> = names.iter().map(|name| sums.get(name)).collect();
    let missing: Vec<&str> = names
        .iter()
        .zip(&digests)
        .filter(|(_, digest)| digest.is_none())
        .map(|(name, _)| name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new(
            Exit::Usage,
            format!("not in {}: {}", file.display(), missing.join(", ")),
        ));
    }
    Ok(digests)
}

/// The text of a list given as `option`: a file, or standard input for `-`. A list that
/// cannot be read is a usage error, as a bad argument is.
fn read_list(path: &Path, option: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        io::stdin().lock().read_to_end(&mut bytes).map(drop)
    } else {
        fs::read(path).map(|read| bytes = read)
    };
    read.map_err(|e| {
        Failure::new(
            Exit::Usage,
            format!("{option}: cannot read {}: {e}", path.display()),
        )
    })?;
    String::from_utf8(bytes).map_err(|_| {
        Failure::new(
            Exit::Usage,
            format!("{option}: {} is not UTF-8 text", path.display()),
        )
    })
}

/// The report of a retry, like curl's: "attempt 1 failed (transfer incomplete: 10 of 100
/// bytes); retrying in 0.25 s (2 left)". `left` counts the retry about to start.
fn retry_line(error: &Error, attempt: u32, wait: Duration, retries: u32) -> String {
    let left = retries.saturating_sub(attempt.saturating_sub(1));
    format!(
        "attempt {attempt} failed ({error}); retrying in {:.2} s ({left} left)",
        wait.as_secs_f64()
    )
}

fn new_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(BAR_TEMPLATE) {
        bar.set_style(style);
    }
    bar
}

/// The progress of several files on a terminal: a bar for each file under way, made on its
/// first report and removed once it is done, above a line with the files done and the bytes
/// received in all.
struct Bars<'n> {
    multi: MultiProgress,
    total: ProgressBar,
    names: &'n [String],
    files: Vec<OnceLock<ProgressBar>>,
    /// What each file has reported, to keep the sum across retries (which start from 0).
    received: Vec<AtomicU64>,
    sum: AtomicU64,
}

impl<'n> Bars<'n> {
    fn new(names: &'n [String]) -> Bars<'n> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let total = multi.add(ProgressBar::new(names.len() as u64));
        if let Ok(style) = ProgressStyle::with_template(TOTAL_TEMPLATE) {
            total.set_style(style);
        }
        total.set_prefix("total");
        total.set_message(format!("{}", HumanBytes(0)));
        Bars {
            multi,
            total,
            names,
            files: names.iter().map(|_| OnceLock::new()).collect(),
            received: names.iter().map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    fn progress(&self, index: usize, received: u64, total: u64) {
        let bar = self.files[index].get_or_init(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(FILE_TEMPLATE) {
                bar.set_style(style);
            }
            bar.set_prefix(self.names[index].clone());
            self.multi.insert_before(&self.total, bar)
        });
        bar.set_length(total);
        bar.set_position(received);
        let before = self.received[index].swap(received, Ordering::Relaxed);
        let sum = if received >= before {
            self.sum.fetch_add(received - before, Ordering::Relaxed) + (received - before)
        } else {
            self.sum.fetch_sub(before - received, Ordering::Relaxed) - (before - received)
        };
        self.total.set_message(format!("{}", HumanBytes(sum)));
    }

    fn done(&self, index: usize) {
        if let Some(bar) = self.files[index].get() {
            bar.finish_and_clear();
            self.multi.remove(bar);
        }
        self.total.inc(1);
    }

    fn finish(&self) {
        self.total.finish_and_clear();
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_line_counts_the_retries_left() {
        let error = Error::Incomplete {
            received: 10,
            expected: 100,
        };
        assert_eq!(
            retry_line(&error, 1, Duration::from_millis(250), 2),
            "attempt 1 failed (transfer incomplete: 10 of 100 bytes); \
             retrying in 0.25 s (2 left)"
        );
        assert!(retry_line(&error, 2, Duration::from_secs(1), 2).ends_with("in 1.00 s (1 left)"));
    }

    #[test]
    fn list_lines_skip_blanks_and_carriage_returns() {
        let text = "a.txt\r\n\n  \r\nsub/b c.bin\nlast";
        assert_eq!(
            list_lines(text).collect::<Vec<_>>(),
            ["a.txt", "sub/b c.bin", "last"]
        );
    }

    #[test]
    fn summary_counts_each_outcome() {
        let results = vec![
            ("a".to_owned(), Err(Error::NotFound { name: "a".into() })),
            ("b".to_owned(), Err(Error::Interrupted)),
            ("c".to_owned(), Err(Error::Interrupted)),
        ];
        assert_eq!(
            Summary::of(&results).to_string(),
            "fetched 0 of 3 files, 0 bytes; 1 failed, 2 interrupted"
        );
        let summary = Summary {
            files: 10,
            fetched: 9,
            bytes: 123_456,
            failed: 1,
            interrupted: 0,
        };
        assert_eq!(
            summary.to_string(),
            "fetched 9 of 10 files, 123456 bytes; 1 failed"
        );
        let all = Summary {
            failed: 0,
            fetched: 10,
            ..summary
        };
        assert_eq!(all.to_string(), "fetched 10 of 10 files, 123456 bytes");
    }
}
