//! Serving from an object store (here `object_store`'s in-memory one, filled by the test): one
//! GET per request, the same name rules as for a directory, StatusCode 0 for a missing key or
//! a "directory", and the body streamed whole. The S3 cases (a real S3-compatible server,
//! objects changed or the store stopped mid-transfer) are in `tests/scaleout`.
#![cfg(feature = "object-store")]

use std::sync::Arc;

use filefetch::{fetch_bytes, Error, FetchOptions, Server, ServerConfig};
use object_store::memory::InMemory;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};

use crate::support::{pattern, raw, read_to_close, request, NOT_FOUND};

fn put(store: &InMemory, key: &str, data: Vec<u8>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(store.put(&Key::parse(key).unwrap(), PutPayload::from(data)))
        .unwrap();
}

#[test]
fn objects_are_served_whole_and_names_are_checked() {
    let store = Arc::new(InMemory::new());
    let big = pattern(5 << 20);
    put(&store, "files/empty", Vec::new());
    put(&store, "files/one", b"1".to_vec());
    put(&store, "files/dir/big.bin", big.clone());
    put(&store, "outside.txt", b"not under the prefix".to_vec());
    let config = ServerConfig::builder()
        .object_store(store, "files")
        .build()
        .unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .unwrap()
        .spawn()
        .unwrap();
    let port = server.local_addr().port();
    let get = |name: &str| fetch_bytes("127.0.0.1", port, name, &FetchOptions::new());
    assert_eq!(get("empty").unwrap(), b"");
    assert_eq!(get("one").unwrap(), b"1");
    assert_eq!(get("dir/big.bin").unwrap(), big);
    for refused in [
        "missing",
        "dir",
        "dir/",
        "../outside.txt",
        "/one",
        "./one",
        "dir//big.bin",
    ] {
        assert!(
            matches!(get(refused), Err(Error::NotFound { .. })),
            "{refused}: {:?}",
            get(refused)
        );
    }
    // Raw: a refused name gets exactly the 8-byte StatusCode 0 response.
    let mut s = raw(server.local_addr());
    std::io::Write::write_all(&mut s, &request(b"../outside.txt")).unwrap();
    assert_eq!(read_to_close(&mut s).unwrap(), NOT_FOUND);
    server.abort().unwrap();
}

#[test]
fn object_store_urls_are_roots() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), b"through file://").unwrap();
    let url = format!("file://{}", dir.path().display());
    let config = ServerConfig::builder().root(&url).build().unwrap();
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .unwrap()
        .spawn()
        .unwrap();
    let port = server.local_addr().port();
    let got = fetch_bytes("127.0.0.1", port, "a.txt", &FetchOptions::new()).unwrap();
    assert_eq!(got, b"through file://");
    server.abort().unwrap();
    match Server::bind(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig::builder().root("s3://").build().unwrap(),
    ) {
        Err(Error::InvalidOption { option: "root", .. }) => {}
        other => panic!("{other:?}"),
    }
}
