//! `data "dcr_verified_attestation"`: the `verify_attestation` function for every Terraform
//! version (functions need 1.8). On a configured provider the simulated issuer's keys come from
//! the local backend's own state directory.

use std::sync::Arc;

use std::collections::BTreeSet;

use async_trait::async_trait;
use tfplugin6::model::{self, IntoValue, Model};
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{AttributePath, DataSource, Diagnostic, Diagnostics, Type, Value};

use crate::provider::ProviderState;
use crate::verification::{EXPECTATION_KEYS, check, claims_type, claims_value, expected_from};

pub const TYPE_NAME: &str = "dcr_verified_attestation";

/// The data source's configuration and state: the token, the expectations (every key of
/// [`EXPECTATION_KEYS`] but `local_state_dir`: a configured provider knows its state directory),
/// and the claims.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct VerifiedAttestationData {
    pub token: String,
    #[model(flatten)]
    pub expectations: ExpectationAttributes,
    pub claims: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ExpectationAttributes {
    pub issuer: String,
    pub audience: Option<String>,
    pub image_digest: Option<String>,
    pub nonce: Option<String>,
    pub require_confidential_hardware: Option<bool>,
    pub allowed_hardware: Option<BTreeSet<String>>,
    pub allow_debug: Option<bool>,
    pub valid_at: Option<String>,
    pub jwks: Option<String>,
}

pub struct VerifiedAttestation {
    state: Arc<ProviderState>,
}

impl VerifiedAttestation {
    pub fn new(state: Arc<ProviderState>) -> VerifiedAttestation {
        VerifiedAttestation { state }
    }
}

fn expectation_type(key: &str) -> Type {
    match key {
        "require_confidential_hardware" | "allow_debug" => Type::Bool,
        "allowed_hardware" => Type::set(Type::String),
        _ => Type::String,
    }
}

pub fn schema() -> Schema {
    let mut b = Block::new(
        "Verifies an attestation token — its signature against the issuer's keys, its issuer, and the expectations \
         set below — and exposes its claims. Reading fails, naming the check, when the token is refused.",
    )
    .attr(Attribute::required("token", Type::String, "The attestation token (a JWT).").sensitive());
    for (k, d) in EXPECTATION_KEYS {
        if k == "local_state_dir" {
            continue;
        }
        b = b.attr(if k == "issuer" {
            Attribute::required(k, Type::String, d.trim_start_matches("Required. "))
        } else {
            Attribute::optional(k, expectation_type(k), d)
        });
    }
    b = b.attr(Attribute::computed("claims", claims_type(), "The verified claims."));
    Schema::new(0, b)
}

#[async_trait]
impl DataSource for VerifiedAttestation {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, config: Value) -> Result<(Value, Diagnostics), Diagnostics> {
        let mut data: VerifiedAttestationData = model::read(&config, "dcr_verified_attestation configuration")?;
        // One reading of expectations for the function and the data source: by key, as written.
        let expected = expected_from(&data.expectations.clone().into_value())
            .map_err(|e| Diagnostics::from(Diagnostic::error("Invalid expectations", e)))?;
        let jwks = match expected.inline_jwks() {
            Some(j) => j,
            None => self.state.clients()?.issuer_jwks(&expected.issuer).await,
        }
        .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot get the issuer's keys", e)))?;
        let claims = check(&data.token, &jwks, &expected).map_err(|e| {
            Diagnostics::from(Diagnostic::attribute_error(
                AttributePath::root("token"),
                "the attestation token was refused",
                e,
            ))
        })?;
        data.claims = claims_value(&claims);
        let state = data.into_value();
        Ok((state, Diagnostics::new()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_has_the_schemas_attributes() {
        model::check_fields::<VerifiedAttestationData>(&schema().block).unwrap();
    }
}
