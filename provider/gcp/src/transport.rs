//! The one place requests are sent: bearer token, retries with backoff and jitter, error mapping.

use std::sync::Arc;

use rand::Rng;
use reqwest::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::auth::TokenSource;
use crate::error::{GcpError, parse_error_body};
use crate::retry::{Idempotency, RetryPolicy, is_retryable_status};

#[derive(Clone, Copy)]
enum Credentials {
    Bearer,
    None,
}

pub struct Transport {
    client: Client,
    tokens: Arc<dyn TokenSource>,
    retry: RetryPolicy,
}

impl Transport {
    /// A transport for endpoints that take no credentials (a third party's OIDC discovery):
    /// only [`send_anonymous`](Self::send_anonymous) works on it.
    pub fn anonymous(retry: RetryPolicy) -> Result<Transport, GcpError> {
        Transport::new(Arc::new(crate::auth::NoCredentials), retry)
    }

    pub fn new(tokens: Arc<dyn TokenSource>, retry: RetryPolicy) -> Result<Transport, GcpError> {
        let client = Client::builder()
            .user_agent(concat!("terraform-provider-dcr/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| GcpError::Decode { operation: "build HTTP client".into(), detail: e.to_string() })?;
        Ok(Transport { client, tokens, retry })
    }

    /// Sends the request `build` makes (it is called again for every attempt) and returns the
    /// successful response. Retries 408/429/5xx and transport failures when `idem` allows it;
    /// a connection that could not be opened is always retried, since nothing was sent.
    pub async fn send(
        &self,
        operation: &str,
        idem: Idempotency,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, GcpError> {
        self.send_as(operation, idem, Credentials::Bearer, build).await
    }

    /// [`send`](Self::send) without credentials: for endpoints that must never see our token
    /// (STS, which authenticates the subject token itself; a third party's OIDC discovery).
    pub async fn send_anonymous(
        &self,
        operation: &str,
        idem: Idempotency,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, GcpError> {
        self.send_as(operation, idem, Credentials::None, build).await
    }

    async fn send_as(
        &self,
        operation: &str,
        idem: Idempotency,
        credentials: Credentials,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Response, GcpError> {
        let mut attempt = 1;
        loop {
            let req = match credentials {
                Credentials::Bearer => {
                    let auth = self.tokens.auth().await?;
                    let req = build(&self.client).bearer_auth(auth.token);
                    match auth.quota_project {
                        Some(q) => req.header(crate::auth::QUOTA_PROJECT_HEADER, q),
                        None => req,
                    }
                }
                Credentials::None => build(&self.client),
            };
            let can_retry = attempt < self.retry.max_attempts;
            match req.send().await {
                Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 308 => return Ok(resp),
                Ok(resp) => {
                    let status = resp.status();
                    if can_retry && idem == Idempotency::Idempotent && is_retryable_status(status) {
                        tracing::debug!(operation, %status, attempt, "retrying");
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        let (message, reason) = parse_error_body(&body);
                        return Err(GcpError::Api { operation: operation.to_string(), status, reason, message });
                    }
                }
                Err(e) => {
                    let retry = can_retry && (e.is_connect() || idem == Idempotency::Idempotent);
                    if !retry {
                        let url = e.url().map(|u| u.to_string()).unwrap_or_default();
                        return Err(GcpError::Network { operation: operation.to_string(), url, source: e });
                    }
                    tracing::debug!(operation, error = %e, attempt, "retrying after transport error");
                }
            }
            let unit: f64 = rand::rng().random();
            tokio::time::sleep(self.retry.backoff(attempt, unit)).await;
            attempt += 1;
        }
    }

    /// [`send`](Self::send), then decodes the JSON body.
    pub async fn json<T: DeserializeOwned>(
        &self,
        operation: &str,
        idem: Idempotency,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<T, GcpError> {
        let resp = self.send(operation, idem, build).await?;
        decode_json(operation, resp).await
    }

    /// Like [`json`](Self::json) but a 404 is `Ok(None)`: for reads that check existence.
    pub async fn json_opt<T: DeserializeOwned>(
        &self,
        operation: &str,
        build: impl Fn(&Client) -> RequestBuilder,
    ) -> Result<Option<T>, GcpError> {
        match self.json(operation, Idempotency::Idempotent, build).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub async fn decode_json<T: DeserializeOwned>(operation: &str, resp: Response) -> Result<T, GcpError> {
    let bytes =
        resp.bytes().await.map_err(|e| GcpError::Decode { operation: operation.into(), detail: e.to_string() })?;
    serde_json::from_slice(&bytes).map_err(|e| GcpError::Decode {
        operation: operation.into(),
        detail: format!("{e}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(500)])),
    })
}

/// Percent-encodes one path segment (an object name may contain `/`, which must become `%2F`).
pub fn segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::auth::{StaticToken, WithQuotaProject};
    use crate::retry::Idempotency::Idempotent;

    /// Accepts one request on loopback, answers `{}`, and returns the request head, lowercased.
    async fn one_request(listener: tokio::net::TcpListener) -> String {
        let (mut s, _) = listener.accept().await.expect("accept");
        let (mut buf, mut got) = (vec![0u8; 8192], Vec::new());
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "connection closed before the request head ended");
            got.extend_from_slice(&buf[..n]);
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        s.write_all(answer.as_bytes()).await.expect("write");
        String::from_utf8_lossy(&got).to_lowercase()
    }

    #[tokio::test]
    async fn a_quota_project_goes_out_as_x_goog_user_project() {
        for (tokens, quota) in [
            (
                Arc::new(WithQuotaProject { inner: StaticToken("tok".into()), quota_project: "billing-1".into() })
                    as Arc<dyn TokenSource>,
                true,
            ),
            (Arc::new(StaticToken("tok".into())) as Arc<dyn TokenSource>, false),
        ] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let url = format!("http://{}/x", listener.local_addr().expect("addr"));
            let server = tokio::spawn(one_request(listener));
            let t = Transport::new(tokens, RetryPolicy::default()).expect("transport");
            let _: serde_json::Value = t.json("probe", Idempotent, |c| c.get(&url)).await.expect("request");
            let head = server.await.expect("server");
            assert!(head.contains("authorization: bearer tok"), "{head}");
            assert_eq!(head.contains("x-goog-user-project: billing-1"), quota, "{head}");
        }
    }
}
