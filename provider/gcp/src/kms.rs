//! Cloud KMS v1: key rings, crypto keys and versions, encrypt/decrypt, and key IAM.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::error::GcpError;
use crate::iam::AipIam;
use crate::retry::Idempotency::{Idempotent, NotIdempotent};
use crate::transport::Transport;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyRing {
    #[serde(skip_serializing)]
    pub name: String,
    #[serde(skip_serializing)]
    pub create_time: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CryptoKey {
    #[serde(skip_serializing)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_template: Option<VersionTemplate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destroy_scheduled_duration: Option<String>,
    #[serde(skip_serializing)]
    pub primary: Option<CryptoKeyVersion>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionTemplate {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protection_level: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CryptoKeyVersion {
    pub name: String,
    #[serde(default)]
    pub state: String,
    pub destroy_time: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionList {
    #[serde(default)]
    crypto_key_versions: Vec<CryptoKeyVersion>,
    next_page_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EncryptRequest {
    plaintext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_authenticated_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptResponse {
    name: String,
    ciphertext: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DecryptRequest {
    ciphertext: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    additional_authenticated_data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DecryptResponse {
    #[serde(default)]
    plaintext: String,
}

/// A wrapped (KMS-encrypted) secret and the key version that wrapped it.
#[derive(Clone, Debug)]
pub struct Wrapped {
    pub key_version: String,
    pub ciphertext: Vec<u8>,
}

#[derive(Clone)]
pub struct KmsClient {
    t: Arc<Transport>,
    base: String,
}

fn decode_b64(op: &str, s: &str) -> Result<Vec<u8>, GcpError> {
    B64.decode(s).map_err(|e| GcpError::Decode { operation: op.into(), detail: format!("bad base64: {e}") })
}

impl KmsClient {
    pub fn new(t: Arc<Transport>, base: &str) -> KmsClient {
        KmsClient { t, base: base.to_string() }
    }

    /// `parent` is `projects/P/locations/L`.
    pub async fn create_key_ring(&self, parent: &str, id: &str) -> Result<KeyRing, GcpError> {
        let url = format!("{}{parent}/keyRings", self.base);
        self.t
            .json(&format!("create key ring {parent}/keyRings/{id}"), NotIdempotent, |c| {
                c.post(&url).query(&[("keyRingId", id)]).json(&serde_json::json!({}))
            })
            .await
    }

    pub async fn get_key_ring(&self, name: &str) -> Result<Option<KeyRing>, GcpError> {
        let url = format!("{}{name}", self.base);
        self.t.json_opt(&format!("read key ring {name}"), |c| c.get(&url)).await
    }

    pub async fn create_crypto_key(&self, key_ring: &str, id: &str, key: &CryptoKey) -> Result<CryptoKey, GcpError> {
        let url = format!("{}{key_ring}/cryptoKeys", self.base);
        self.t
            .json(&format!("create crypto key {key_ring}/cryptoKeys/{id}"), NotIdempotent, |c| {
                c.post(&url).query(&[("cryptoKeyId", id)]).json(key)
            })
            .await
    }

    pub async fn get_crypto_key(&self, name: &str) -> Result<Option<CryptoKey>, GcpError> {
        let url = format!("{}{name}", self.base);
        self.t.json_opt(&format!("read crypto key {name}"), |c| c.get(&url)).await
    }

    pub async fn list_versions(&self, key: &str) -> Result<Vec<CryptoKeyVersion>, GcpError> {
        let url = format!("{}{key}/cryptoKeyVersions", self.base);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let q: Vec<(&str, String)> = token.iter().map(|t| ("pageToken", t.clone())).collect();
            let page: VersionList =
                self.t.json(&format!("list versions of {key}"), Idempotent, |c| c.get(&url).query(&q)).await?;
            out.extend(page.crypto_key_versions);
            match page.next_page_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => return Ok(out),
            }
        }
    }

    /// Schedules destruction of a key version (KMS keys can never be deleted outright).
    pub async fn destroy_version(&self, version: &str) -> Result<CryptoKeyVersion, GcpError> {
        let url = format!("{}{version}:destroy", self.base);
        self.t
            .json(&format!("destroy key version {version}"), Idempotent, |c| c.post(&url).json(&serde_json::json!({})))
            .await
    }

    /// Wraps `plaintext` (at most 64 KiB) with the key's primary version.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8], aad: Option<&[u8]>) -> Result<Wrapped, GcpError> {
        let op = format!("encrypt with {key}");
        let url = format!("{}{key}:encrypt", self.base);
        let body = EncryptRequest {
            plaintext: B64.encode(plaintext),
            additional_authenticated_data: aad.map(|a| B64.encode(a)),
        };
        let r: EncryptResponse = self.t.json(&op, Idempotent, |c| c.post(&url).json(&body)).await?;
        Ok(Wrapped { key_version: r.name, ciphertext: decode_b64(&op, &r.ciphertext)? })
    }

    pub async fn decrypt(&self, key: &str, ciphertext: &[u8], aad: Option<&[u8]>) -> Result<Vec<u8>, GcpError> {
        let op = format!("decrypt with {key}");
        let url = format!("{}{key}:decrypt", self.base);
        let body = DecryptRequest {
            ciphertext: B64.encode(ciphertext),
            additional_authenticated_data: aad.map(|a| B64.encode(a)),
        };
        let r: DecryptResponse = self.t.json(&op, Idempotent, |c| c.post(&url).json(&body)).await?;
        decode_b64(&op, &r.plaintext)
    }

    /// The IAM policy of a key ring or crypto key (`resource` is its full name). KMS's
    /// `SetIamPolicyRequest` takes an `updateMask`.
    pub fn iam(&self, resource: &str) -> AipIam {
        AipIam::new(self.t.clone(), &self.base, resource, Some("bindings,etag"))
    }
}
