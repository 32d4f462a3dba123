//! The integration tests of the crate: one binary, a module per area, sharing `support`.
//! (`stalled_memory` is a binary of its own: it measures this process's memory, which the
//! other tests running beside it would disturb.)

mod async_client;
mod client_faults;
mod confinement;
mod hostile;
mod integrity;
mod many;
mod metrics;
mod proxy_protocol;
mod rate_limit;
mod receive_paths;
mod retry;
mod rules;
mod server_faults;
mod store_root;
#[path = "../support/mod.rs"]
mod support;
mod transfer;
mod windows_confinement;
