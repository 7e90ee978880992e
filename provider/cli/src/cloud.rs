//! Where runs and policy documents are read: Google Cloud with Application Default Credentials,
//! or the local cloud of a state directory, started in this process for as long as the command
//! runs (as the provider does; several processes may share a state directory). Both are reached
//! through the same Storage client, so the command reads the local cloud exactly as Google.

use std::path::PathBuf;
use std::sync::Arc;

use dcr_attestation::claims::{LOCAL_ISSUER, same_issuer};
use dcr_attestation::workload::split_gs_uri;
use dcr_gcp::auth::{StaticToken, TokenSource};
use dcr_gcp::logging::LoggingClient;
use dcr_gcp::retry::RetryPolicy;
use dcr_gcp::storage::{Object, StorageClient};
use dcr_gcp::{Endpoints, Transport};
use dcr_local_cloud::{LocalCloud, LocalCloudConfig};
use jsonwebtoken::jwk::JwkSet;

use crate::error::{CliError, unavailable};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Local { state_dir: PathBuf, project: String },
    Gcp,
}

/// A connection made on first use: `dcr verify` of a directory with its policy documents at hand
/// needs none.
pub struct Cloud {
    backend: Backend,
    connected: tokio::sync::OnceCell<Connected>,
}

struct Connected {
    storage: StorageClient,
    logging: LoggingClient,
    /// Keeps the local cloud serving while the command runs.
    _local: Option<LocalCloud>,
}

impl Cloud {
    pub fn new(backend: Backend) -> Cloud {
        Cloud { backend, connected: tokio::sync::OnceCell::new() }
    }

    pub async fn storage(&self) -> Result<&StorageClient, CliError> {
        let c = self.connected.get_or_try_init(|| connect(&self.backend)).await?;
        Ok(&c.storage)
    }

    /// Cloud Audit Logs, where key accesses are on record.
    pub async fn logging(&self) -> Result<&LoggingClient, CliError> {
        let c = self.connected.get_or_try_init(|| connect(&self.backend)).await?;
        Ok(&c.logging)
    }

    /// Every object under `gs://BUCKET/PREFIX`.
    pub async fn list(&self, uri: &str) -> Result<Vec<Object>, CliError> {
        let (bucket, prefix) = gs(uri)?;
        self.storage().await?.list_objects(bucket, Some(prefix)).await.map_err(unavailable)
    }

    /// Streams `gs://BUCKET/OBJECT` into `sink`.
    pub async fn download(
        &self,
        bucket: &str,
        object: &str,
        sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), CliError> {
        self.storage().await?.download_object(bucket, object, sink).await.map_err(unavailable)
    }

    /// Whether `gs://BUCKET/OBJECT` exists (and may be read).
    pub async fn exists(&self, bucket: &str, object: &str) -> Result<bool, CliError> {
        match self.storage().await?.get_object(bucket, object).await {
            Ok(o) => Ok(o.is_some()),
            Err(e) if e.is_forbidden() => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A small object's bytes (a policy document).
    pub async fn read(&self, uri: &str) -> Result<Vec<u8>, CliError> {
        let (bucket, object) = gs(uri)?;
        self.storage().await?.read_object(bucket, object).await.map_err(unavailable)
    }

    /// The keys that verify `issuer`'s tokens: the simulated issuer's, published in the local
    /// state directory (no server needed), or those of the issuer's OIDC discovery document.
    pub async fn issuer_jwks(&self, issuer: &str) -> Result<JwkSet, CliError> {
        if same_issuer(issuer, LOCAL_ISSUER) {
            let Backend::Local { state_dir, .. } = &self.backend else {
                return Err(CliError::Usage(
                    "the token is from dcr's simulated issuer; verify it against the local cloud's state directory (--state-dir), or give --jwks".into(),
                ));
            };
            return dcr_local_cloud::read_published_jwks(state_dir).map_err(CliError::Unavailable);
        }
        let t = Transport::anonymous(RetryPolicy::default()).map_err(unavailable)?;
        dcr_gcp::oidc::issuer_jwks(&t, issuer)
            .await
            .map_err(|e| unavailable(format!("cannot read the keys of issuer {issuer}: {e}")))
    }
}

/// The issuers' keys as the audit trail asks for them.
#[async_trait::async_trait]
impl dcr_audit::IssuerKeys for Cloud {
    async fn jwks(&self, issuer: &str) -> Result<JwkSet, String> {
        self.issuer_jwks(issuer).await.map_err(|e| e.to_string())
    }
}

pub fn gs(uri: &str) -> Result<(&str, &str), CliError> {
    split_gs_uri(uri).ok_or_else(|| CliError::Usage(format!("{uri:?} is not a gs://BUCKET/PATH URI")))
}

async fn connect(backend: &Backend) -> Result<Connected, CliError> {
    match backend {
        Backend::Local { state_dir, project } => {
            if !state_dir.join("local-cloud.db").is_file() {
                return Err(unavailable(format!(
                    "no local cloud at {}: run dcr in the Terraform working directory, or pass --state-dir DIR (or --gcp for Google Cloud)",
                    state_dir.display()
                )));
            }
            let cloud = LocalCloud::start(LocalCloudConfig {
                state_dir: std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.clone()),
                project: project.clone(),
                admin_principal: dcr_local_cloud::default_admin_principal(),
                request_log: std::env::var_os(dcr_local_cloud::REQUEST_LOG_ENV).map(Into::into),
                federated_token_ttl: None,
            })
            .await
            .map_err(|e| unavailable(format!("cannot open the local cloud in {}: {e}", state_dir.display())))?;
            let (storage, logging) =
                clients(Endpoints::local(&cloud.endpoint()), Arc::new(StaticToken(cloud.admin_token())))?;
            Ok(Connected { storage, logging, _local: Some(cloud) })
        }
        Backend::Gcp => {
            let tokens = dcr_gcp::auth::from_environment().map_err(|e| {
                unavailable(format!("no Google Cloud credentials (gcloud auth application-default login): {e}"))
            })?;
            let (storage, logging) = clients(Endpoints::google(), tokens)?;
            Ok(Connected { storage, logging, _local: None })
        }
    }
}

fn clients(ep: Endpoints, tokens: Arc<dyn TokenSource>) -> Result<(StorageClient, LoggingClient), CliError> {
    let t = Arc::new(Transport::new(tokens, RetryPolicy::default()).map_err(unavailable)?);
    Ok((StorageClient::new(t.clone(), &ep.storage, &ep.storage_upload), LoggingClient::new(t, &ep.logging)))
}
