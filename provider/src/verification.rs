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

use dcr_attestation::claims::{LOCAL_ISSUER, audiences, same_issuer};
use dcr_attestation::{Attested, Expectations, check_attested, verify};
use jsonwebtoken::jwk::JwkSet;
use tfplugin6::{Type, Value};

/// Where the simulated issuer's keys are looked up when neither `jwks` nor a configured local
/// backend says otherwise: the local backend's default state directory, relative to Terraform's
/// working directory.
pub const DEFAULT_LOCAL_STATE_DIR: &str = crate::config::DEFAULT_STATE_DIR;

/// The expectations, by key: what users write in HCL.
pub const EXPECTATION_KEYS: [(&str, &str); 10] = [
    ("issuer", "Required. The issuer the token must come from (e.g. `dcr_policy.x.issuer`)."),
    ("audience", "The token's `aud` must contain this."),
    ("image_digest", "The attested `submods.container.image_digest` must equal this."),
    ("nonce", "One of the token's `eat_nonce` values must equal this (e.g. the output manifest's SHA-256)."),
    (
        "require_confidential_hardware",
        "`true`: `swname` must be CONFIDENTIAL_SPACE and `hwmodel` confidential hardware.",
    ),
    ("allowed_hardware", "With `require_confidential_hardware`, the accepted `hwmodel` values."),
    ("allow_debug", "`false`: `dbgstat` must be `disabled-since-boot`."),
    ("valid_at", "An RFC 3339 instant at which `iat`, `nbf` and `exp` must hold."),
    ("jwks", "A JWK set (JSON) to verify the signature with, instead of the issuer's published keys."),
    ("local_state_dir", "Where dcr's simulated issuer publishes its keys. Defaults to `.dcr`."),
];

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expected {
    pub issuer: String,
    pub audience: Option<String>,
    pub attested: Attested,
    pub valid_at: Option<i64>,
    pub jwks: Option<String>,
    pub local_state_dir: Option<String>,
}

/// Reads expectations from an object or map value; unknown keys and wrong types are errors naming
/// the key.
pub fn expected_from(v: &Value) -> Result<Expected, String> {
    let v = match v {
        Value::Dynamic(_, inner) => inner.as_ref(),
        other => other,
    };
    let entries = v.entries().ok_or("the expectations must be an object, e.g. { issuer = dcr_policy.x.issuer }")?;
    let mut e = Expected::default();
    for (k, val) in entries {
        if val.is_null() {
            continue;
        }
        let text = || val.as_str().map(str::to_string).ok_or(format!("{k} must be a string"));
        let flag = || match val {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(format!("{k} must be true or false")),
        };
        match k.as_str() {
            "issuer" => e.issuer = text()?,
            "audience" => e.audience = Some(text()?),
            "image_digest" => e.attested.image_digest = Some(text()?),
            "nonce" => e.attested.nonce = Some(text()?),
            "require_confidential_hardware" => e.attested.require_confidential_hardware = flag()?,
            "allow_debug" => e.attested.allow_debug = Some(flag()?),
            "allowed_hardware" => {
                e.attested.allowed_hardware = val
                    .elements()
                    .iter()
                    .map(|h| h.as_str().map(str::to_string).ok_or("allowed_hardware must be a list of strings".into()))
                    .collect::<Result<_, String>>()?;
            }
            "valid_at" => {
                let t = text()?;
                let at = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| format!("valid_at {t:?} is not an RFC 3339 time such as \"2026-11-25T12:00:00Z\""))?;
                e.valid_at = Some(at.unix_timestamp());
            }
            "jwks" => e.jwks = Some(text()?),
            "local_state_dir" => e.local_state_dir = Some(text()?),
            other => {
                let known: Vec<&str> = EXPECTATION_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!("unknown expectation {other:?}; known: {}", known.join(", ")));
            }
        }
    }
    if e.issuer.is_empty() {
        return Err("the expectations must name the issuer (e.g. issuer = dcr_policy.x.issuer)".into());
    }
    Ok(e)
}

/// The keys given inline as `jwks`, if any.
pub fn inline_jwks(e: &Expected) -> Option<Result<JwkSet, String>> {
    e.jwks.as_ref().map(|j| serde_json::from_str(j).map_err(|err| format!("jwks is not a JWK set: {err}")))
}

/// The keys to check the signature with on an unconfigured provider (a function call): inline,
/// the simulated issuer's keys published in `local_state_dir`, or the issuer's OIDC discovery.
pub async fn jwks_without_backend(e: &Expected) -> Result<JwkSet, String> {
    if let Some(j) = inline_jwks(e) {
        return j;
    }
    if same_issuer(&e.issuer, LOCAL_ISSUER) {
        let dir = e.local_state_dir.clone().unwrap_or_else(|| DEFAULT_LOCAL_STATE_DIR.to_string());
        return crate::clients::read_published_jwks(std::path::Path::new(&dir));
    }
    let t = dcr_gcp::Transport::anonymous(dcr_gcp::retry::RetryPolicy::default()).map_err(|e| e.to_string())?;
    dcr_gcp::oidc::issuer_jwks(&t, &e.issuer).await.map_err(|e| e.to_string())
}

/// Verifies `token`: signature, issuer, audience, time (when asked), then the attested facts.
/// Returns the claims, or the failed check in words.
pub fn check(token: &str, jwks: &JwkSet, e: &Expected) -> Result<serde_json::Value, String> {
    let expect = Expectations {
        issuer: e.issuer.clone(),
        audiences: e.audience.iter().cloned().collect(),
        now: e.valid_at,
        leeway: 0,
        max_age: None,
    };
    let claims = verify(token, jwks, &expect).map_err(|err| err.to_string())?;
    check_attested(&claims, &e.attested).map_err(|err| err.to_string())?;
    Ok(claims)
}

/// The claims as Terraform sees them: a fixed object type, so results can be compared and
/// indexed in HCL, plus every claim as JSON.
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
    let s = |p: &str| Value::string(claims.pointer(p).and_then(|v| v.as_str()).unwrap_or_default());
    let list = |items: Vec<String>| Value::List(items.into_iter().map(Value::String).collect());
    let n = |p: &str| claims.pointer(p).and_then(|v| v.as_i64()).map(Value::int).unwrap_or(Value::Null);
    let support = claims
        .pointer("/submods/confidential_space/support_attributes")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Value::object([
        ("issuer", s("/iss")),
        ("subject", s("/sub")),
        ("audiences", list(audiences(&claims["aud"]))),
        ("issued_at", n("/iat")),
        ("expires_at", n("/exp")),
        ("nonces", list(dcr_attestation::verify::nonces(claims))),
        ("image_digest", s("/submods/container/image_digest")),
        ("image_reference", s("/submods/container/image_reference")),
        ("hwmodel", s("/hwmodel")),
        ("swname", s("/swname")),
        ("dbgstat", s("/dbgstat")),
        ("support_attributes", list(support)),
        ("project_id", s("/submods/gce/project_id")),
        ("instance_name", s("/submods/gce/instance_name")),
        ("claims_json", Value::string(claims.to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcr_attestation::AttestationClaims;
    use dcr_attestation::claims::SimulatedLaunch;

    fn expectations(pairs: &[(&str, Value)]) -> Value {
        Value::object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())))
    }

    #[test]
    fn expectations_are_read_by_key_and_refuse_unknown_ones() {
        let e = expected_from(&expectations(&[
            ("issuer", Value::string(LOCAL_ISSUER)),
            ("allow_debug", Value::Bool(false)),
            ("valid_at", Value::string("2026-11-25T12:00:00Z")),
        ]))
        .unwrap();
        assert_eq!(e.attested.allow_debug, Some(false));
        assert_eq!(e.valid_at, Some(1_795_608_000));
        assert!(
            expected_from(&expectations(&[("issuer", Value::string("i")), ("imagedigest", Value::string("x"))]))
                .unwrap_err()
                .contains("unknown expectation \"imagedigest\"")
        );
        assert!(expected_from(&expectations(&[("nonce", Value::string("x"))])).unwrap_err().contains("issuer"));
        assert!(
            expected_from(&expectations(&[("issuer", Value::string("i")), ("valid_at", Value::string("soon"))]))
                .is_err()
        );
    }

    #[test]
    fn a_token_verifies_and_each_failure_names_its_check() {
        let key = dcr_attestation::SigningKey::generate().unwrap();
        let launch = SimulatedLaunch { image_digest: "sha256:aa".into(), ..Default::default() };
        let token = key.sign(&AttestationClaims::simulated(&launch, 1000, "https://verifier", &["n1".into()])).unwrap();
        let mut e = Expected { issuer: LOCAL_ISSUER.into(), ..Default::default() };
        let claims = check(&token, &key.jwks(), &e).unwrap();
        let v = claims_value(&claims);
        assert_eq!(v.get("image_digest").as_str(), Some("sha256:aa"));
        assert_eq!(v.get("nonces"), &Value::List(vec![Value::string("n1")]));
        e.attested.nonce = Some("n2".into());
        assert!(check(&token, &key.jwks(), &e).unwrap_err().starts_with("nonce check failed"));
        e.attested.nonce = None;
        e.valid_at = Some(1000 + 7200);
        assert!(check(&token, &key.jwks(), &e).unwrap_err().starts_with("expiry check failed"));
        e.valid_at = None;
        e.issuer = "https://other".into();
        assert!(check(&token, &key.jwks(), &e).unwrap_err().starts_with("issuer check failed"));
    }
}
