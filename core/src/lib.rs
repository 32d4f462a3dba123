//! filefetch: fetch a file from a server over TCP with the 0x497E FileRequest/FileResponse
//! protocol, and serve files the same way.
//!
//! A client sends one FileRequest (magic 0x497E, type 1, the name's length and the name); the
//! server answers with one FileResponse (magic, type 2, a status, the data's length and the
//! data) and closes the connection.
//!
//! - [`fetch`] downloads into a local file, atomically and never over an existing one;
//!   [`fetch_bytes`] and [`fetch_to_writer`] download into memory or any writer.
//! - [`Server`] serves a directory to many clients at once, confined to that directory.
//!
//! ```
//! use std::net::SocketAddr;
//! use filefetch::{fetch_bytes, FetchOptions, Server, ServerConfig};
//!
//! let root = tempfile::tempdir().unwrap();
//! std::fs::write(root.path().join("hello.txt"), b"hello, world\n").unwrap();
//!
//! let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
//! let server = Server::bind(addr, ServerConfig::new().root(root.path()))?.spawn()?;
//! let port = server.local_addr().port();
//!
//! let data = fetch_bytes("127.0.0.1", port, "hello.txt", &FetchOptions::new())?;
//! assert_eq!(data, b"hello, world\n");
//!
//! let missing = fetch_bytes("127.0.0.1", port, "nope.txt", &FetchOptions::new());
//! assert!(matches!(missing, Err(filefetch::Error::NotFound { .. })));
//! server.stop()?;
//! # Ok::<(), filefetch::Error>(())
//! ```

mod cache;
pub mod client;
pub mod confine;
mod conn;
mod error;
pub mod protocol;
mod recv;
mod send;
pub mod server;
mod sys;

pub use client::{
    fetch, fetch_bytes, fetch_to_writer, fetch_to_writer_with_progress, fetch_with_progress,
    FetchOptions, Fetched,
};
pub use error::{Error, Result};
pub use server::{BackgroundServer, Server, ServerConfig, ServerHandle};
