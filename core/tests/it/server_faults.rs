//! The server while its files change under it: a file shrinks, grows or is replaced by a
//! link out of the root while it is being sent, and the root directory moves or disappears.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use filefetch::{fetch_bytes, Error, Fetch, FetchOptions};

use crate::support::{entries, pattern, TestServer};

fn opts(dir: &Path) -> FetchOptions {
    FetchOptions::builder()
        .output(dir)
        .idle_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Changes the file once the first data has arrived, then lets the transfer go on.
fn fetch_changing(
    server: &TestServer,
    name: &str,
    out: &Path,
    change: impl FnOnce() + Send,
) -> filefetch::Result<filefetch::Fetched> {
    let mut change = Some(change);
    let opts = opts(out);
    Fetch::new("127.0.0.1", server.port(), name)
        .options(&opts)
        .progress(|r, _| {
            if r > 0 {
                if let Some(change) = change.take() {
                    change();
                }
            }
            ControlFlow::Continue(())
        })
        .to_file()
}

/// A file truncated to nothing once the transfer has started: never passed off as whole.
#[test]
fn file_truncated_to_zero_while_sent() {
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let size = 32 << 20;
        let path = server.put("t.bin", &pattern(size));
        let out = tempfile::tempdir().unwrap();
        let got = fetch_changing(&server, "t.bin", out.path(), || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
        });
        assert!(
            matches!(got, Err(Error::Incomplete { expected, received }) if expected == size as u64 && received < expected),
            "portable {portable}: {got:?}"
        );
        assert!(entries(out.path()).is_empty());
    }
}

/// A file that grows while it is sent: the client gets exactly the size announced, which is
/// the file as it was (an append does not change those bytes), and no excess.
#[test]
fn file_growing_while_sent() {
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let original = pattern(16 << 20);
        let path = server.put("g.bin", &original);
        let out = tempfile::tempdir().unwrap();
        let got = fetch_changing(&server, "g.bin", out.path(), || {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(&[0xEE; 4 << 20]).unwrap();
        })
        .unwrap_or_else(|e| panic!("portable {portable}: {e:?}"));
        assert_eq!(got.bytes, original.len() as u64);
        assert!(std::fs::read(&got.path).unwrap() == original);
        // The next request sees the new size.
        let again = fetch_bytes("127.0.0.1", server.port(), "g.bin", &FetchOptions::new());
        assert_eq!(again.unwrap().len(), original.len() + (4 << 20));
    }
}

/// The file is replaced by a link out of the root while it is being sent: the transfer in
/// flight finishes with the file that was opened, and the next request is refused.
#[test]
fn file_replaced_by_an_outside_link_mid_request() {
    for portable in [false, true] {
        let server = TestServer::with(|c| c.portable(portable));
        let original = pattern(24 << 20);
        let path = server.put("victim.bin", &original);
        let outside = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(outside.path(), b"outside the root").unwrap();
        let link = server.root.path().join(".victim-link");
        if !crate::support::symlink_file(outside.path(), &link) {
            println!("SKIPPED file_replaced_by_an_outside_link_mid_request: no symbolic links");
            return;
        }
        let out = tempfile::tempdir().unwrap();
        let got = fetch_changing(&server, "victim.bin", out.path(), || {
            std::fs::rename(&link, &path).unwrap();
        })
        .unwrap_or_else(|e| panic!("portable {portable}: {e:?}"));
        assert!(std::fs::read(&got.path).unwrap() == original);
        assert!(std::fs::symlink_metadata(&path).unwrap().is_symlink());
        let again = fetch_bytes(
            "127.0.0.1",
            server.port(),
            "victim.bin",
            &FetchOptions::new(),
        );
        assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    }
}

/// The root directory is renamed: the server keeps serving the directory it opened (not a
/// new one put at the old path). It is then deleted: every request gets StatusCode 0, and
/// the server keeps answering and stops cleanly.
// Not on Windows: there the root's place is read from its open handle at each request, and
// Wine's directory handles keep their old path after a rename (Windows' follow it).
#[cfg(unix)]
#[test]
fn root_directory_moved_then_removed() {
    for portable in [false, true] {
        let top = tempfile::tempdir().unwrap();
        let root = top.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f.txt"), b"original root").unwrap();
        let config = filefetch::ServerConfig::builder()
            .root(&root)
            .portable(portable)
            .build()
            .unwrap();
        let server = filefetch::Server::bind("127.0.0.1:0".parse().unwrap(), config)
            .unwrap()
            .spawn()
            .unwrap();
        let port = server.local_addr().port();
        let get = |name: &str| fetch_bytes("127.0.0.1", port, name, &FetchOptions::new());
        assert_eq!(get("sub/f.txt").unwrap(), b"original root");

        let moved = top.path().join("moved");
        std::fs::rename(&root, &moved).unwrap();
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f.txt"), b"impostor").unwrap();
        assert_eq!(get("sub/f.txt").unwrap(), b"original root");

        std::fs::remove_dir_all(&moved).unwrap();
        for _ in 0..20 {
            let got = get("sub/f.txt");
            assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
        }
        let got = get("anything");
        assert!(matches!(got, Err(Error::NotFound { .. })), "{got:?}");
        server.abort().unwrap();
    }
}
