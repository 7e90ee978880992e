//! Security Token Service v1: exchanging a workload's OIDC token (a Confidential Space
//! attestation) for a federated access token, as Google's auth libraries do it — a form-encoded
//! RFC 8693 request, sent without our own credentials.

use std::sync::Arc;

use serde::Deserialize;

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::{Transport, decode_json};

pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A federated access token. Debug output never shows the token.
#[derive(Clone, Deserialize)]
pub struct FederatedToken {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub expires_in: i64,
}

impl std::fmt::Debug for FederatedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederatedToken").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

#[derive(Clone)]
pub struct StsClient {
    t: Arc<Transport>,
    /// `https://sts.googleapis.com/v1/` or the local cloud's.
    base: String,
}

impl StsClient {
    pub fn new(t: Arc<Transport>, base: &str) -> StsClient {
        StsClient { t, base: base.to_string() }
    }

    /// Exchanges `subject_token` (a JWT) at `audience` (a workload identity provider's full
    /// resource name, `//iam.googleapis.com/projects/N/...`). Exchanging is free of side effects,
    /// so it is retried like a read.
    pub async fn exchange(&self, audience: &str, subject_token: &str) -> Result<FederatedToken, GcpError> {
        let url = format!("{}token", self.base);
        let form = [
            ("grant_type", GRANT_TYPE),
            ("audience", audience),
            ("scope", CLOUD_PLATFORM_SCOPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("subject_token_type", JWT_TOKEN_TYPE),
            ("subject_token", subject_token),
        ];
        let op = format!("exchange a token at {audience}");
        let resp = self.t.send_anonymous(&op, Idempotent, |c| c.post(&url).form(&form)).await?;
        decode_json(&op, resp).await
    }
}
