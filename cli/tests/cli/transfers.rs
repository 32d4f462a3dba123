//! Real transfers between `filefetch serve` and `filefetch fetch`.

use std::fs;

use tempfile::tempdir;

use crate::support::{fetch, listing, sample, serve};

#[test]
fn files_arrive_byte_for_byte() {
    let root = tempdir().unwrap();
    let files = [
        ("empty", Vec::new()),
        ("one", vec![0x7E]),
        ("text.txt", b"hello, world\n".to_vec()),
        ("big.bin", sample(3 * 1024 * 1024 + 17)),
    ];
    for (name, data) in &files {
        fs::write(root.path().join(name), data).unwrap();
    }
    let (_server, port) = serve(root.path(), &[]);

    for (name, data) in &files {
        let dir = tempdir().unwrap();
        let out = fetch(dir.path(), port, name, &[]);
        assert_eq!(out.code, Some(0), "{name}: {out:?}");
        assert_eq!(
            out.stdout,
            format!("received {} bytes into {name}\n", data.len())
        );
        assert_eq!(&fs::read(dir.path().join(name)).unwrap(), data, "{name}");
        assert_eq!(listing(dir.path()), [*name], "only the file is left");
    }
}

#[test]
fn output_path_and_subdirectories() {
    let root = tempdir().unwrap();
    fs::create_dir(root.path().join("sub")).unwrap();
    let data = sample(70_000);
    fs::write(root.path().join("sub/data.bin"), &data).unwrap();
    let (_server, port) = serve(root.path(), &["--portable"]);

    // The last component of the name, in the current directory.
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "sub/data.bin", &[]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("data.bin")).unwrap(), data);

    // An explicit file name.
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "sub/data.bin", &["-o", "copy"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "received 70000 bytes into copy\n");
    assert_eq!(listing(dir.path()), ["copy"]);
    assert_eq!(fs::read(dir.path().join("copy")).unwrap(), data);

    // An existing directory.
    let dir = tempdir().unwrap();
    fs::create_dir(dir.path().join("into")).unwrap();
    let out = fetch(dir.path(), port, "sub/data.bin", &["--output", "into"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("into/data.bin")).unwrap(), data);
}

#[test]
fn quiet_prints_nothing_on_success() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"quiet").unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    let out = fetch(dir.path(), port, "f", &["-q"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"quiet");
}

#[test]
fn overwrite_replaces_the_destination() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("f"), b"new contents").unwrap();
    let (_server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    fs::write(dir.path().join("f"), b"old").unwrap();
    let out = fetch(dir.path(), port, "f", &["--overwrite"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"new contents");
    assert_eq!(listing(dir.path()), ["f"]);
}

#[test]
fn server_logs_one_line_per_connection() {
    let root = tempdir().unwrap();
    fs::write(root.path().join("here"), b"x").unwrap();
    let (mut server, port) = serve(root.path(), &[]);
    let dir = tempdir().unwrap();
    assert_eq!(fetch(dir.path(), port, "here", &[]).code, Some(0));
    assert_eq!(fetch(dir.path(), port, "absent", &[]).code, Some(3));
    let sent = server.stdout.wait_for(|l| l.contains("\"here\""));
    assert!(
        sent.contains("status=1") && sent.contains("bytes=1"),
        "{sent}"
    );
    assert!(sent.ends_with(" outcome=sent"), "{sent}");
    let missing = server.stdout.wait_for(|l| l.contains("\"absent\""));
    assert!(missing.contains("status=0"), "{missing}");
    assert!(missing.ends_with(" outcome=not_found"), "{missing}");
}
