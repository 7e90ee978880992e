//! The TEE simulator: Confidential Space's teeserver API on a unix socket, minting through the
//! local cloud's simulated issuer.
//!
//! Confidential Space's launcher serves `/v1/token` on `/run/container_launcher/teeserver.sock`
//! inside the VM: `GET` returns the default token (audience `https://sts.googleapis.com`), `POST`
//! with `{"audience", "nonces", "token_type"}` a custom one. This server answers the same requests
//! with the same limits (token type required, unknown fields refused, at most 6 nonces of 10–74
//! bytes), and every token states the launch as it happened — above all the digest of the image
//! that actually runs — on hardware that says it is simulated.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use dcr_attestation::AttestationClaims;
use dcr_attestation::claims::{STS_AUDIENCE, SimulatedLaunch};
use serde::Deserialize;

use crate::error::LocalCloudError;
use crate::issuer::SimulatedIssuer;

/// Nonce limits of Confidential Space custom tokens.
pub const MAX_NONCES: usize = 6;
pub const MIN_NONCE_BYTES: usize = 10;
pub const MAX_NONCE_BYTES: usize = 74;

/// The body of a custom-token request, as the teeserver takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenOptions {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    nonces: Vec<String>,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted, as the real teeserver does, and not needed for OIDC tokens
    token_type_options: Option<serde_json::Value>,
}

struct Simulator {
    issuer: SimulatedIssuer,
    launch: SimulatedLaunch,
}

/// A running TEE simulator; dropping it stops the server and removes the socket.
pub struct TeeSimulator {
    socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TeeSimulator {
    /// Serves the teeserver API for one launch on `socket` (replacing a stale socket file).
    pub async fn start(
        socket: &Path,
        issuer: SimulatedIssuer,
        launch: SimulatedLaunch,
    ) -> Result<TeeSimulator, LocalCloudError> {
        let io = |e: std::io::Error| LocalCloudError::TeeSocket { path: socket.to_path_buf(), source: e };
        if let Some(parent) = socket.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        match std::fs::remove_file(socket) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(socket).map_err(io)?;
        let app =
            Router::new().route("/v1/token", any(token)).with_state(std::sync::Arc::new(Simulator { issuer, launch }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(TeeSimulator { socket: socket.to_path_buf(), stop: Some(stop), task: Some(task) })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub async fn shutdown(mut self) {
        self.stop_now();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for TeeSimulator {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Checks a custom-token request; `Ok` holds the audience and nonces to mint with.
fn check_options(body: &[u8]) -> Result<(String, Vec<String>), String> {
    let o: TokenOptions =
        serde_json::from_slice(body).map_err(|e| format!("failed to parse POST body as TokenOptions: {e}"))?;
    if o.token_type.is_empty() {
        return Err("token_type is a required parameter".into());
    }
    if o.token_type != "OIDC" {
        return Err(format!("token_type {:?} is not supported by the simulated TEE (only OIDC)", o.token_type));
    }
    if o.audience.is_empty() {
        return Err("audience is required for a custom token; use GET /v1/token for the default token".into());
    }
    if o.nonces.len() > MAX_NONCES {
        return Err(format!("got {} nonces; at most {MAX_NONCES} are allowed", o.nonces.len()));
    }
    if let Some(n) = o.nonces.iter().find(|n| !(MIN_NONCE_BYTES..=MAX_NONCE_BYTES).contains(&n.len())) {
        return Err(format!(
            "nonce of {} bytes: each nonce must be {MIN_NONCE_BYTES} to {MAX_NONCE_BYTES} bytes",
            n.len()
        ));
    }
    Ok((o.audience, o.nonces))
}

async fn token(State(sim): State<std::sync::Arc<Simulator>>, method: Method, body: Bytes) -> Response {
    let (audience, nonces) = match method {
        Method::GET => (STS_AUDIENCE.to_string(), Vec::new()),
        Method::POST => match check_options(&body) {
            Ok(options) => options,
            Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
        },
        other => {
            return refuse(StatusCode::BAD_REQUEST, format!("TEE server received an invalid HTTP method: {other}"));
        }
    };
    let claims = AttestationClaims::simulated(&sim.launch, crate::api::unix_now(), &audience, &nonces);
    let sim = sim.clone();
    match tokio::task::spawn_blocking(move || sim.issuer.mint(&claims)).await {
        Ok(Ok(token)) => (StatusCode::OK, token).into_response(),
        Ok(Err(e)) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to mint the attestation token: {e}")),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("failed to mint the attestation token: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_token_requests_follow_the_teeserver_limits() {
        let ok = br#"{"audience":"gs://out/x/","nonces":["0123456789abcdef"],"token_type":"OIDC"}"#;
        assert_eq!(check_options(ok).unwrap(), ("gs://out/x/".to_string(), vec!["0123456789abcdef".to_string()]));
        for (body, says) in [
            (r#"{"audience":"a","nonces":[]}"#, "token_type is a required"),
            (r#"{"audience":"a","token_type":"PKI"}"#, "only OIDC"),
            (r#"{"token_type":"OIDC"}"#, "audience is required"),
            (r#"{"audience":"a","token_type":"OIDC","extra":1}"#, "unknown field"),
            (r#"{"audience":"a","token_type":"OIDC","nonces":["short"]}"#, "10 to 74 bytes"),
            (
                r#"{"audience":"a","token_type":"OIDC","nonces":["0123456789","0123456789","0123456789","0123456789","0123456789","0123456789","0123456789"]}"#,
                "at most 6",
            ),
        ] {
            let err = check_options(body.as_bytes()).unwrap_err();
            assert!(err.contains(says), "{body}: {err}");
        }
        let long = format!(r#"{{"audience":"a","token_type":"OIDC","nonces":["{}"]}}"#, "x".repeat(75));
        assert!(check_options(long.as_bytes()).is_err());
    }
}
