//! Link settings of the shared library on ELF systems:
//!
//! - a soname, so programs linked against `libfilefetch.so` record `libfilefetch.so.<major>`
//!   and keep working across compatible upgrades;
//! - only the C API exported. rustc links every cdylib with a version script of its own
//!   (`global:` every `#[no_mangle]` function of the crate *and of its dependencies*;
//!   `local: *`), so a dependency that ships a C API of its own (crc-fast, under
//!   object_store, does) would export it from our library too. `--exclude-libs,ALL` keeps
//!   every symbol that comes from an archive (the dependencies' rlibs) out of the dynamic
//!   symbol table; the crate's own functions, in its own object files, stay exported. Under
//!   cross-crate LTO (the workspace's release profile) there are no archives left and this
//!   does nothing, so the Makefile builds the library with `lto = false`.
//!
//! No second version script (`{ global: filefetch_*; local: *; }`, a node named after the
//! soname): GNU ld refuses to combine it with rustc's anonymous one ("anonymous version tag
//! cannot be combined with other version tags"), and rust-lld, which accepts it, lets rustc's
//! exact names win over its pattern, so it would neither hide nor version anything.
//! `make` and tests/run-c.sh check the result: the library exports exactly the functions of
//! include/filefetch.h.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos"
    ) {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libfilefetch.so.{major}");
        // GNU ld and lld; illumos's linker has no such option.
        if os != "illumos" {
            println!("cargo:rustc-cdylib-link-arg=-Wl,--exclude-libs,ALL");
        }
    }
}
