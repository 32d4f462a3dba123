//! Python bindings for the `filefetch` crate.
