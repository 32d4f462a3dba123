//! filefetch: fetch a file from a server over TCP with the 0x497E FileRequest/FileResponse
//! protocol, and serve files the same way.
//!
//! A client sends one FileRequest (magic 0x497E, type 1, the name's length and the name); the
//! server answers with one FileResponse (magic, type 2, a status, the data's length and the
//! data) and closes the connection.
//!
//! - [`Fetch`] downloads into a local file, atomically and never over an existing one, or
//!   into memory or any writer; [`fetch`], [`fetch_bytes`] and [`fetch_to_writer`] are the
//!   one-line forms.
//! - [`FetchMany`] (or [`fetch_many`]) fetches a list of files, several at a time.
//! - A fetch checks its data against a SHA-256 digest ([`Fetch::expect_sha256`], from the
//!   hexadecimal [`Sha256Digest`] or a `sha256sum` list, [`Sha256Sums`]) or reports it.
//! - [`Server`] serves a directory to many clients at once, confined to that directory, and
//!   with [`ServerConfigBuilder::metrics`] its metrics to Prometheus over HTTP.
//! - Every failure is an [`Error`]; [`Error::kind`] sorts it into the few [`ErrorKind`]s a
//!   caller reacts to.
//! - Settings are built and checked by [`FetchOptions::builder`] and
//!   [`ServerConfig::builder`]; their defaults are the constants of [`config`].
//!
//! The source is laid out the same way: `client/` (options, connection, receive paths,
//! destination), `server/` (config, listener and life cycle, one connection's exchange,
//! socket, send paths, open-file cache, confinement), `protocol.rs` and `error.rs` shared by
//! both, and `sys/`, the only place that calls the operating system beyond `std`.
//!
//! ```
//! use std::net::SocketAddr;
//! use filefetch::{fetch_bytes, FetchOptions, Server, ServerConfig};
//!
//! let root = tempfile::tempdir().unwrap();
//! std::fs::write(root.path().join("hello.txt"), b"hello, world\n").unwrap();
//!
//! let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
//! let config = ServerConfig::builder().root(root.path()).build()?;
//! let server = Server::bind(addr, config)?.spawn()?;
//! let port = server.local_addr().port();
//!
//! let data = fetch_bytes("127.0.0.1", port, "hello.txt", &FetchOptions::new())?;
//! assert_eq!(data, b"hello, world\n");
//!
//! let missing = fetch_bytes("127.0.0.1", port, "nope.txt", &FetchOptions::new());
//! assert!(matches!(missing, Err(filefetch::Error::NotFound { .. })));
//! server.abort()?;
//! # Ok::<(), filefetch::Error>(())
//! ```

#![warn(missing_docs)]

pub mod client;
pub mod config;
mod error;
pub mod protocol;
pub mod server;
mod sys;

pub use client::{
    fetch, fetch_async, fetch_bytes, fetch_bytes_async, fetch_many, fetch_to_async_writer,
    fetch_to_writer, Fetch, FetchMany, FetchOptions, FetchOptionsBuilder, Fetched, Response,
    Sha256Digest, Sha256Sums,
};
pub use error::{Error, ErrorKind, NameProblem, Result, TimeoutPhase};
pub use server::{BackgroundServer, Server, ServerConfig, ServerConfigBuilder, ServerHandle};
