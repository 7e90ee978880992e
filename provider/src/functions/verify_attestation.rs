//! `provider::dcr::verify_attestation(token, expected)`: checks an attestation token and returns
//! its claims, or fails naming the check that failed. Terraform calls functions on a provider it
//! has not configured, so the keys come from `expected` (`jwks`, `local_state_dir`) or from the
//! issuer's OIDC discovery document.

use async_trait::async_trait;
use tfplugin6::{Function, FunctionError, FunctionSignature, Parameter, Type, Value};

use crate::verification::{EXPECTATION_KEYS, check, claims_type, claims_value, expected_from, jwks_without_backend};

pub struct VerifyAttestation;

fn argument_error(argument: i64, text: impl Into<String>) -> FunctionError {
    FunctionError { text: text.into(), argument: Some(argument) }
}

#[async_trait]
impl Function for VerifyAttestation {
    fn name(&self) -> &'static str {
        "verify_attestation"
    }

    fn signature(&self) -> FunctionSignature {
        let keys: Vec<String> = EXPECTATION_KEYS.iter().map(|(k, d)| format!("- `{k}`: {d}")).collect();
        FunctionSignature {
            parameters: vec![
                Parameter {
                    name: "token".into(),
                    ty: Type::String,
                    description: "The attestation token (a JWT), e.g. `dcr_workload.x.attestation_token`.".into(),
                },
                Parameter {
                    name: "expected".into(),
                    ty: Type::Dynamic,
                    description: format!("An object of expectations:\n{}", keys.join("\n")),
                },
            ],
            return_type: claims_type(),
            summary: "Verify an attestation token and return its claims".into(),
            description: "Checks the token's signature against its issuer's keys, its issuer, and whatever else \
                          `expected` asks (audience, image digest, nonce, hardware, debug status, validity at an \
                          instant). Returns the claims, or fails naming the check that failed."
                .into(),
        }
    }

    async fn call(&self, args: Vec<Value>) -> Result<Value, FunctionError> {
        let token = args.first().and_then(Value::as_str).ok_or_else(|| argument_error(0, "token must be a string"))?;
        let expected = expected_from(args.get(1).unwrap_or(&Value::Null)).map_err(|e| argument_error(1, e))?;
        let jwks = jwks_without_backend(&expected)
            .await
            .map_err(|e| argument_error(1, format!("cannot get the issuer's keys: {e}")))?;
        let claims =
            check(token, &jwks, &expected).map_err(|e| argument_error(0, format!("the token was refused: {e}")))?;
        Ok(claims_value(&claims))
    }
}
