//! Test harness for dcr's end-to-end tests. The tests in `tests/tests/` drive real Terraform
//! binaries (1.15.5 and 1.0.3, installed by `tests/install-tools.sh`) against the freshly built
//! `terraform-provider-dcr`, each in a throwaway working directory; the request logs the embedded
//! local cloud writes during those runs are then checked against Google's own discovery documents,
//! so the one code path the provider has for GCP is held to the real API's shapes.
//!
//! - [`terraform`]: which Terraform binaries are installed, and where.
//! - [`workspace`]: one Terraform working directory bound to one Terraform, with the provider
//!   served from a filesystem mirror; runs commands and explains every failure in full.
//! - [`conformance`]: checks a JSONL request log against the discovery documents.
//! - [`local_cloud`]: a standalone local cloud over a state directory, to inspect what runs left.
//! - [`fixtures`]: configurations, data and helpers several tests share.
//! - [`clean_room`]: a dataset, policy and consumer output location for workload tests.
//! - [`trial_study`]: the configuration most workload tests apply, and what its runs released.
//! - [`peers`]: implementations nobody here wrote (cel-python, gcp-storage-emulator) to check dcr against.
//! - [`google_clients`]: Google's Python client libraries against a local cloud.
//! - [`reliability`]: kill trials: the quickstart's apply killed at a random point, applied again,
//!   checked for convergence and for anything left behind.

use std::path::PathBuf;

pub mod clean_room;
pub mod conformance;
pub mod fixtures;
pub mod google_clients;
pub mod local_cloud;
pub mod peers;
pub mod registry;
pub mod reliability;
pub mod terraform;
pub mod trial_study;
pub mod workspace;

/// Where `tests/install-tools.sh` puts its tools: `$DCR_TOOLS_DIR`, else `$HOME/.cache/dcr/tools`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("DCR_TOOLS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .expect("neither DCR_TOOLS_DIR nor HOME is set: cannot find the tools tests/install-tools.sh installs");
    PathBuf::from(home).join(".cache/dcr/tools")
}
