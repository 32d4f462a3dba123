//! The committed header `include/filefetch.h` must be exactly what cbindgen generates from
//! this crate. `FILEFETCH_BLESS=1 cargo test -p filefetch-ffi --test header` rewrites it.

use std::path::Path;

#[test]
fn header_is_up_to_date() {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = crate_dir.join("../include/filefetch.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("read ffi/cbindgen.toml");
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(crate_dir.join("src/lib.rs"))
        .generate()
        .expect("cbindgen could not generate the header")
        .write(&mut generated);

    if std::env::var_os("FILEFETCH_BLESS").is_some_and(|v| v != "0") {
        std::fs::write(&header, &generated).expect("write include/filefetch.h");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    if committed != generated {
        let committed = String::from_utf8_lossy(&committed);
        let generated = String::from_utf8_lossy(&generated);
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "include/filefetch.h is out of date (first difference at line {}):\n  \
             committed: {:?}\n  generated: {:?}\n\
             Regenerate it with: FILEFETCH_BLESS=1 cargo test -p filefetch-ffi --test header",
            first + 1,
            committed.lines().nth(first).unwrap_or("<end of file>"),
            generated.lines().nth(first).unwrap_or("<end of file>"),
        );
    }
}
