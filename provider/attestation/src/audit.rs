//! What whoever audits a result checks of its token: the expectations, by the keys users write
//! (`issuer`, `image_digest`, `nonce`, …), the verification, and the claims summarised in fixed
//! fields. The provider's `verify_attestation` function and `dcr_verified_attestation` data
//! source use it, and so will the `dcr` command; finding the issuer's keys (I/O) is theirs.

use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::claims::audiences;
use crate::verify::{Attested, Expectations, check_attested, nonces, verify};

/// The expectations, by key, with what each asks.
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

/// What a token must satisfy, and where its issuer's keys may come from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expected {
    pub issuer: String,
    pub audience: Option<String>,
    pub attested: Attested,
    /// Unix seconds at which the token's times must hold; `None` checks no time (a result is
    /// audited long after its token expired).
    pub valid_at: Option<i64>,
    pub jwks: Option<String>,
    pub local_state_dir: Option<String>,
}

impl Expected {
    /// Reads expectations from a JSON object by key; null entries are skipped, and an unknown key
    /// or a value of the wrong type is an error naming the key.
    pub fn from_json(v: &Value) -> Result<Expected, String> {
        let entries =
            v.as_object().ok_or("the expectations must be an object, e.g. { issuer = dcr_policy.x.issuer }")?;
        let mut e = Expected::default();
        for (k, val) in entries.iter().filter(|(_, v)| !v.is_null()) {
            e.set(k, val)?;
        }
        if e.issuer.is_empty() {
            return Err("the expectations must name the issuer (e.g. issuer = dcr_policy.x.issuer)".into());
        }
        Ok(e)
    }

    fn set(&mut self, k: &str, val: &Value) -> Result<(), String> {
        let text = || val.as_str().map(str::to_string).ok_or(format!("{k} must be a string"));
        let flag = || match val {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
            _ => Err(format!("{k} must be true or false")),
        };
        match k {
            "issuer" => self.issuer = text()?,
            "audience" => self.audience = Some(text()?),
            "image_digest" => self.attested.image_digest = Some(text()?),
            "nonce" => self.attested.nonce = Some(text()?),
            "require_confidential_hardware" => self.attested.require_confidential_hardware = flag()?,
            "allow_debug" => self.attested.allow_debug = Some(flag()?),
            "allowed_hardware" => {
                let bad = || format!("{k} must be a list of strings");
                self.attested.allowed_hardware = val
                    .as_array()
                    .ok_or_else(bad)?
                    .iter()
                    .map(|h| h.as_str().map(str::to_string).ok_or_else(bad))
                    .collect::<Result<_, String>>()?;
            }
            "valid_at" => {
                let t = text()?;
                let at = time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| format!("valid_at {t:?} is not an RFC 3339 time such as \"2026-11-25T12:00:00Z\""))?;
                self.valid_at = Some(at.unix_timestamp());
            }
            "jwks" => self.jwks = Some(text()?),
            "local_state_dir" => self.local_state_dir = Some(text()?),
            other => {
                let known: Vec<&str> = EXPECTATION_KEYS.iter().map(|(k, _)| *k).collect();
                return Err(format!("unknown expectation {other:?}; known: {}", known.join(", ")));
            }
        }
        Ok(())
    }

    /// The keys given inline as `jwks`, if any.
    pub fn inline_jwks(&self) -> Option<Result<JwkSet, String>> {
        self.jwks.as_ref().map(|j| serde_json::from_str(j).map_err(|err| format!("jwks is not a JWK set: {err}")))
    }
}

/// Verifies `token`: signature, issuer, audience, time (when asked), then the attested facts.
/// Returns the claims, or the failed check in words.
pub fn check(token: &str, jwks: &JwkSet, e: &Expected) -> Result<Value, String> {
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

/// The claims an auditor looks at, in fixed fields (absent strings are empty), plus all of them
/// as JSON. Serialised, it is the `claims` object the provider exposes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ClaimsSummary {
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
    pub issued_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub nonces: Vec<String>,
    pub image_digest: String,
    pub image_reference: String,
    pub hwmodel: String,
    pub swname: String,
    pub dbgstat: String,
    pub support_attributes: Vec<String>,
    pub project_id: String,
    pub instance_name: String,
    pub claims_json: String,
}

impl ClaimsSummary {
    pub fn of(claims: &Value) -> ClaimsSummary {
        let s = |p: &str| claims.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        let n = |p: &str| claims.pointer(p).and_then(Value::as_i64);
        let support = claims
            .pointer("/submods/confidential_space/support_attributes")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        ClaimsSummary {
            issuer: s("/iss"),
            subject: s("/sub"),
            audiences: audiences(&claims["aud"]),
            issued_at: n("/iat"),
            expires_at: n("/exp"),
            nonces: nonces(claims),
            image_digest: s("/submods/container/image_digest"),
            image_reference: s("/submods/container/image_reference"),
            hwmodel: s("/hwmodel"),
            swname: s("/swname"),
            dbgstat: s("/dbgstat"),
            support_attributes: support,
            project_id: s("/submods/gce/project_id"),
            instance_name: s("/submods/gce/instance_name"),
            claims_json: claims.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::claims::{LOCAL_ISSUER, SimulatedLaunch};
    use crate::{AttestationClaims, SigningKey};

    #[test]
    fn expectations_are_read_by_key_and_refuse_unknown_ones() {
        let e = Expected::from_json(&json!({"issuer": LOCAL_ISSUER, "allow_debug": false,
                                            "valid_at": "2026-11-25T12:00:00Z", "audience": null}))
        .unwrap();
        assert_eq!(e.attested.allow_debug, Some(false));
        assert_eq!(e.valid_at, Some(1_795_608_000));
        assert_eq!(e.audience, None);
        let err = Expected::from_json(&json!({"issuer": "i", "imagedigest": "x"})).unwrap_err();
        assert!(err.contains("unknown expectation \"imagedigest\""), "{err}");
        assert!(Expected::from_json(&json!({"nonce": "x"})).unwrap_err().contains("issuer"));
        assert!(Expected::from_json(&json!({"issuer": "i", "valid_at": "soon"})).is_err());
        assert_eq!(Expected::from_json(&json!({"issuer": 1})).unwrap_err(), "issuer must be a string");
        let hw = Expected::from_json(&json!({"issuer": "i", "allowed_hardware": ["GCP_AMD_SEV"],
                                             "require_confidential_hardware": "true"}))
        .unwrap();
        assert_eq!(hw.attested.allowed_hardware, vec!["GCP_AMD_SEV".to_string()]);
        assert!(hw.attested.require_confidential_hardware);
        assert!(Expected::from_json(&json!({"issuer": "i", "allowed_hardware": "GCP_AMD_SEV"})).is_err());
        assert!(Expected::from_json(&json!("issuer")).unwrap_err().contains("must be an object"));
    }

    #[test]
    fn a_token_verifies_and_each_failure_names_its_check() {
        let key = SigningKey::generate().unwrap();
        let launch = SimulatedLaunch { image_digest: "sha256:aa".into(), ..Default::default() };
        let token = key.sign(&AttestationClaims::simulated(&launch, 1000, "https://verifier", &["n1".into()])).unwrap();
        let mut e = Expected { issuer: LOCAL_ISSUER.into(), ..Default::default() };
        let claims = check(&token, &key.jwks(), &e).unwrap();
        let summary = ClaimsSummary::of(&claims);
        assert_eq!(summary.image_digest, "sha256:aa");
        assert_eq!(summary.nonces, vec!["n1".to_string()]);
        assert_eq!(summary.issued_at, Some(1000));
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
