//! Confinement on Windows: every way that Windows' path rules open out of the root or onto
//! another file gets StatusCode 0, and files the server holds open stay the owner's to
//! replace, rename and delete. Runs on Windows (under Wine in `tests/run-windows.sh`).
#![cfg(windows)]

use std::io::{Read, Write};
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{raw, TestServer};
use filefetch::server::confine::{OpenError, Resolver, Root};

/// Sends a request for `name` and returns the StatusCode the server answered with.
fn status_of(server: &TestServer, name: &[u8]) -> u8 {
    let mut s = raw(server.addr());
    let mut request = vec![0x49, 0x7E, 1];
    request.extend_from_slice(&(name.len() as u16).to_be_bytes());
    request.extend_from_slice(name);
    s.write_all(&request).unwrap();
    let mut header = [0u8; 8];
    s.read_exact(&mut header).unwrap();
    assert_eq!(&header[..3], &[0x49, 0x7E, 2], "not a FileResponse");
    header[3]
}

fn served(server: &TestServer, name: &str) -> bool {
    status_of(server, name.as_bytes()) == 1
}

fn fetch(server: &TestServer, name: &str) -> Vec<u8> {
    filefetch::fetch_bytes(
        "127.0.0.1",
        server.port(),
        name,
        &filefetch::FetchOptions::new(),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn plain_names_are_served() {
    let server = TestServer::start();
    server.put("a.txt", b"a");
    server.put("sub dir/long file name.txt", b"long");
    assert!(served(&server, "a.txt"));
    assert!(served(&server, "sub dir/long file name.txt"));
    // Case differs: the same file to Windows, and the same file is served.
    assert!(served(&server, "A.TXT"));
}

#[test]
fn drive_stream_and_device_names_are_refused() {
    let server = TestServer::start();
    server.put("a.txt", b"secret a");
    server.put("secret.txt", b"secret");
    for name in [
        "C:x",
        "C:/Windows/win.ini",
        "c:a.txt",
        "a.txt:s",
        "a.txt::$DATA",
        "a.txt:s:$DATA",
        "CON",
        "con",
        "con.txt",
        "nul.txt",
        "NUL",
        "COM1",
        "com9.log",
        "LPT1",
        "LPT9",
        "AUX",
        "PRN",
        "CONIN$",
        "CONOUT$",
        "secret.txt.",
        "secret.txt ",
        "secret.txt. . ",
        "secret.tx?",
        "secret*",
        "secret.txt<",
        "\"secret.txt\"",
    ] {
        assert_eq!(
            status_of(&server, name.as_bytes()),
            0,
            "{name:?} was served"
        );
    }
    // UNC, device and DOS paths: backslashes, or a leading slash.
    for name in [
        r"\\?\C:\Windows\win.ini",
        r"\\.\nul",
        r"\\localhost\c$\Windows\win.ini",
        r"..\secret.txt",
        r"sub\a.txt",
        "//?/C:/Windows/win.ini",
        "//./nul",
        "/Windows/win.ini",
    ] {
        assert_eq!(
            status_of(&server, name.as_bytes()),
            0,
            "{name:?} was served"
        );
    }
}

/// The 8.3 short name of `path`, if the file system gave it one different from its name.
fn short_name(path: &Path) -> Option<String> {
    use windows_sys::Win32::Storage::FileSystem::GetShortPathNameW;
    let wide: Vec<u16> = path.as_os_str().encode_wide().chain([0]).collect();
    let mut buf = vec![0u16; 1024];
    // SAFETY: `wide` is NUL-terminated; `buf` is writable for the length passed.
    let n = unsafe { GetShortPathNameW(wide.as_ptr(), buf.as_mut_ptr(), buf.len() as u32) };
    if n == 0 || n as usize >= buf.len() {
        return None;
    }
    buf.truncate(n as usize);
    let short = PathBuf::from(std::ffi::OsString::from_wide(&buf));
    let short = short.file_name()?.to_string_lossy().into_owned();
    let long = path.file_name()?.to_string_lossy().into_owned();
    (!short.eq_ignore_ascii_case(&long)).then_some(short)
}

#[test]
fn short_names_are_refused() {
    let server = TestServer::start();
    let path = server.put("a rather long file name.text", b"long");
    assert!(served(&server, "a rather long file name.text"));
    let short = short_name(&path).expect("the file system gave the file no 8.3 name");
    // The short name opens the same file; the server refuses it, so that one name leads to
    // one file.
    assert!(std::fs::read(server.root.path().join(&short)).is_ok());
    assert_eq!(
        status_of(&server, short.as_bytes()),
        0,
        "{short:?} was served"
    );
}

/// Makes a directory junction at `link` pointing to `target`, as `mklink /J` does.
fn junction(target: &Path, link: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new("cmd")
        .arg("/C")
        .arg("mklink")
        .arg("/J")
        .arg(link)
        .arg(target)
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() && link.exists() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("mklink /J failed: {status}")))
    }
}

#[test]
fn links_out_of_the_root_are_refused() {
    let top = tempfile::tempdir().unwrap();
    let root = top.path().join("root");
    let outside = top.path().join("outside");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), b"outside").unwrap();
    std::fs::write(root.join("sub/inside.txt"), b"inside").unwrap();
    let made = [
        std::os::windows::fs::symlink_file(outside.join("secret.txt"), root.join("file_out")),
        std::os::windows::fs::symlink_dir(&outside, root.join("dir_out")),
        std::os::windows::fs::symlink_file(root.join("sub/inside.txt"), root.join("file_in")),
        junction(&outside, &root.join("junction_out")),
    ];
    // Wine 8 answers success to both, and makes nothing: the link cases are then left to
    // the unit tests of the final-path check (sys::windows), and only the rest runs here.
    let links = [root.join("file_out"), root.join("junction_out")];
    let can_link = links.iter().all(|l| std::fs::symlink_metadata(l).is_ok());
    if !can_link {
        eprintln!("this system made no links: only the files inside the root are checked");
    }
    let r = Root::new(&root).unwrap();
    for resolver in [Resolver::Native, Resolver::Portable] {
        let mut f = r.open("sub/inside.txt", resolver).unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "inside");
        for (name, made) in [
            ("file_out", &made[0]),
            ("dir_out/secret.txt", &made[1]),
            ("file_in", &made[2]),
            ("junction_out/secret.txt", &made[3]),
        ] {
            if !can_link {
                continue;
            }
            if let Err(e) = made {
                panic!("could not make the link {name}: {e}");
            }
            assert!(
                matches!(
                    r.open(name, resolver),
                    Err(OpenError::Escapes | OpenError::NotRegular)
                ),
                "{name} opened with {resolver:?}"
            );
        }
    }
}

#[test]
fn served_files_stay_replaceable_renamable_and_deletable() {
    let server = TestServer::with(|c| c.file_cache(Duration::from_secs(60)));
    let path = server.put("f.txt", b"first");
    // Held open by the server's cache from here on.
    assert_eq!(fetch(&server, "f.txt"), b"first");

    let next = server.put("next.tmp", b"second");
    std::fs::rename(&next, &path).expect("replacing a served file by a rename");
    assert_eq!(fetch(&server, "f.txt"), b"second");

    std::fs::write(&path, b"third").expect("rewriting a served file in place");
    assert_eq!(fetch(&server, "f.txt"), b"third");

    let moved = server.root.path().join("moved.txt");
    std::fs::rename(&path, &moved).expect("renaming a served file");
    assert_eq!(status_of(&server, b"f.txt"), 0);
    assert_eq!(fetch(&server, "moved.txt"), b"third");

    std::fs::remove_file(&moved).expect("deleting a served file");
    assert_eq!(status_of(&server, b"moved.txt"), 0);
}
