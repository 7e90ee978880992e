//! `data "dcr_verified_attestation"`: the `verify_attestation` function for every Terraform
//! version (functions need 1.8). On a configured provider the simulated issuer's keys come from
//! the local backend's own state directory.

use std::sync::Arc;

use async_trait::async_trait;
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{AttributePath, DataSource, Diagnostic, Diagnostics, Type, Value};

use crate::provider::ProviderState;
use crate::verification::{EXPECTATION_KEYS, check, claims_type, claims_value, expected_from, inline_jwks};

pub const TYPE_NAME: &str = "dcr_verified_attestation";

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
        let mut expectations = config.clone();
        expectations.set("token", Value::Null);
        expectations.set("claims", Value::Null);
        let expected = expected_from(&expectations)
            .map_err(|e| Diagnostics::from(Diagnostic::error("Invalid expectations", e)))?;
        let jwks = match inline_jwks(&expected) {
            Some(j) => j,
            None => self.state.clients()?.issuer_jwks(&expected.issuer).await,
        }
        .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot get the issuer's keys", e)))?;
        let token = config.get("token").as_str().unwrap_or_default();
        let claims = check(token, &jwks, &expected).map_err(|e| {
            Diagnostics::from(Diagnostic::attribute_error(
                AttributePath::root("token"),
                "the attestation token was refused",
                e,
            ))
        })?;
        let mut state = config;
        state.set("claims", claims_value(&claims));
        Ok((state, Diagnostics::new()))
    }
}
