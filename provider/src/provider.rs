//! The dcr provider: its configuration and the resources it offers.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use tfplugin6::schema::Schema;
use tfplugin6::{DataSource, Diagnostic, Diagnostics, Function, Resource, Value};

use crate::clients::Clients;
use crate::config;

/// State shared by the provider and its resources: the clients, once configured, and Ctrl-C.
#[derive(Default)]
pub struct ProviderState {
    clients: OnceLock<Arc<Clients>>,
    pub stop: crate::stop::StopSignal,
}

impl ProviderState {
    /// The configured clients, or an error saying the provider was not configured.
    pub fn clients(&self) -> Result<Arc<Clients>, Diagnostics> {
        self.clients.get().cloned().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "Terraform did not configure the dcr provider before using it; this is a bug in the provider \
                 or in Terraform.",
            )
            .into()
        })
    }
}

pub struct DcrProvider {
    state: Arc<ProviderState>,
}

impl DcrProvider {
    pub fn new() -> DcrProvider {
        DcrProvider { state: Arc::new(ProviderState::default()) }
    }
}

impl Default for DcrProvider {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl tfplugin6::Provider for DcrProvider {
    fn schema(&self) -> Schema {
        config::schema()
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![
            Arc::new(crate::resources::dataset::DatasetResource::new(self.state.clone())),
            Arc::new(crate::resources::policy::PolicyResource::new(self.state.clone())),
            Arc::new(crate::resources::workload::WorkloadResource::new(self.state.clone())),
        ]
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        vec![
            Arc::new(crate::data_sources::verified_attestation::VerifiedAttestation::new(self.state.clone())),
            Arc::new(crate::data_sources::image_digest::ImageDigest::new(self.state.clone())),
            Arc::new(crate::data_sources::privacy_ledger::PrivacyLedger::new(self.state.clone())),
            Arc::new(crate::data_sources::runs::Runs::new(self.state.clone())),
        ]
    }

    fn functions(&self) -> Vec<Arc<dyn Function>> {
        vec![Arc::new(crate::functions::verify_attestation::VerifyAttestation)]
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        config::validate(config)
    }

    async fn stop(&self) {
        tracing::info!("Terraform asked the provider to stop (Ctrl-C)");
        self.state.stop.stop();
    }

    async fn configure(&self, terraform_version: &str, config: &Value) -> Diagnostics {
        tracing::debug!(terraform_version, "configuring provider");
        let backend = match config::resolve(config, &|k| std::env::var(k).ok()) {
            Ok(b) => b,
            Err(d) => return d,
        };
        match Clients::connect(&backend).await {
            Ok(c) => {
                // Terraform configures each provider process once; a second call keeps the first.
                let _ = self.state.clients.set(Arc::new(c));
                Diagnostics::new()
            }
            Err(d) => d,
        }
    }
}
