//! Terraform resources, and the mechanics they share. A resource is a directory with a file per
//! phase — `schema.rs` (and configuration checks), `plan.rs`, `apply.rs`, `read.rs` (refresh and
//! import) — on a typed `model.rs`; [`resource_by_phase!`] joins them into a [`tfplugin6::Resource`].

/// Declares `$resource`, holding the provider's state, and implements [`tfplugin6::Resource`] for
/// it from the phase modules beside it: `schema::{schema, validate_config}`, `plan::plan`,
/// `apply::apply`, `read::{refresh, import}`, and the `TYPE_NAME` constant.
macro_rules! resource_by_phase {
    ($resource:ident) => {
        pub struct $resource {
            state: std::sync::Arc<crate::provider::ProviderState>,
        }

        impl $resource {
            pub fn new(state: std::sync::Arc<crate::provider::ProviderState>) -> $resource {
                $resource { state }
            }
        }

        #[async_trait::async_trait]
        impl tfplugin6::Resource for $resource {
            fn type_name(&self) -> &'static str {
                TYPE_NAME
            }

            fn schema(&self) -> tfplugin6::Schema {
                schema::schema()
            }

            async fn validate(&self, config: &tfplugin6::Value) -> tfplugin6::Diagnostics {
                schema::validate_config(config)
            }

            async fn read(&self, state: tfplugin6::Value, private: Vec<u8>) -> tfplugin6::ReadResponse {
                let refreshed = read::refresh(&self.state, state.clone()).await;
                crate::resources::common::read_response(state, private, refreshed)
            }

            async fn plan(&self, req: tfplugin6::PlanRequest) -> tfplugin6::PlanResponse {
                plan::plan(&self.state, req).await
            }

            async fn apply(&self, req: tfplugin6::ApplyRequest) -> tfplugin6::ApplyResponse {
                apply::apply(&self.state, req).await
            }

            async fn import(&self, id: &str) -> Result<tfplugin6::Value, tfplugin6::Diagnostics> {
                read::import(&self.state, id).await
            }
        }
    };
}

pub mod common;
pub mod dataset;
pub mod policy;
pub mod workload;

#[cfg(test)]
mod declared_rules;
