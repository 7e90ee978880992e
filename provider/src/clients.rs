//! The configured backend: API clients for the chosen cloud, and the embedded local cloud when
//! that is the choice. Built once per provider process, in `ConfigureProvider`.

use std::sync::Arc;

use dcr_gcp::auth::{StaticToken, TokenSource};
use dcr_gcp::kms::KmsClient;
use dcr_gcp::retry::RetryPolicy;
use dcr_gcp::storage::StorageClient;
use dcr_gcp::{Endpoints, Transport};
use dcr_local_cloud::{LocalCloud, LocalCloudConfig};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use crate::config::{Backend, GcpConfig};

/// Environment variable naming a file that receives one JSON line per request the local cloud
/// serves (the conformance test checks them against Google's discovery documents).
pub const REQUEST_LOG_ENV: &str = "DCR_LOCAL_CLOUD_REQUEST_LOG";

pub struct Clients {
    pub project: String,
    pub storage: StorageClient,
    pub kms: KmsClient,
    pub is_local: bool,
    /// Keeps the embedded cloud serving for as long as the provider runs.
    _local: Option<LocalCloud>,
}

impl Clients {
    pub async fn connect(backend: &Backend) -> Result<Clients, Diagnostics> {
        match backend {
            Backend::Local(cfg) => {
                let state_dir = std::path::absolute(&cfg.state_dir).unwrap_or_else(|_| cfg.state_dir.clone());
                let cloud = LocalCloud::start(LocalCloudConfig {
                    state_dir: state_dir.clone(),
                    project: cfg.project.clone(),
                    admin_principal: dcr_local_cloud::default_admin_principal(),
                    request_log: std::env::var_os(REQUEST_LOG_ENV).map(Into::into),
                })
                .await
                .map_err(|e| {
                    Diagnostics::from(Diagnostic::attribute_error(
                        AttributePath::root("local").attr("state_dir"),
                        format!("cannot start the local cloud in {}", state_dir.display()),
                        e.to_string(),
                    ))
                })?;
                tracing::info!(endpoint = %cloud.endpoint(), state_dir = %state_dir.display(), "local cloud started");
                let tokens: Arc<dyn TokenSource> = Arc::new(StaticToken(cloud.admin_token()));
                let mut c = Self::build(&cfg.project, Endpoints::local(&cloud.endpoint()), tokens, true)?;
                c._local = Some(cloud);
                Ok(c)
            }
            Backend::Gcp(cfg) => {
                let tokens = dcr_gcp::auth::from_environment()
                    .map_err(|e| Diagnostics::from(Diagnostic::error("No Google Cloud credentials", e.to_string())))?;
                Self::build(&cfg.project, gcp_endpoints(cfg), tokens, false)
            }
        }
    }

    fn build(
        project: &str,
        ep: Endpoints,
        tokens: Arc<dyn TokenSource>,
        is_local: bool,
    ) -> Result<Clients, Diagnostics> {
        let t = Arc::new(
            Transport::new(tokens, RetryPolicy::default())
                .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot create HTTP client", e.to_string())))?,
        );
        Ok(Clients {
            project: project.to_string(),
            storage: StorageClient::new(t.clone(), &ep.storage, &ep.storage_upload),
            kms: KmsClient::new(t, &ep.kms),
            is_local,
            _local: None,
        })
    }
}

fn gcp_endpoints(cfg: &GcpConfig) -> Endpoints {
    let mut ep = Endpoints::google();
    if let Some(s) = &cfg.storage_endpoint {
        let s = if s.ends_with('/') { s.clone() } else { format!("{s}/") };
        ep.storage_upload = s.replacen("/storage/v1/", "/upload/storage/v1/", 1);
        ep.storage = s;
    }
    if let Some(k) = &cfg.kms_endpoint {
        ep.kms = if k.ends_with('/') { k.clone() } else { format!("{k}/") };
    }
    ep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_overrides_derive_the_upload_url() {
        let cfg = GcpConfig {
            project: "p".into(),
            region: None,
            zone: None,
            storage_endpoint: Some("https://private.example/storage/v1".into()),
            kms_endpoint: None,
        };
        let ep = gcp_endpoints(&cfg);
        assert_eq!(ep.storage, "https://private.example/storage/v1/");
        assert_eq!(ep.storage_upload, "https://private.example/upload/storage/v1/");
        assert_eq!(ep.kms, "https://cloudkms.googleapis.com/v1/");
    }
}
