//! The state every service handler shares: the store, the VM supervisor, upload checksums in
//! progress. Built once by [`crate::LocalCloud::start`], handed to each request by the server.

use std::path::PathBuf;
use std::sync::Arc;

use crate::store::Store;

pub struct App {
    pub store: Store,
    pub request_log: Option<PathBuf>,
    /// For fetching other OIDC issuers' keys (STS); never carries credentials.
    pub http: Arc<dcr_gcp::Transport>,
    /// The simulated Confidential Space VMs this process supervises.
    pub vm: Arc<crate::vm::Vms>,
    /// Lifetime of the federated tokens STS issues.
    pub federated_token_secs: i64,
    /// `http://127.0.0.1:PORT`: where links point when a request names no usable Host.
    pub endpoint: String,
    /// Running CRC32C/MD5 of resumable upload sessions, by upload id, with the bytes they cover:
    /// hashed as the chunks arrive, so finishing a large upload does not read it all again. A
    /// session without one (the process restarted) is hashed from its file when it completes.
    pub upload_hashes: std::sync::Mutex<std::collections::HashMap<String, (u64, crate::checksums::Hashes)>>,
}
