//! The traits a provider implements: one for the provider itself, one per resource, data source and
//! function. Requests and responses are typed Rust values; the server does all the wire work.

use std::sync::Arc;

use async_trait::async_trait;

use crate::diag::Diagnostics;
use crate::schema::Schema;
use crate::value::{Type, Value};

/// The provider: its configuration schema and the resources, data sources and functions it offers.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    fn schema(&self) -> Schema;
    fn resources(&self) -> Vec<Arc<dyn Resource>>;
    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }
    fn functions(&self) -> Vec<Arc<dyn Function>> {
        Vec::new()
    }
    /// Checks the provider block before it is known whether all values are known.
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    /// Called once per process before any resource operation (not before validation or schema).
    async fn configure(&self, terraform_version: &str, config: &Value) -> Diagnostics;
    /// Terraform asks the provider to stop in-flight work (Ctrl-C).
    async fn stop(&self) {}
}

/// `PlanResourceChange` input. `prior_state` is null on create; `proposed_new_state` is null on
/// destroy.
#[derive(Clone, Debug)]
pub struct PlanRequest {
    pub prior_state: Value,
    pub proposed_new_state: Value,
    pub config: Value,
    pub prior_private: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct PlanResponse {
    pub planned_state: Value,
    pub requires_replace: Vec<crate::diag::AttributePath>,
    pub planned_private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

/// `ApplyResourceChange` input. `planned_state` is null for a destroy.
#[derive(Clone, Debug)]
pub struct ApplyRequest {
    pub prior_state: Value,
    pub planned_state: Value,
    pub config: Value,
    pub planned_private: Vec<u8>,
}

#[derive(Clone, Debug, Default)]
pub struct ApplyResponse {
    /// The new state; on failure, the state that now exists (or null when nothing does), so the
    /// next apply converges.
    pub new_state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

#[derive(Clone, Debug, Default)]
pub struct ReadResponse {
    /// The refreshed state, or null when the remote object is gone (Terraform plans a re-create).
    pub new_state: Value,
    pub private: Vec<u8>,
    pub diagnostics: Diagnostics,
}

/// A managed resource type.
#[async_trait]
pub trait Resource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    async fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }
    async fn read(&self, state: Value, private: Vec<u8>) -> ReadResponse;
    async fn plan(&self, req: PlanRequest) -> PlanResponse;
    async fn apply(&self, req: ApplyRequest) -> ApplyResponse;
    /// Builds a minimal state from an import id; Terraform then calls `read` on it.
    async fn import(&self, id: &str) -> Result<Value, Diagnostics>;
    /// Upgrades stored state JSON written by schema `version` to the current schema's JSON.
    fn upgrade_state(&self, version: i64, state: serde_json::Value) -> Result<serde_json::Value, Diagnostics> {
        let current = self.schema().version;
        if version == current {
            Ok(state)
        } else {
            Err(crate::diag::Diagnostic::error(
                format!("Unsupported {} state version {version}", self.type_name()),
                format!(
                    "This provider knows schema version {current}. Upgrade the provider, or remove \
                     the resource from state and import it again."
                ),
            )
            .into())
        }
    }
}

/// A data source type.
#[async_trait]
pub trait DataSource: Send + Sync {
    fn type_name(&self) -> &'static str;
    fn schema(&self) -> Schema;
    /// The configuration's checks; by default the schema's declared ones.
    async fn validate(&self, config: &Value) -> Diagnostics {
        crate::validate::declared(&self.schema().block, config)
    }
    /// The data source's state, with any warnings about it; or the errors that stopped the read.
    async fn read(&self, config: Value) -> Result<(Value, Diagnostics), Diagnostics>;
}

/// A positional parameter of a provider function.
#[derive(Clone, Debug)]
pub struct Parameter {
    pub name: String,
    pub ty: Type,
    pub description: String,
}

#[derive(Clone, Debug)]
pub struct FunctionSignature {
    pub parameters: Vec<Parameter>,
    pub return_type: Type,
    pub summary: String,
    pub description: String,
}

/// A function failure, optionally blaming one argument (by position).
#[derive(Clone, Debug)]
pub struct FunctionError {
    pub text: String,
    pub argument: Option<i64>,
}

/// A provider-defined function (`provider::NAME::FUNC(...)`, Terraform 1.8 and later).
#[async_trait]
pub trait Function: Send + Sync {
    fn name(&self) -> &'static str;
    fn signature(&self) -> FunctionSignature;
    async fn call(&self, args: Vec<Value>) -> Result<Value, FunctionError>;
}
