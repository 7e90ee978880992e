//! The TEE's token service: Confidential Space's teeserver on its unix socket (`GET /v1/token` for
//! the default token, `POST /v1/token` for a custom audience and nonces), with the default token
//! file as a fallback for VMs that only write the file.

use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use crate::error::LauncherError;

pub struct TeeClient {
    socket: PathBuf,
    token_file: PathBuf,
}

impl TeeClient {
    pub fn new(socket: &Path, token_file: &Path) -> TeeClient {
        TeeClient { socket: socket.to_path_buf(), token_file: token_file.to_path_buf() }
    }

    /// The default token (audience `https://sts.googleapis.com`): what STS exchanges.
    pub async fn default_token(&self) -> Result<String, LauncherError> {
        if self.socket.exists() {
            return self.request(hyper::Method::GET, None).await;
        }
        match tokio::fs::read_to_string(&self.token_file).await {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            Ok(_) | Err(_) => Err(LauncherError::Attestation(format!(
                "no attestation token: neither the teeserver socket {} nor the token file {} is there. \
                 Run the image on Confidential Space (or dcr's local backend), not as a plain container",
                self.socket.display(),
                self.token_file.display()
            ))),
        }
    }

    /// A token for `audience` carrying `nonces`.
    pub async fn custom_token(&self, audience: &str, nonces: &[String]) -> Result<String, LauncherError> {
        let body = json!({"audience": audience, "nonces": nonces, "token_type": "OIDC"});
        self.request(hyper::Method::POST, Some(serde_json::to_vec(&body).expect("json"))).await
    }

    async fn request(&self, method: hyper::Method, body: Option<Vec<u8>>) -> Result<String, LauncherError> {
        let what = format!("{method} /v1/token on {}", self.socket.display());
        let fail = |detail: String| LauncherError::Attestation(format!("the teeserver refused {what}: {detail}"));
        let stream = tokio::net::UnixStream::connect(&self.socket).await.map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| fail(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri("/v1/token")
            .header(hyper::header::HOST, "localhost")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| fail(e.to_string()))?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).trim().to_string();
        if !status.is_success() {
            return Err(fail(format!("{status}: {text}")));
        }
        Ok(text)
    }
}

/// Confidential Space's default token lives one hour ("tokens last one hour, and are
/// automatically refreshed": https://cloud.google.com/confidential-computing/confidential-vm/docs/reference/cs-attestation-policies),
/// and so does the federated token STS gives for it. A token older than this is fetched again
/// before it is exchanged, so every exchange leaves the next step most of an hour.
pub const REFRESH_AFTER: std::time::Duration = std::time::Duration::from_secs(45 * 60);

/// The TEE's default attestation token, with the time it was fetched.
pub struct Attestation {
    tee: TeeClient,
    token: String,
    fetched: tokio::time::Instant,
}

impl Attestation {
    pub async fn fetch(tee: TeeClient) -> Result<Attestation, LauncherError> {
        let token = tee.default_token().await?;
        Ok(Attestation { tee, token, fetched: tokio::time::Instant::now() })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The token, fetched again first when it is at least `age` old (`Duration::ZERO`: always).
    pub async fn refreshed_if_older(&mut self, age: std::time::Duration) -> Result<&str, LauncherError> {
        if self.fetched.elapsed() >= age {
            self.token = self.tee.default_token().await?;
            self.fetched = tokio::time::Instant::now();
        }
        Ok(&self.token)
    }

    pub async fn custom_token(&self, audience: &str, nonces: &[String]) -> Result<String, LauncherError> {
        self.tee.custom_token(audience, nonces).await
    }
}

/// The claims of a token from our own TEE, read without verifying: the launcher trusts its TEE
/// and only wants to know what it attests (the image digest). Verifiers check the signature.
pub fn unverified_claims(token: &str) -> Result<Value, LauncherError> {
    let bad = |why: &str| LauncherError::Attestation(format!("the TEE's token is not a JWT: {why}"));
    let payload = token.split('.').nth(1).ok_or_else(|| bad("it has no payload"))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("the payload is not base64url"))?;
    serde_json::from_slice(&bytes).map_err(|_| bad("the payload is not JSON"))
}

/// The digest of the image the TEE launched, as its token states it.
pub fn attested_image_digest(token: &str) -> Result<String, LauncherError> {
    let claims = unverified_claims(token)?;
    claims
        .pointer("/submods/container/image_digest")
        .and_then(Value::as_str)
        .filter(|d| dcr_attestation::claims::is_sha256_digest(d))
        .map(str::to_string)
        .ok_or_else(|| {
            LauncherError::Attestation("the TEE's token names no image digest (submods.container.image_digest)".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_comes_from_the_container_claims() {
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
        let digest = format!("sha256:{}", "ab".repeat(32));
        let token = format!("h.{}.s", enc(json!({"submods": {"container": {"image_digest": digest}}})));
        assert_eq!(attested_image_digest(&token).unwrap(), digest);
        let without = format!("h.{}.s", enc(json!({"submods": {}})));
        assert!(attested_image_digest(&without).unwrap_err().to_string().contains("image_digest"));
        assert!(attested_image_digest("garbage").is_err());
    }
}
