//! Verifying an attestation token from HCL: the logic behind the `verify_attestation` provider
//! function (Terraform 1.8 and later) and the `dcr_verified_attestation` data source (any
//! Terraform). Both take the same expectations and return the same claims, or fail naming the
//! check that failed.
//!
//! The signature is always checked, against the issuer's JWKS: inline (`jwks`), the simulated
//! issuer's keys published in the local cloud's state directory, or the issuer's OIDC discovery
//! document. Time is checked only at a given instant (`valid_at`): a result is audited long after
//! its token expired, and a function must give the same answer whenever it is called.

use std::collections::BTreeMap;

use dcr_attestation::audit::ClaimsSummary;
pub use dcr_attestation::audit::{EXPECTATION_KEYS, Expected, check};
use dcr_attestation::claims::{LOCAL_ISSUER, same_issuer};
use jsonwebtoken::jwk::JwkSet;
use tfplugin6::{Type, Value};

/// Where the simulated issuer's keys are looked up when neither `jwks` nor a configured local
/// backend says otherwise: the local backend's default state directory, relative to Terraform's
/// working directory.
pub const DEFAULT_LOCAL_STATE_DIR: &str = crate::config::DEFAULT_STATE_DIR;

/// Reads expectations from an object or map value (see [`Expected::from_json`]).
pub fn expected_from(v: &Value) -> Result<Expected, String> {
    Expected::from_json(&tfplugin6::value::to_json(v))
}

/// The keys to check the signature with on an unconfigured provider (a function call): inline,
/// the simulated issuer's keys published in `local_state_dir`, or the issuer's OIDC discovery.
pub async fn jwks_without_backend(e: &Expected) -> Result<JwkSet, String> {
    if let Some(j) = e.inline_jwks() {
        return j;
    }
    if same_issuer(&e.issuer, LOCAL_ISSUER) {
        let dir = e.local_state_dir.clone().unwrap_or_else(|| DEFAULT_LOCAL_STATE_DIR.to_string());
        return dcr_local_cloud::read_published_jwks(std::path::Path::new(&dir));
    }
    let t = dcr_gcp::Transport::anonymous(dcr_gcp::retry::RetryPolicy::default()).map_err(|e| e.to_string())?;
    dcr_gcp::oidc::issuer_jwks(&t, &e.issuer).await.map_err(|e| e.to_string())
}

/// The verified claims as Terraform sees them: a fixed object type, so results can be compared
/// and indexed in HCL, plus every claim as JSON. The fields are [`ClaimsSummary`]'s.
pub fn claims_type() -> Type {
    let s = || Type::String;
    Type::Object(BTreeMap::from([
        ("issuer".to_string(), s()),
        ("subject".to_string(), s()),
        ("audiences".to_string(), Type::list(s())),
        ("issued_at".to_string(), Type::Number),
        ("expires_at".to_string(), Type::Number),
        ("nonces".to_string(), Type::list(s())),
        ("image_digest".to_string(), s()),
        ("image_reference".to_string(), s()),
        ("hwmodel".to_string(), s()),
        ("swname".to_string(), s()),
        ("dbgstat".to_string(), s()),
        ("support_attributes".to_string(), Type::list(s())),
        ("project_id".to_string(), s()),
        ("instance_name".to_string(), s()),
        ("claims_json".to_string(), s()),
    ]))
}

pub fn claims_value(claims: &serde_json::Value) -> Value {
    let summary = serde_json::to_value(ClaimsSummary::of(claims)).unwrap_or_default();
    // A summary that did not fit the type would be a bug; `the_summary_has_the_claims_type` tests it.
    tfplugin6::value::from_json(&summary, &claims_type()).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_the_claims_type() {
        let Type::Object(attrs) = claims_type() else { panic!("claims_type is an object type") };
        let summary = serde_json::to_value(ClaimsSummary::default()).unwrap();
        let fields: Vec<&String> = summary.as_object().unwrap().keys().collect();
        assert_eq!(fields, attrs.keys().collect::<Vec<_>>());
        let claims = serde_json::json!({"iss": "https://i", "aud": "a", "iat": 5, "eat_nonce": ["n1", "n2"],
                                        "submods": {"container": {"image_digest": "sha256:aa"}}});
        let back = tfplugin6::value::to_json(&claims_value(&claims));
        assert_eq!(back["image_digest"], "sha256:aa");
        assert_eq!(back["issued_at"], 5);
        assert_eq!(back["expires_at"], serde_json::Value::Null);
        assert_eq!(back["nonces"], serde_json::json!(["n1", "n2"]));
        assert_eq!(back["audiences"], serde_json::json!(["a"]));
    }

    #[test]
    fn expectations_from_hcl_values_are_read_by_key() {
        let v = Value::Dynamic(
            Type::Dynamic,
            Box::new(Value::object([("issuer", Value::string(LOCAL_ISSUER)), ("allow_debug", Value::Bool(false))])),
        );
        assert_eq!(expected_from(&v).unwrap().attested.allow_debug, Some(false));
        assert!(expected_from(&Value::string("x")).unwrap_err().contains("must be an object"));
    }
}
