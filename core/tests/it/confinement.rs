//! The confinement matrix: traversal payloads (in the manner of dotdotpwn), encodings served
//! literally, very long names, and symbolic links in and out of the root (in the manner of
//! nginx's symlink tests), all sent as raw FileRequests to a live server, once per resolver.
//! Every target outside the root stays unreachable (StatusCode 0), every legitimate name is
//! served, and no response ever carries a byte of an outside file.
//!
//! On Windows the server follows no symbolic link at all, and refuses the names Windows
//! reads as more than a plain relative path; FIFOs, sockets and devices exist on Unix only.
//! Where no symbolic link can be made (Wine; Windows without the privilege), the names that
//! need one are left out, and the test says so.

use std::fs;
use std::path::Path;

use crate::support::{
    raw, read_to_close, request, symlink_dir, symlink_file, TestServer, NOT_FOUND,
};

/// Every file outside the root holds this marker; no response may contain it.
const SECRET: &[u8] = b"SECRET-OUTSIDE";

#[derive(Debug, Clone)]
enum Expect {
    /// StatusCode 1 and exactly these bytes.
    Served(Vec<u8>),
    /// StatusCode 0.
    Refused,
    /// The header itself is invalid: closed without a response.
    NoResponse,
}

use Expect::{NoResponse, Refused, Served};

fn served(text: &str) -> Expect {
    Served(text.as_bytes().to_vec())
}

/// The long path of exactly 1024 bytes: four 250-byte directories and a 20-byte name.
fn long_path() -> String {
    let dirs: Vec<String> = (b'a'..=b'd')
        .map(|c| String::from_utf8(vec![c; 250]).unwrap())
        .collect();
    format!("{}/{}", dirs.join("/"), "n".repeat(20))
}

#[cfg(unix)]
fn c_path(path: &Path) -> std::ffi::CString {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap()
}

/// Links that point at directories (Windows makes those differently).
const DIRECTORY_LINKS: &[&str] = &[
    "link_self",
    "link_dir_in",
    "dir/sub/link_up_dir",
    "link_dir_out",
    "link_dir_out_abs",
    "link_parent",
    "link_slash",
    "link_proc_cwd",
    "link_to_dir",
];

/// Builds the tree: `top/secret.txt` and `top/outside/` outside, `top/root/` served.
/// Returns whether it has the symbolic links (false where the system cannot make them).
fn build(top: &Path) -> bool {
    let root = top.join("root");
    let w = |rel: &str, data: &str| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    };
    fs::create_dir_all(top.join("outside")).unwrap();
    fs::write(top.join("secret.txt"), SECRET).unwrap();
    fs::write(top.join("outside/inner.txt"), SECRET).unwrap();
    fs::write(top.join("outside/file.txt"), SECRET).unwrap();
    w("public.txt", "public");
    w("dir/file.txt", "dir-file");
    w("dir/sub/deep.txt", "deep");
    // Windows strips trailing dots: these two cannot exist there.
    if !cfg!(windows) {
        w("...", "three dots");
        w("a..", "a dot dot");
    }
    w("..a", "dot dot a");
    w(".hidden", "hidden");
    w("with space.txt", "space");
    w("ünïcødé 文件.txt", "unicode");
    w("%2e%2e%2fsecret.txt", "literal percent");
    w("..%2fsecret.txt", "literal dotdot percent");
    w("%2e%2e/secret.txt", "literal percent directory");
    w("..\u{2215}lookalike", "division slash");
    w("~", "tilde");
    w(&long_path(), "long");
    w(&"x".repeat(255), "255");

    #[cfg(unix)]
    special_files(&root);

    let root_abs = root.canonicalize().unwrap();
    let top_abs = top.canonicalize().unwrap();
    let links: Vec<(&str, String)> = vec![
        ("link_in", "public.txt".into()),
        ("link_in_deep", "dir/sub/deep.txt".into()),
        ("dir/link_up_in", "../public.txt".into()),
        ("link_chain", "link_in".into()),
        ("link_dotdot_in", "dir/sub/../file.txt".into()),
        ("link_self", ".".into()),
        ("link_dir_in", "dir".into()),
        ("dir/sub/link_up_dir", "..".into()),
        ("link_out_rel", "../secret.txt".into()),
        ("link_out_abs", format!("{}/secret.txt", top_abs.display())),
        ("link_abs_in", format!("{}/public.txt", root_abs.display())),
        ("dir/link_out_deep", "../../secret.txt".into()),
        ("link_dir_out", "../outside".into()),
        ("link_dir_out_abs", format!("{}/outside", top_abs.display())),
        ("link_parent", "..".into()),
        ("link_slash", "/".into()),
        ("link_proc", "/proc/self/root/etc/passwd".into()),
        ("link_proc_cwd", "/proc/self/cwd".into()),
        ("link_chain_out", "link_out_rel".into()),
        ("link_dangling", "nowhere".into()),
        ("link_loop", "link_loop".into()),
        ("link_ping", "link_pong".into()),
        ("link_pong", "link_ping".into()),
        ("link_to_dir", "dir".into()),
        ("link_to_fifo", "fifo".into()),
        ("link_far_up", "../../../../../../../../etc/passwd".into()),
        ("link_up_back", "../root/public.txt".into()),
    ];
    for (k, (name, target)) in links.into_iter().enumerate() {
        // Windows wants its own separator in link targets.
        let target = if cfg!(windows) {
            target.replace('/', "\\")
        } else {
            target
        };
        let made = if DIRECTORY_LINKS.contains(&name) {
            symlink_dir(target, root.join(name))
        } else {
            symlink_file(target, root.join(name))
        };
        if k == 0 && !made {
            println!("note: no symbolic links here, so the names that need one are left out");
            return false;
        }
        assert!(made, "{name}");
    }
    true
}

/// A FIFO, a socket and a device node in the root.
#[cfg(unix)]
fn special_files(root: &Path) {
    use std::os::unix::fs::symlink;
    let fifo = c_path(&root.join("fifo"));
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) };
    assert_eq!(rc, 0);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    let dev = c_path(&root.join("null_device"));
    // SAFETY: a valid NUL-terminated path; makedev(1, 3) is /dev/null.
    let made = unsafe { libc::mknod(dev.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) };
    if made != 0 {
        let e = std::io::Error::last_os_error();
        // SAFETY: geteuid has no preconditions.
        assert_ne!(unsafe { libc::geteuid() }, 0, "mknod as root failed: {e}");
        println!("note: not root, so no device node ({e}); linking to /dev/null instead");
        symlink("/dev/null", root.join("null_device")).unwrap();
    }
}

/// The names and what each must get. `top` is the absolute path of the tree; `links` says
/// whether it has its symbolic links.
fn matrix(top: &Path, links: bool) -> Vec<(Vec<u8>, Expect)> {
    let top = top.canonicalize().unwrap();
    let abs = |rel: &str| format!("{}/{rel}", top.display());
    let s = |name: &str, e: Expect| (name.as_bytes().to_vec(), e);
    let b = |name: &[u8], e: Expect| (name.to_vec(), e);
    let long = long_path();
    let mut too_long_component = long.clone();
    too_long_component.truncate(250 * 3 + 3);
    too_long_component.push_str(&"z".repeat(256));
    // Names Windows refuses (a trailing dot), or cannot hold a file under.
    let unix_only = |e: Expect| if cfg!(windows) { Refused } else { e };
    let mut cases = vec![
        // Legitimate names.
        s("public.txt", served("public")),
        s("dir/file.txt", served("dir-file")),
        s("dir/sub/deep.txt", served("deep")),
        s("...", unix_only(served("three dots"))),
        s("..a", served("dot dot a")),
        s("a..", unix_only(served("a dot dot"))),
        s(".hidden", served("hidden")),
        s("with space.txt", served("space")),
        s("ünïcødé 文件.txt", served("unicode")),
        s("~", served("tilde")),
        s(&long, served("long")),
        s(&"x".repeat(255), served("255")),
        // Encodings are names, never decoded.
        s("%2e%2e%2fsecret.txt", served("literal percent")),
        s("..%2fsecret.txt", served("literal dotdot percent")),
        s("%2e%2e/secret.txt", served("literal percent directory")),
        s("..\u{2215}lookalike", served("division slash")),
        s("dir%2ffile.txt", Refused),
        s("public%2etxt", Refused),
        s("%2e%2e%2f%2e%2e%2fsecret.txt", Refused),
        s("%252e%252e%252fsecret.txt", Refused),
        s("..%c0%afsecret.txt", Refused),
        s("..%u2215secret.txt", Refused),
        s("%c0%ae%c0%ae/secret.txt", Refused),
        s("．．／secret.txt", Refused),
        s("..\u{2215}secret.txt", Refused),
        s("public.txt%00.png", Refused),
        // Overlong and otherwise invalid UTF-8: refused, not decoded to "." or "/".
        b(b"\xc0\xae\xc0\xae/secret.txt", Refused),
        b(b"..\xc0\xafsecret.txt", Refused),
        b(b"\xe0\x80\xae\xe0\x80\xae/secret.txt", Refused),
        b(b"\xf0\x80\x80\xae\xf0\x80\x80\xae/secret.txt", Refused),
        b(b"\xc0\xafetc\xc0\xafpasswd", Refused),
        b(b"public.txt\xff", Refused),
        // `..` in every position.
        s("..", Refused),
        s("../", Refused),
        s("../secret.txt", Refused),
        s("../../secret.txt", Refused),
        s("../root/public.txt", Refused),
        s("dir/../public.txt", Refused),
        s("dir/../../secret.txt", Refused),
        s("dir/sub/../../../secret.txt", Refused),
        s("dir/file.txt/..", Refused),
        s("dir/..", Refused),
        s(&format!("{}../secret.txt", "../".repeat(20)), Refused),
        s("....//secret.txt", Refused),
        s("..../secret.txt", Refused),
        s(".../secret.txt", Refused),
        s("..;/secret.txt", Refused),
        s("dir;/file.txt", Refused),
        // Absolute paths, `//`, `./`, empty components.
        s("/etc/passwd", Refused),
        s("//etc/passwd", Refused),
        s("///", Refused),
        s("/", Refused),
        s(&abs("secret.txt"), Refused),
        s(&abs("root/public.txt"), Refused),
        s("./public.txt", Refused),
        s(".", Refused),
        s("dir/./file.txt", Refused),
        s("dir//file.txt", Refused),
        s("public.txt/", Refused),
        s("public.txt/.", Refused),
        s("file:///etc/passwd", Refused),
        // Backslashes are not separators.
        s("..\\secret.txt", Refused),
        s("dir\\file.txt", Refused),
        s("..\\..\\..\\windows\\win.ini", Refused),
        s("\\\\?\\C:\\secret.txt", Refused),
        s("C:\\secret.txt", Refused),
        // NUL and control characters.
        b(b"public.txt\0.png", Refused),
        b(b"\0", Refused),
        s("public.txt\n", Refused),
        s("\tpublic.txt", Refused),
        s("pub\x7flic.txt", Refused),
        s("pub\u{85}lic.txt", Refused),
        // Near misses are other names (but Windows' file names ignore case).
        s("public.txt ", Refused),
        s("public.txt.", Refused),
        (
            b"PUBLIC.TXT".to_vec(),
            if cfg!(windows) {
                served("public")
            } else {
                Refused
            },
        ),
        s("public.*", Refused),
        s("~/secret.txt", Refused),
        s("$HOME", Refused),
        // Forms special to Windows (drives, streams, devices); elsewhere just missing names.
        s("C:public.txt", Refused),
        s("C:/secret.txt", Refused),
        s("public.txt::$DATA", Refused),
        s("public.txt:stream", Refused),
        s("NUL", Refused),
        s("nul.txt", Refused),
        s("dir/CON", Refused),
        s("COM1.log", Refused),
        s("public.txt?", Refused),
        s("public<txt", Refused),
        s("dir/file.txt . .", Refused),
        // Very long names.
        s(&too_long_component, Refused),
        (vec![b'a'; 1025], NoResponse),
        // Only regular files are served.
        s("dir", Refused),
        s("dir/sub", Refused),
        s("missing.txt", Refused),
        s("public.txt/x", Refused),
    ];
    if cfg!(unix) {
        cases.extend([
            s("fifo", Refused),
            s("socket", Refused),
            s("null_device", Refused),
        ]);
    }
    if !links {
        return cases;
    }
    // Links that stay inside the root: followed on Unix, never on Windows.
    let inside = |e: Expect| if cfg!(windows) { Refused } else { e };
    cases.extend([
        // Symbolic links inside the root are followed.
        s("link_in", inside(served("public"))),
        s("link_in_deep", inside(served("deep"))),
        s("dir/link_up_in", inside(served("public"))),
        s("link_chain", inside(served("public"))),
        s("link_dotdot_in", inside(served("dir-file"))),
        s("link_self/public.txt", inside(served("public"))),
        s(
            "link_self/link_self/dir/file.txt",
            inside(served("dir-file")),
        ),
        s("link_dir_in/file.txt", inside(served("dir-file"))),
        s("link_dir_in/sub/deep.txt", inside(served("deep"))),
        s("link_dir_in/link_up_in", inside(served("public"))),
        s("dir/sub/link_up_dir/file.txt", inside(served("dir-file"))),
        // ... and never out of it, nor to absolute targets.
        s("link_out_rel", Refused),
        s("link_out_abs", Refused),
        s("link_abs_in", Refused),
        s("dir/link_out_deep", Refused),
        s("link_dir_out/inner.txt", Refused),
        s("link_dir_out/file.txt", Refused),
        s("link_dir_out_abs/inner.txt", Refused),
        s("link_parent/secret.txt", Refused),
        s("link_parent/root/public.txt", Refused),
        s("link_parent/outside/inner.txt", Refused),
        s("link_slash/etc/passwd", Refused),
        s("link_proc", Refused),
        s("link_proc_cwd/secret.txt", Refused),
        s("link_chain_out", Refused),
        s("link_far_up", Refused),
        s("link_up_back", Refused),
        s("link_dir_in/sub/link_up_dir/../secret.txt", Refused),
        s("dir/sub/link_up_dir/link_up_in/../secret.txt", Refused),
        s("link_dangling", Refused),
        s("link_loop", Refused),
        s("link_ping", Refused),
        // Only regular files are served.
        s("link_to_dir", Refused),
        s("link_self", Refused),
        s("link_to_fifo", Refused),
    ]);
    cases
}

/// The whole reply to a request for `name`; a reset (which a server closing on a bad
/// header with unread bytes may send) counts as an empty reply.
fn ask(server: &TestServer, name: &[u8]) -> Vec<u8> {
    let mut s = raw(server.addr());
    std::io::Write::write_all(&mut s, &request(name)).unwrap();
    read_to_close(&mut s).unwrap_or_default()
}

fn response(data: &[u8]) -> Vec<u8> {
    let mut r = vec![0x49, 0x7E, 2, 1];
    r.extend_from_slice(&(data.len() as u32).to_be_bytes());
    r.extend_from_slice(data);
    r
}

fn run_matrix(portable: bool) {
    let top = tempfile::tempdir().unwrap();
    let links = build(top.path());
    let config = filefetch::ServerConfig::builder()
        .root(top.path().join("root"))
        .portable(portable)
        .build()
        .unwrap();
    let server = TestServer {
        server: Some(
            filefetch::Server::bind("127.0.0.1:0".parse().unwrap(), config)
                .unwrap()
                .spawn()
                .unwrap(),
        ),
        root: tempfile::tempdir().unwrap(),
    };
    let cases = matrix(top.path(), links);
    assert!(cases.len() >= 60, "only {} names", cases.len());
    let mut failures = Vec::new();
    for (name, expect) in &cases {
        let reply = ask(&server, name);
        assert!(
            !reply.windows(SECRET.len()).any(|w| w == SECRET),
            "{} leaked an outside file",
            String::from_utf8_lossy(name)
        );
        let want = match expect {
            Served(data) => response(data),
            Refused => NOT_FOUND.to_vec(),
            NoResponse => Vec::new(),
        };
        if reply != want {
            failures.push(format!(
                "{:?}: expected {expect:?}, got {:?}",
                String::from_utf8_lossy(name),
                String::from_utf8_lossy(&reply)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "portable {portable}: {} of {} names wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!("portable {portable}: {} names checked", cases.len());
}

#[test]
fn matrix_with_the_native_resolver() {
    run_matrix(false);
}

#[test]
fn matrix_with_the_portable_resolver() {
    run_matrix(true);
}

/// Swaps two paths atomically (`renameat2` with `RENAME_EXCHANGE`, which only Linux has).
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) {
    let (a, b) = (c_path(a), c_path(b));
    // SAFETY: valid NUL-terminated paths, resolved from the working directory.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    assert_eq!(rc, 0, "renameat2: {}", std::io::Error::last_os_error());
}

/// A name that is a file one moment and a symbolic link out of the root the next (and a
/// directory that becomes a link to an outside directory), swapped atomically while requests
/// are in flight: each answer is the inside file or StatusCode 0, never the outside one.
///
/// Without the open-file cache every request resolves the name, so both states must be met.
/// With it, a file opened inside may go on being served for the cache's lifetime after being
/// swapped away (still linked, under the other name), but never the outside one.
#[cfg(target_os = "linux")]
fn swap_race(portable: bool, cache: bool) {
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ttl = if cache {
        std::time::Duration::from_secs(1)
    } else {
        std::time::Duration::ZERO
    };
    let server = TestServer::with(|c| c.portable(portable).file_cache(ttl));
    let outside = tempfile::tempdir().unwrap();
    let top = outside.path();
    fs::create_dir_all(top.join("outside")).unwrap();
    fs::write(top.join("secret.txt"), SECRET).unwrap();
    fs::write(top.join("outside/file.txt"), SECRET).unwrap();
    let root = server.root.path();
    server.put("swap", b"swap-inside");
    server.put("swapdir/file.txt", b"swapdir-inside");
    // The alternatives swapped in: absolute and relative links to the outside file, and a
    // link to the outside directory.
    symlink(top.join("secret.txt"), root.join(".swap-alt")).unwrap();
    let relative = Path::new("..")
        .join(top.file_name().unwrap())
        .join("secret.txt");
    symlink(relative, root.join(".swap-rel-alt")).unwrap();
    symlink(top.join("outside"), root.join(".swapdir-alt")).unwrap();

    let stop = AtomicBool::new(false);
    let mut counts = [[0usize; 2]; 2];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let swap = (root.join("swap"), root.join(".swap-alt"));
            let rel = (root.join("swap"), root.join(".swap-rel-alt"));
            let dir = (root.join("swapdir"), root.join(".swapdir-alt"));
            // Each state is held for a moment, so that requests meet all of them.
            let hold = || std::thread::sleep(std::time::Duration::from_micros(300));
            while !stop.load(Ordering::Relaxed) {
                for (a, b) in [&swap, &dir, &swap, &rel, &dir, &rel] {
                    exchange(a, b);
                    hold();
                }
            }
        });
        for round in 0..300 {
            for (k, (name, inside)) in [
                (&b"swap"[..], &b"swap-inside"[..]),
                (b"swapdir/file.txt", b"swapdir-inside"),
            ]
            .into_iter()
            .enumerate()
            {
                let reply = ask(&server, name);
                if reply == response(inside) {
                    counts[k][0] += 1;
                } else {
                    assert!(
                        reply == NOT_FOUND,
                        "round {round}, {}: got {:?}",
                        String::from_utf8_lossy(name),
                        String::from_utf8_lossy(&reply)
                    );
                    counts[k][1] += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    println!(
        "portable {portable}: swapped file served {} / refused {}, swapped directory served \
         {} / refused {}",
        counts[0][0], counts[0][1], counts[1][0], counts[1][1]
    );
    // Both states were seen, so the race really ran.
    for (k, what) in ["file", "directory"].iter().enumerate() {
        if cache {
            break;
        }
        assert!(
            counts[k][0] > 0 && counts[k][1] > 0,
            "the swapped {what} was never seen in both states: {:?}",
            counts[k]
        );
    }
}

// The swaps need renameat2's RENAME_EXCHANGE: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn symlink_swapped_in_during_requests_native() {
    swap_race(false, false);
}

// The swaps need renameat2's RENAME_EXCHANGE: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn symlink_swapped_in_during_requests_with_the_file_cache() {
    swap_race(false, true);
}

// The swaps need renameat2's RENAME_EXCHANGE: Linux only.
#[cfg(target_os = "linux")]
#[test]
fn symlink_swapped_in_during_requests_portable() {
    swap_race(true, false);
}
