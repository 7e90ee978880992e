//! The configured backend: API clients for the chosen cloud, and the embedded local cloud when
//! that is the choice. Built once per provider process, in `ConfigureProvider`.

use std::path::PathBuf;
use std::sync::Arc;

use dcr_attestation::claims::{LOCAL_ISSUER, same_issuer};
use dcr_gcp::artifact_registry::ArtifactRegistryClient;
use dcr_gcp::auth::{StaticToken, TokenSource};
use dcr_gcp::compute::ComputeClient;
use dcr_gcp::kms::KmsClient;
use dcr_gcp::logging::LoggingClient;
use dcr_gcp::resource_manager::ResourceManagerClient;
use dcr_gcp::retry::RetryPolicy;
use dcr_gcp::storage::StorageClient;
use dcr_gcp::sts::StsClient;
use dcr_gcp::workload_identity::WorkloadIdentityClient;
use dcr_gcp::{Endpoints, GcpError, Transport};
use dcr_local_cloud::{LocalCloud, LocalCloudConfig};
use jsonwebtoken::jwk::JwkSet;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use crate::config::{Backend, GcpConfig};

pub use dcr_local_cloud::REQUEST_LOG_ENV;

pub struct Clients {
    pub project: String,
    pub storage: StorageClient,
    pub kms: KmsClient,
    pub iam: WorkloadIdentityClient,
    pub sts: StsClient,
    pub resource_manager: ResourceManagerClient,
    pub compute: ComputeClient,
    pub artifact_registry: ArtifactRegistryClient,
    /// Cloud Audit Logs: who used the datasets' keys.
    pub logging: LoggingClient,
    pub is_local: bool,
    /// The provider block's default region and zone (`gcp` only).
    pub region: Option<String>,
    pub zone: Option<String>,
    /// The credentials every request carries; registries hosted by Google take them too.
    tokens: Arc<dyn TokenSource>,
    /// The embedded local cloud's URL (what local workloads call back to).
    pub local_endpoint: Option<String>,
    /// For requests that carry no credentials (OIDC discovery).
    transport: Arc<Transport>,
    project_number: tokio::sync::OnceCell<String>,
    /// The local cloud's state directory, where its simulated issuer publishes its keys.
    local_state_dir: Option<PathBuf>,
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
                    federated_token_ttl: None,
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
                c.local_endpoint = Some(cloud.endpoint());
                c._local = Some(cloud);
                c.local_state_dir = Some(state_dir);
                Ok(c)
            }
            Backend::Gcp(cfg) => {
                let tokens = dcr_gcp::auth::from_environment()
                    .map_err(|e| Diagnostics::from(Diagnostic::error("No Google Cloud credentials", e.to_string())))?;
                let mut c = Self::build(&cfg.project, gcp_endpoints(cfg), tokens, false)?;
                c.region = cfg.region.clone();
                c.zone = cfg.zone.clone();
                Ok(c)
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
            Transport::new(tokens.clone(), RetryPolicy::default())
                .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot create HTTP client", e.to_string())))?,
        );
        Ok(Clients {
            project: project.to_string(),
            storage: StorageClient::new(t.clone(), &ep.storage, &ep.storage_upload),
            kms: KmsClient::new(t.clone(), &ep.kms),
            iam: WorkloadIdentityClient::new(t.clone(), &ep.iam),
            sts: StsClient::new(t.clone(), &ep.sts),
            resource_manager: ResourceManagerClient::new(t.clone(), &ep.resource_manager),
            compute: ComputeClient::new(t.clone(), &ep.compute),
            artifact_registry: ArtifactRegistryClient::new(t.clone(), &ep.artifact_registry),
            logging: LoggingClient::new(t.clone(), &ep.logging),
            is_local,
            region: None,
            zone: None,
            tokens,
            local_endpoint: None,
            transport: t,
            project_number: tokio::sync::OnceCell::new(),
            local_state_dir: None,
            _local: None,
        })
    }

    /// The project's number (workload identity names and principals use it), read once.
    pub async fn project_number(&self) -> Result<String, GcpError> {
        self.project_number
            .get_or_try_init(|| async {
                self.resource_manager.get_project(&self.project).await.map(|p| p.project_number)
            })
            .await
            .cloned()
    }

    /// An access token of the provider's own credentials: Google-hosted registries take it as the
    /// password of `oauth2accesstoken`.
    pub async fn access_token(&self) -> Result<String, GcpError> {
        self.tokens.token().await
    }

    /// The local cloud's image store, where local workload images go when no registry is set.
    pub fn local_image_store(&self) -> Option<PathBuf> {
        self.local_state_dir.as_deref().map(dcr_local_cloud::image_store)
    }

    /// The keys that verify tokens of `issuer`: the simulated issuer's published JWKS when the
    /// local cloud runs here, the issuer's OIDC discovery otherwise.
    pub async fn issuer_jwks(&self, issuer: &str) -> Result<JwkSet, String> {
        if same_issuer(issuer, LOCAL_ISSUER) {
            let dir = self.local_state_dir.as_ref().ok_or_else(|| {
                "tokens of dcr's simulated issuer can be verified only with the local backend".to_string()
            })?;
            return dcr_local_cloud::read_published_jwks(dir);
        }
        dcr_gcp::oidc::issuer_jwks(&self.transport, issuer).await.map_err(|e| e.to_string())
    }
}

fn gcp_endpoints(cfg: &GcpConfig) -> Endpoints {
    let with_slash = |s: &String| if s.ends_with('/') { s.clone() } else { format!("{s}/") };
    let mut ep = Endpoints::google();
    if let Some(s) = &cfg.storage_endpoint {
        let s = with_slash(s);
        ep.storage_upload = s.replacen("/storage/v1/", "/upload/storage/v1/", 1);
        ep.storage = s;
    }
    for (over, field) in [
        (&cfg.kms_endpoint, &mut ep.kms),
        (&cfg.iam_endpoint, &mut ep.iam),
        (&cfg.sts_endpoint, &mut ep.sts),
        (&cfg.resource_manager_endpoint, &mut ep.resource_manager),
        (&cfg.compute_endpoint, &mut ep.compute),
        (&cfg.artifact_registry_endpoint, &mut ep.artifact_registry),
        (&cfg.logging_endpoint, &mut ep.logging),
    ] {
        if let Some(url) = over {
            *field = with_slash(url);
        }
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
            iam_endpoint: Some("https://iam.private.example/v1".into()),
            sts_endpoint: None,
            resource_manager_endpoint: None,
            compute_endpoint: Some("http://127.0.0.1:9/compute/v1".into()),
            artifact_registry_endpoint: None,
            logging_endpoint: None,
        };
        let ep = gcp_endpoints(&cfg);
        assert_eq!(ep.storage, "https://private.example/storage/v1/");
        assert_eq!(ep.storage_upload, "https://private.example/upload/storage/v1/");
        assert_eq!(ep.kms, "https://cloudkms.googleapis.com/v1/");
        assert_eq!(ep.iam, "https://iam.private.example/v1/");
        assert_eq!(ep.sts, "https://sts.googleapis.com/v1/");
        assert_eq!(ep.compute, "http://127.0.0.1:9/compute/v1/");
        assert_eq!(ep.artifact_registry, "https://artifactregistry.googleapis.com/v1/");
    }
}
