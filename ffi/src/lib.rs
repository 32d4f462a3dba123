//! C API over the `filefetch` crate.
