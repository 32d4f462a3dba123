//! End-to-end runs of the `filefetch` binary: transfers, every exit code in the situation
//! that produces it, and signals.

mod activation;
mod config;
mod docs;
mod errors;
mod logjson;
mod many;
mod metrics;
mod proxy;
mod retry;
// SIGINT and SIGTERM are Unix signals.
#[cfg(unix)]
mod signals;
mod support;
mod transfers;
mod usage;
