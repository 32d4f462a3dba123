//! Name confinement: any bytes as a requested name, checked as text and then opened beneath
//! a fixed tree of files, directories and symbolic links (some pointing outside the root).
//!
//! An accepted name is a relative path without `.`, `..` or empty components; whatever it
//! opens, with either resolver, is one of the regular files inside the root, never a file
//! outside it; and both resolvers agree.
#![no_main]

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use filefetch::server::confine::{check_name, Resolver, Root};
use libfuzzer_sys::fuzz_target;

struct Tree {
    root: Root,
    /// (device, inode) of every regular file inside the root.
    inside: HashSet<(u64, u64)>,
    _top: PathBuf,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        // Left in place for the life of the process; tests/run-fuzz.sh points TMPDIR at a
        // directory it removes afterwards.
        let top = tempfile::Builder::new()
            .prefix("filefetch-fuzz-")
            .tempdir()
            .unwrap()
            .keep();
        let root = top.join("root");
        fs::create_dir_all(root.join("b/d")).unwrap();
        fs::create_dir_all(top.join("outside")).unwrap();
        fs::write(top.join("secret"), b"outside").unwrap();
        fs::write(top.join("outside/c"), b"outside").unwrap();
        let files = ["a", "b/c", "b/d/e", "%2e%2e", "b/..."];
        for f in files {
            fs::write(root.join(f), f.as_bytes()).unwrap();
        }
        let links: &[(&str, PathBuf)] = &[
            ("b/up", "../a".into()),
            ("b/out", "../../secret".into()),
            ("b/deep", "d/../c".into()),
            ("abs", root.join("a")),
            ("absout", top.join("secret")),
            ("dirlink", "b".into()),
            ("dirout", "../outside".into()),
            ("self", ".".into()),
            ("parent", "..".into()),
            ("loop", "loop".into()),
            ("chain1", "chain2".into()),
            ("chain2", "b/up".into()),
            ("dangling", "nowhere".into()),
            ("proc", "/proc/self/root/etc/passwd".into()),
        ];
        for (name, target) in links {
            symlink(target, root.join(name)).unwrap();
        }
        let fifo = std::ffi::CString::new(root.join("fifo").into_os_string().into_encoded_bytes())
            .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let inside = files.iter().map(|f| id(&root.join(f))).collect();
        Tree {
            root: Root::new(&root).unwrap(),
            inside,
            _top: top,
        }
    })
}

fn id(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

fuzz_target!(|data: &[u8]| {
    let Ok(name) = check_name(data) else {
        return;
    };
    assert!(!name.is_empty() && name.len() <= 1024);
    assert!(!name.starts_with('/'));
    assert!(!name.contains('\0') && !name.contains('\\'));
    assert!(!name.chars().any(char::is_control));
    assert!(name
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".."));

    let tree = tree();
    let mut opened = Vec::new();
    for resolver in [Resolver::Native, Resolver::Portable] {
        let found = tree.root.open(name, resolver).ok().map(|file| {
            let m = file.metadata().unwrap();
            assert!(m.is_file(), "{name:?} opened a non-regular file");
            let key = (m.dev(), m.ino());
            assert!(
                tree.inside.contains(&key),
                "{name:?} opened a file outside the root with {resolver:?}"
            );
            key
        });
        opened.push(found);
    }
    assert_eq!(opened[0], opened[1], "the resolvers disagree on {name:?}");
});
