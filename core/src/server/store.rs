//! Roots in an object store: `s3://bucket/prefix` (any S3-compatible service), `file:///dir`
//! and `memory://`, through Apache Arrow's `object_store` crate.
//!
//! A request is one GET: the object's size comes from the response, and its body flows to
//! the client chunk by chunk, each read from the store only once the previous one has been
//! taken by the socket, so a slow client slows the GET instead of filling memory. The store's
//! client retries a body cut short only against the same ETag, so a response never mixes two
//! versions of an object; if the object cannot be read to its end, the connection is cut
//! before DataLength bytes and the client keeps nothing.
//!
//! Names follow the same rules as for a directory (see `confine::check_name`), then map to
//! the key `prefix/name`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::path::Path as Key;
use object_store::{ClientOptions, GetOptions, ObjectStore, RetryConfig};

use crate::error::{Error, Result};

/// The schemes a root may name; anything else is a local path.
const SCHEMES: [&str; 3] = ["s3://", "file://", "memory://"];

/// How long connecting to the store may take.
const STORE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a store that does not answer may hold a request before it fails (object_store
/// retries within this time; past it, the client gets StatusCode 0 or a cut connection).
const STORE_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// True if `root` names an object store rather than a directory.
pub(crate) fn is_store_url(root: &str) -> bool {
    SCHEMES.iter().any(|scheme| root.starts_with(scheme))
}

/// An object-store root: the store and the prefix its keys start with.
#[derive(Debug)]
pub(crate) struct Store {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

/// The object a request names, with its body still to come.
pub(crate) struct Object {
    pub(crate) size: u64,
    pub(crate) body: BoxStream<'static, object_store::Result<Bytes>>,
}

/// Why a name could not be fetched from the store.
#[derive(Debug)]
pub(crate) enum Missing {
    /// No object has this key.
    NoSuchKey,
    /// The store failed or did not answer in time; says why.
    Store(String),
}

impl Store {
    /// The store `url` names. Endpoint, region and credentials of `s3://` come from the
    /// standard variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`...).
    pub(crate) fn open(url: &str) -> Result<Store> {
        let invalid = |e: &dyn std::fmt::Display| Error::invalid("root", format!("{url}: {e}"));
        let parsed = url::Url::parse(url).map_err(|e| invalid(&e))?;
        let path = parsed.path().trim_matches('/').to_owned();
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match parsed.scheme() {
            "s3" => {
                let allow_http = std::env::var("AWS_ALLOW_HTTP")
                    .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
                // The HTTP client's TLS takes the process's default provider: ring, unless the
                // program around us has already installed one (then that one stays).
                let _ = rustls::crypto::ring::default_provider().install_default();
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_url(url)
                    .with_client_options(
                        ClientOptions::new()
                            .with_allow_http(allow_http)
                            .with_connect_timeout(STORE_CONNECT_TIMEOUT)
                            // A body may take as long as its client takes to read it; a store
                            // that stops sending is caught by the send-stall timeout.
                            .with_timeout_disabled(),
                    )
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: STORE_RETRY_TIMEOUT,
                        ..RetryConfig::default()
                    })
                    .build()
                    .map_err(|e| invalid(&e))?;
                (Arc::new(store), path)
            }
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| invalid(&"not a local path"))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| invalid(&e))?;
                (Arc::new(store), String::new())
            }
            "memory" => (Arc::new(object_store::memory::InMemory::new()), path),
            other => return Err(invalid(&format_args!("unsupported scheme {other:?}"))),
        };
        Ok(Store { store, prefix })
    }

    /// A root over a store of the caller's (for instance one filled in a test).
    pub(crate) fn with(store: Arc<dyn ObjectStore>, prefix: &str) -> Store {
        Store {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
        }
    }

    /// The key of a checked name.
    fn key(&self, name: &str) -> Option<Key> {
        let full = if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        };
        Key::parse(full).ok()
    }

    /// GETs the object `name` names (already checked by the name rules).
    pub(crate) async fn get(&self, name: &str) -> std::result::Result<Object, Missing> {
        let Some(key) = self.key(name) else {
            return Err(Missing::NoSuchKey);
        };
        match self.store.get_opts(&key, GetOptions::default()).await {
            Ok(got) => Ok(Object {
                size: got.meta.size,
                body: got.into_stream(),
            }),
            Err(object_store::Error::NotFound { .. }) => Err(Missing::NoSuchKey),
            Err(e) => Err(Missing::Store(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_are_told_apart() {
        for url in ["s3://bucket/prefix", "file:///srv/files", "memory://"] {
            assert!(is_store_url(url), "{url}");
        }
        for path in [".", "/srv/files", "s3", "files/s3://x", "C:\\files"] {
            assert!(!is_store_url(path), "{path}");
        }
    }

    #[test]
    fn keys_start_with_the_prefix() {
        let store = Store::with(Arc::new(object_store::memory::InMemory::new()), "/a/b/");
        assert_eq!(store.key("c/d.txt").unwrap().as_ref(), "a/b/c/d.txt");
        let bare = Store::with(Arc::new(object_store::memory::InMemory::new()), "");
        assert_eq!(bare.key("d.txt").unwrap().as_ref(), "d.txt");
    }

    #[test]
    fn unknown_schemes_are_refused() {
        assert!(matches!(Store::open("memory://"), Ok(Store { .. })));
        assert!(matches!(
            Store::open("s3://"),
            Err(Error::InvalidOption { option: "root", .. })
        ));
    }
}
