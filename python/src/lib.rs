//! Python bindings for the `filefetch` crate: the native module `filefetch._native`.
//!
//! Everything here translates: Python arguments into [`filefetch::FetchOptions`] and
//! [`filefetch::ServerConfig`], [`filefetch::Error`] into the exception classes of
//! `filefetch._errors`, and the crate's `tracing` events into Python `logging` records. Blocking
//! work runs with the GIL released, in slices short enough for Ctrl-C to be noticed; the
//! asyncio functions run core's asynchronous client and server waits as futures on a small
//! tokio runtime of their own (`aio`).

use pyo3::prelude::*;

mod aio;
mod args;
mod client;
mod errors;
mod interrupt;
mod log;
mod many;
mod progress;
mod server;

/// Native part of the `filefetch` package; import from `filefetch` instead.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    log::install(m.py())?;
    aio::configure();
    m.add_function(wrap_pyfunction!(client::fetch, m)?)?;
    m.add_function(wrap_pyfunction!(client::fetch_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(client::afetch, m)?)?;
    m.add_function(wrap_pyfunction!(client::afetch_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(many::fetch_many, m)?)?;
    m.add_function(wrap_pyfunction!(server::serve, m)?)?;
    m.add_class::<server::Server>()?;
    m.add_class::<server::AsyncServer>()?;
    Ok(())
}
