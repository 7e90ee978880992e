//! The Confidential Space attestation token claim set (reference/gcp.md §6.6), and the values
//! dcr's simulated TEE writes instead of real hardware evidence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Google's Confidential Space token issuer (the `iss` claim; the OIDC provider's issuerUri).
pub const GOOGLE_ISSUER: &str = "https://confidentialcomputing.googleapis.com";
/// The issuer of dcr's local cloud. `.invalid` never resolves: the local cloud recognises it and
/// serves its discovery document and JWKS itself.
pub const LOCAL_ISSUER: &str = "https://simulated-tee.dcr.invalid";
/// The audience of a default Confidential Space token.
pub const STS_AUDIENCE: &str = "https://sts.googleapis.com";

/// The `hwmodel` of every locally issued token: no confidential-hardware policy accepts it.
pub const SIMULATED_HWMODEL: &str = "DCR_SIMULATED_TEE";
/// The `swname` of every locally issued token (Google's images say `CONFIDENTIAL_SPACE`).
pub const SIMULATED_SWNAME: &str = "DCR_SIMULATED_CONFIDENTIAL_SPACE";
pub const CONFIDENTIAL_SPACE: &str = "CONFIDENTIAL_SPACE";
/// `dbgstat` of a production image; debug images say `enabled`.
pub const DEBUG_DISABLED: &str = "disabled-since-boot";
pub const DEBUG_ENABLED: &str = "enabled";

/// Confidential hardware a policy may require, as Confidential Space names it in `hwmodel`.
pub const CONFIDENTIAL_HARDWARE: [&str; 3] = ["GCP_AMD_SEV", "GCP_AMD_SEV_ES", "GCP_INTEL_TDX"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AttestationClaims {
    pub iss: String,
    pub sub: String,
    /// A string or a list of strings.
    pub aud: Value,
    pub iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    pub exp: i64,
    /// A string or a list of strings (custom tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eat_nonce: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eat_profile: Option<String>,
    #[serde(default)]
    pub secboot: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oemid: Option<u64>,
    pub hwmodel: String,
    pub swname: String,
    #[serde(default)]
    pub swversion: Vec<String>,
    pub dbgstat: String,
    #[serde(default)]
    pub google_service_accounts: Vec<String>,
    #[serde(default)]
    pub submods: Submods,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Submods {
    #[serde(default)]
    pub confidential_space: ConfidentialSpace,
    #[serde(default)]
    pub container: Container,
    #[serde(default)]
    pub gce: Gce,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfidentialSpace {
    #[serde(default)]
    pub support_attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring_enabled: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub image_reference: String,
    pub image_digest: String,
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub restart_policy: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub env_override: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub cmd_override: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Gce {
    pub zone: String,
    pub project_id: String,
    pub project_number: String,
    pub instance_name: String,
    pub instance_id: String,
}

impl AttestationClaims {
    /// The audiences, whether `aud` is one string or a list.
    pub fn audiences(&self) -> Vec<String> {
        audiences(&self.aud)
    }
}

/// The audiences of an `aud` claim.
pub fn audiences(aud: &Value) -> Vec<String> {
    string_or_list(aud)
}

/// A claim that is one string or a list of strings (`aud`, `eat_nonce`), as a list.
pub fn string_or_list(aud: &Value) -> Vec<String> {
    match aud {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// Whether `s` is a `sha256:` digest of 64 lowercase hex digits.
pub fn is_sha256_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Compares issuers the way OIDC clients do in practice: a trailing slash does not matter.
pub fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Where and what a simulated TEE launched: the facts its tokens attest to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimulatedLaunch {
    pub image_reference: String,
    pub image_digest: String,
    pub project_id: String,
    pub project_number: String,
    pub zone: String,
    pub instance_name: String,
    pub instance_id: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub service_accounts: Vec<String>,
}

/// Lifetime of an attestation token, as Confidential Space issues them.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;

impl AttestationClaims {
    /// The claims dcr's simulated TEE attests to: the launch as it happened, on hardware and with a
    /// debug status that say "simulated" (no secure boot, no support attributes), so that no policy
    /// requiring confidential hardware accepts them.
    pub fn simulated(launch: &SimulatedLaunch, now: i64, audience: &str, nonces: &[String]) -> AttestationClaims {
        let l = launch;
        AttestationClaims {
            iss: LOCAL_ISSUER.to_string(),
            sub: format!(
                "https://www.googleapis.com/compute/v1/projects/{}/zones/{}/instances/{}",
                l.project_id, l.zone, l.instance_name
            ),
            aud: Value::String(audience.to_string()),
            iat: now,
            nbf: Some(now),
            exp: now + TOKEN_LIFETIME_SECS,
            eat_nonce: match nonces {
                [] => None,
                [one] => Some(Value::String(one.clone())),
                many => Some(Value::from(many.to_vec())),
            },
            eat_profile: Some(
                "https://cloud.google.com/confidential-computing/confidential-space/docs/reference/token-claims".into(),
            ),
            secboot: false,
            oemid: None,
            hwmodel: SIMULATED_HWMODEL.to_string(),
            swname: SIMULATED_SWNAME.to_string(),
            swversion: vec!["0".to_string()],
            dbgstat: DEBUG_ENABLED.to_string(),
            google_service_accounts: l.service_accounts.clone(),
            submods: Submods {
                confidential_space: ConfidentialSpace { support_attributes: Vec::new(), monitoring_enabled: None },
                container: Container {
                    image_reference: l.image_reference.clone(),
                    image_digest: l.image_digest.clone(),
                    image_id: String::new(),
                    restart_policy: "Never".into(),
                    args: l.args.clone(),
                    env: l.env.clone(),
                    env_override: None,
                    cmd_override: None,
                },
                gce: Gce {
                    zone: l.zone.clone(),
                    project_id: l.project_id.clone(),
                    project_number: l.project_number.clone(),
                    instance_name: l.instance_name.clone(),
                    instance_id: l.instance_id.clone(),
                },
            },
        }
    }
}
