//! OIDC discovery: from an issuer to the keys that verify its tokens
//! (`<issuer>/.well-known/openid-configuration` → `jwks_uri` → JWK set). Sent without our
//! credentials: an issuer is a third party.

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::{Transport, decode_json};

#[derive(Debug, Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The discovery document's URL for `issuer` (a trailing slash on the issuer is tolerated).
pub fn discovery_url(issuer: &str) -> String {
    format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'))
}

/// The JWK set of `issuer`, found through its discovery document.
pub async fn issuer_jwks(t: &Transport, issuer: &str) -> Result<JwkSet, GcpError> {
    fetch_jwks(t, &discovery_url(issuer)).await
}

/// Fetches the JWK set the discovery document at `discovery` points to.
pub async fn fetch_jwks(t: &Transport, discovery: &str) -> Result<JwkSet, GcpError> {
    let op = format!("read OIDC discovery document {discovery}");
    let d: Discovery = decode_json(&op, t.send_anonymous(&op, Idempotent, |c| c.get(discovery)).await?).await?;
    let op = format!("read JWKS {}", d.jwks_uri);
    decode_json(&op, t.send_anonymous(&op, Idempotent, |c| c.get(&d.jwks_uri)).await?).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn discovery_sits_under_the_issuer() {
        assert_eq!(
            super::discovery_url("https://confidentialcomputing.googleapis.com/"),
            "https://confidentialcomputing.googleapis.com/.well-known/openid-configuration"
        );
    }
}
