//! Typed REST clients for the Google Cloud APIs dcr calls: Cloud Storage (JSON API), Cloud KMS, IAM
//! workload identity federation, STS, Resource Manager, Compute Engine, Artifact Registry, Cloud Logging (audit logs) and OIDC
//! discovery.
//!
//! The same clients talk to real Google Cloud and to dcr's embedded local cloud; only the base URLs
//! ([`Endpoints`]) and the credentials ([`auth::TokenSource`]) differ. Every call goes through one
//! [`transport::Transport`], which adds the bearer token, retries with backoff and jitter on 408,
//! 429, 5xx and connection errors (only when the call is idempotent or guarded by a precondition),
//! and turns Google's two error shapes into one [`GcpError`] that keeps Google's message.

pub mod artifact_registry;
pub mod auth;
pub mod compute;
pub mod error;
pub mod iam;
pub mod kms;
pub mod logging;
pub mod oidc;
pub mod operation;
pub mod resource_manager;
pub mod retry;
pub mod storage;
pub mod sts;
pub mod transport;
pub mod workload_identity;

pub use error::GcpError;
pub use reqwest::StatusCode;
pub use transport::Transport;

/// Base URLs of each service, with a trailing slash. Paths from Google's discovery documents are
/// appended to them (e.g. `b/{bucket}` to the Storage base).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    pub storage: String,
    pub storage_upload: String,
    pub kms: String,
    pub iam: String,
    pub sts: String,
    pub resource_manager: String,
    pub compute: String,
    pub artifact_registry: String,
    pub logging: String,
}

impl Endpoints {
    /// Google Cloud's public endpoints.
    pub fn google() -> Endpoints {
        Endpoints {
            storage: "https://storage.googleapis.com/storage/v1/".into(),
            storage_upload: "https://storage.googleapis.com/upload/storage/v1/".into(),
            kms: "https://cloudkms.googleapis.com/v1/".into(),
            iam: "https://iam.googleapis.com/v1/".into(),
            sts: "https://sts.googleapis.com/v1/".into(),
            resource_manager: "https://cloudresourcemanager.googleapis.com/v1/".into(),
            compute: "https://compute.googleapis.com/compute/v1/".into(),
            artifact_registry: "https://artifactregistry.googleapis.com/v1/".into(),
            logging: "https://logging.googleapis.com/v2/".into(),
        }
    }

    /// The local cloud at `base` (e.g. `http://127.0.0.1:4321`), which serves every service on one
    /// port under a per-service prefix.
    pub fn local(base: &str) -> Endpoints {
        let base = base.trim_end_matches('/');
        Endpoints {
            storage: format!("{base}/storage/v1/"),
            storage_upload: format!("{base}/upload/storage/v1/"),
            kms: format!("{base}/cloudkms/v1/"),
            iam: format!("{base}/iam/v1/"),
            sts: format!("{base}/sts/v1/"),
            resource_manager: format!("{base}/cloudresourcemanager/v1/"),
            compute: format!("{base}/compute/v1/"),
            artifact_registry: format!("{base}/artifactregistry/v1/"),
            logging: format!("{base}/logging/v2/"),
        }
    }
}
