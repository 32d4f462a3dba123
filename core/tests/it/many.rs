//! `FetchMany`: a list of files, several at a time, each landing whole or not at all, one
//! failure leaving the others alone, and no file of the list replacing another.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::support::{entries, pattern, TestServer};
use filefetch::{fetch_many, Error, FetchMany, FetchOptions, Sha256Digest};

/// A server holding `f0`..`f{n-1}`, of different sizes (the first empty), and their data.
fn server_with_files(n: usize) -> (TestServer, Vec<(String, Vec<u8>)>) {
    let server = TestServer::start();
    let files: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let name = format!("dir{}/f{i}", i % 2);
            let data = pattern(i * 150_001);
            server.put(&name, &data);
            (name, data)
        })
        .collect();
    (server, files)
}

fn options_into(dir: &std::path::Path) -> FetchOptions {
    FetchOptions::builder()
        .output(dir)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[test]
fn every_file_lands_byte_for_byte_at_most_jobs_at_a_time() {
    let (server, files) = server_with_files(7);
    let out = tempfile::tempdir().unwrap();
    let options = options_into(out.path());
    let active = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let started = Mutex::new(HashSet::new());
    let done = Mutex::new(Vec::new());
    let results = FetchMany::new("127.0.0.1", server.port())
        .files(files.iter().map(|(name, _)| name.as_str()))
        .options(&options)
        .jobs(3)
        .progress(|index, received, _| {
            if received == 0 && started.lock().unwrap().insert(index) {
                let now = active.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
            }
            ControlFlow::Continue(())
        })
        .on_done(|index, result| {
            assert!(result.is_ok(), "{result:?}");
            active.fetch_sub(1, Ordering::SeqCst);
            done.lock().unwrap().push(index);
        })
        .run()
        .unwrap();
    assert_eq!(results.len(), files.len());
    for ((name, result), (expected_name, data)) in results.iter().zip(&files) {
        assert_eq!(name, expected_name, "results come in the order given");
        let fetched = result.as_ref().unwrap();
        assert_eq!(fetched.bytes, data.len() as u64);
        assert_eq!(fetched.sha256, None, "no digest unless asked for");
        assert!(std::fs::read(&fetched.path).unwrap() == *data, "{name}");
    }
    let mut landed: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
    landed.sort();
    assert_eq!(entries(out.path()), landed, "nothing else left");
    let mut done = done.into_inner().unwrap();
    done.sort();
    assert_eq!(done, (0..7).collect::<Vec<_>>(), "each file reported once");
    assert!(most.load(Ordering::SeqCst) <= 3, "{most:?} at once");
}

#[test]
fn a_missing_file_fails_alone() {
    let (server, files) = server_with_files(4);
    let out = tempfile::tempdir().unwrap();
    let mut names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    names.insert(2, "no/such/file");
    let results = fetch_many(
        "127.0.0.1",
        server.port(),
        &names,
        &options_into(out.path()),
        3,
    )
    .unwrap();
    for (i, (name, result)) in results.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(result, Err(Error::NotFound { name }) if name == "no/such/file"),
                "{result:?}"
            );
        } else {
            assert!(result.is_ok(), "{name}: {result:?}");
        }
    }
    assert_eq!(entries(out.path()), ["f0", "f1", "f2", "f3"]);
}

#[test]
fn one_job_fetches_in_order_on_the_calling_thread() {
    let (server, files) = server_with_files(3);
    let out = tempfile::tempdir().unwrap();
    let options = options_into(out.path());
    let caller = std::thread::current().id();
    let order = Mutex::new(Vec::new());
    FetchMany::new("127.0.0.1", server.port())
        .files(files.iter().map(|(name, _)| name.clone()))
        .options(&options)
        .jobs(1)
        .on_done(|index, _| {
            assert_eq!(std::thread::current().id(), caller);
            order.lock().unwrap().push(index);
        })
        .run()
        .unwrap();
    assert_eq!(order.into_inner().unwrap(), [0, 1, 2]);
}

#[test]
fn names_with_the_same_last_component_never_replace_each_other() {
    let server = TestServer::start();
    server.put("x/same", b"first");
    server.put("y/same", b"second");
    server.put("other", b"other");
    for overwrite in [false, true] {
        let out = tempfile::tempdir().unwrap();
        let options = FetchOptions::builder()
            .output(out.path())
            .overwrite(overwrite)
            .build()
            .unwrap();
        let results = fetch_many(
            "127.0.0.1",
            server.port(),
            &["x/same", "other", "y/same"],
            &options,
            3,
        )
        .unwrap();
        assert!(results[0].1.is_ok() && results[1].1.is_ok(), "{results:?}");
        assert!(
            matches!(&results[2].1, Err(Error::DestinationExists { path }) if *path == out.path().join("same")),
            "{results:?}"
        );
        assert_eq!(std::fs::read(out.path().join("same")).unwrap(), b"first");
        assert_eq!(entries(out.path()), ["other", "same"]);
    }
}

#[test]
fn several_files_need_an_output_directory() {
    let server = TestServer::start();
    server.put("a", b"a");
    server.put("b", b"b");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"mine").unwrap();
    for output in [file.clone(), dir.path().join("missing")] {
        let options = FetchOptions::builder().output(&output).build().unwrap();
        let err = fetch_many("127.0.0.1", server.port(), &["a", "b"], &options, 2).unwrap_err();
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
    assert_eq!(std::fs::read(&file).unwrap(), b"mine");
    assert_eq!(entries(dir.path()), ["file"]);
    // One file may go to a file path, as with `Fetch`.
    let options = FetchOptions::builder()
        .output(dir.path().join("copy"))
        .build()
        .unwrap();
    let results = fetch_many("127.0.0.1", server.port(), &["a"], &options, 2).unwrap();
    assert_eq!(results[0].1.as_ref().unwrap().path, dir.path().join("copy"));
}

#[test]
fn jobs_are_checked_by_the_library() {
    let server = TestServer::start();
    for jobs in [0, filefetch::config::MAX_JOBS + 1] {
        let err = FetchMany::new("127.0.0.1", server.port())
            .file("a")
            .jobs(jobs)
            .run()
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidOption { option: "jobs", .. }),
            "{err}"
        );
    }
}

#[test]
fn an_interrupt_stops_the_files_not_started() {
    let (server, files) = server_with_files(5);
    let out = tempfile::tempdir().unwrap();
    let options = FetchOptions::builder()
        .output(out.path())
        .interrupt(|| true)
        .build()
        .unwrap();
    let results = FetchMany::new("127.0.0.1", server.port())
        .files(files.iter().map(|(name, _)| name.as_str()))
        .options(&options)
        .jobs(2)
        .run()
        .unwrap();
    for (name, result) in &results {
        assert!(
            matches!(result, Err(Error::Interrupted)),
            "{name}: {result:?}"
        );
    }
    assert!(entries(out.path()).is_empty());
}

#[test]
fn each_file_is_checked_against_its_own_digest() {
    let (server, files) = server_with_files(3);
    let out = tempfile::tempdir().unwrap();
    let options = options_into(out.path());
    let mut list = FetchMany::new("127.0.0.1", server.port())
        .options(&options)
        .jobs(3);
    for (i, (name, data)) in files.iter().enumerate() {
        // The second file is expected to be something else.
        let digest = Sha256Digest::of(if i == 1 { b"not this" } else { data });
        list = list.file_with_sha256(name, digest);
    }
    let results = list.run().unwrap();
    assert_eq!(
        results[0].1.as_ref().unwrap().sha256,
        Some(Sha256Digest::of(&files[0].1))
    );
    assert!(
        matches!(results[1].1, Err(Error::ChecksumMismatch { .. })),
        "{results:?}"
    );
    assert!(results[2].1.is_ok());
    assert_eq!(entries(out.path()), ["f0", "f2"]);
}

#[test]
fn aborting_one_file_leaves_the_others() {
    let (server, files) = server_with_files(3);
    let out = tempfile::tempdir().unwrap();
    let options = options_into(out.path());
    let results = FetchMany::new("127.0.0.1", server.port())
        .files(files.iter().map(|(name, _)| name.as_str()))
        .options(&options)
        .progress(|index, _, _| {
            if index == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .run()
        .unwrap();
    assert!(matches!(results[2].1, Err(Error::Aborted)), "{results:?}");
    assert_eq!(entries(out.path()), ["f0", "f1"]);
}
