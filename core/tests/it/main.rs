//! The integration tests of the crate: one binary, a module per area, sharing `support`.
//! (`stalled_memory` is a binary of its own: it measures this process's memory, which the
//! other tests running beside it would disturb.)

mod client_faults;
mod confinement;
mod hostile;
mod receive_paths;
mod server_faults;
#[path = "../support/mod.rs"]
mod support;
mod transfer;
mod windows_confinement;
