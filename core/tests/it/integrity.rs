//! SHA-256 digests: computed while receiving, on either receive path, equal to the file's
//! own digest; a wrong one fails with its own error, keeps nothing and replaces nothing, and
//! is not retried.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::{entries, pattern, TestServer};
use filefetch::{Error, ErrorKind, Fetch, FetchOptions, Sha256Digest};

/// Both receive paths: Linux's `splice` (which a digest turns off) and the portable one.
const PATHS: [bool; 2] = [false, true];

/// The digest of `data`, by the `sha2` crate directly.
fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn options(dir: &std::path::Path, portable: bool) -> filefetch::FetchOptionsBuilder {
    FetchOptions::builder()
        .output(dir)
        .portable(portable)
        .idle_timeout(Duration::from_secs(10))
}

#[test]
fn the_digest_is_the_files_own_on_both_paths() {
    let server = TestServer::start();
    let sizes = [0usize, 1, 65_536, (1 << 20) + 3, (3 << 20) + 7];
    for size in sizes {
        let data = pattern(size);
        server.put(&format!("f{size}"), &data);
        for portable in PATHS {
            let out = tempfile::tempdir().unwrap();
            let opts = options(out.path(), portable).sha256(true).build().unwrap();
            let fetched = Fetch::new("127.0.0.1", server.port(), &format!("f{size}"))
                .options(&opts)
                .to_file()
                .unwrap();
            let digest = fetched.sha256.expect("a digest was asked for");
            assert_eq!(digest.0, sha256(&data), "{size} bytes, portable {portable}");
            assert_eq!(digest, Sha256Digest::of(&data));
            assert!(std::fs::read(&fetched.path).unwrap() == data);
            assert_eq!(
                digest.to_string(),
                sha256(&data)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            );
        }
    }
}

#[test]
fn the_expected_digest_lets_the_file_land() {
    let server = TestServer::start();
    let data = pattern(700_001);
    server.put("good.bin", &data);
    for portable in PATHS {
        let out = tempfile::tempdir().unwrap();
        let opts = options(out.path(), portable).build().unwrap();
        let fetched = Fetch::new("127.0.0.1", server.port(), "good.bin")
            .options(&opts)
            .expect_sha256(sha256(&data))
            .to_file()
            .unwrap();
        assert_eq!(fetched.sha256, Some(Sha256Digest(sha256(&data))));
        assert!(std::fs::read(&fetched.path).unwrap() == data);
    }
}

#[test]
fn a_wrong_digest_keeps_nothing_on_both_paths() {
    let server = TestServer::start();
    let data = pattern(2 << 20);
    server.put("bad.bin", &data);
    let wrong = sha256(b"something else");
    for portable in PATHS {
        let out = tempfile::tempdir().unwrap();
        let opts = options(out.path(), portable).build().unwrap();
        let err = Fetch::new("127.0.0.1", server.port(), "bad.bin")
            .options(&opts)
            .expect_sha256(wrong)
            .to_file()
            .unwrap_err();
        match &err {
            Error::ChecksumMismatch { expected, actual } => {
                assert_eq!(expected.0, wrong);
                assert_eq!(actual.0, sha256(&data));
            }
            other => panic!("portable {portable}: {other:?}"),
        }
        assert_eq!(err.kind(), ErrorKind::ChecksumMismatch);
        assert!(err
            .to_string()
            .starts_with("checksum mismatch: expected sha256 "));
        assert!(entries(out.path()).is_empty(), "portable {portable}");
    }
}

#[test]
fn a_wrong_digest_replaces_nothing_even_when_overwriting() {
    let server = TestServer::start();
    server.put("kept.txt", b"new data from the server");
    for portable in PATHS {
        let out = tempfile::tempdir().unwrap();
        std::fs::write(out.path().join("kept.txt"), b"the old file").unwrap();
        let opts = options(out.path(), portable)
            .overwrite(true)
            .build()
            .unwrap();
        let err = Fetch::new("127.0.0.1", server.port(), "kept.txt")
            .options(&opts)
            .expect_sha256(sha256(b"new data, but not that"))
            .to_file()
            .unwrap_err();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
        assert_eq!(
            std::fs::read(out.path().join("kept.txt")).unwrap(),
            b"the old file"
        );
        assert_eq!(entries(out.path()), ["kept.txt"]);
    }
}

#[test]
fn a_wrong_digest_is_not_retried() {
    let server = TestServer::start();
    server.put("f", b"data");
    let retried = Arc::new(AtomicU32::new(0));
    let counter = retried.clone();
    let out = tempfile::tempdir().unwrap();
    let opts = options(out.path(), false)
        .retries(3)
        .retry_delay(Duration::ZERO)
        .on_retry(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        })
        .build()
        .unwrap();
    let err = Fetch::new("127.0.0.1", server.port(), "f")
        .options(&opts)
        .expect_sha256(sha256(b"other"))
        .to_file()
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    assert_eq!(retried.load(Ordering::SeqCst), 0);
}

#[test]
fn memory_writers_and_buffers_are_checked_too() {
    let server = TestServer::start();
    let data = pattern(300_000);
    server.put("m.bin", &data);
    let port = server.port();
    let opts = FetchOptions::builder()
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let good = sha256(&data);
    let bad = sha256(b"no");
    let fetch = || Fetch::new("127.0.0.1", port, "m.bin").options(&opts);

    assert!(fetch().expect_sha256(good).to_vec().unwrap() == data);
    let err = fetch().expect_sha256(bad).to_vec().unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");

    let mut written = Vec::new();
    assert_eq!(
        fetch().expect_sha256(good).to_writer(&mut written).unwrap(),
        data.len() as u64
    );
    assert!(written == data);
    // A writer has the data by the time the digest is known: the error says not to trust it.
    let mut written = Vec::new();
    let err = fetch()
        .expect_sha256(bad)
        .to_writer(&mut written)
        .unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
    assert_eq!(written.len(), data.len());

    let response = fetch().expect_sha256(good).open().unwrap();
    let mut buf = vec![0u8; response.len() as usize];
    response.read_into(&mut buf).unwrap();
    assert!(buf == data);
    let response = fetch().expect_sha256(bad).open().unwrap();
    let mut buf = vec![0u8; response.len() as usize];
    let err = response.read_into(&mut buf).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err:?}");
}
