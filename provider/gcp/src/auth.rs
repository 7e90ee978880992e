//! Where bearer tokens come from: a fixed token (the local cloud, or `GOOGLE_OAUTH_ACCESS_TOKEN`)
//! or Application Default Credentials through google-cloud-auth.
//!
//! Credentials may name a quota project (gcloud's ADC file `quota_project_id`, or
//! `GOOGLE_CLOUD_QUOTA_PROJECT`): requests then carry `x-goog-user-project`, which Google needs
//! to bill and rate-limit calls made with end-user credentials
//! (https://cloud.google.com/docs/authentication/troubleshoot-adc#user-creds-client-based).

use async_trait::async_trait;

use crate::error::GcpError;

/// What a request presents: the bearer token and, when the credentials name one, the quota project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    pub token: String,
    pub quota_project: Option<String>,
}

/// The header Google reads the quota project from.
pub const QUOTA_PROJECT_HEADER: &str = "x-goog-user-project";

#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<String, GcpError>;

    /// The token and quota project for one request.
    async fn auth(&self) -> Result<Auth, GcpError> {
        Ok(Auth { token: self.token().await?, quota_project: None })
    }
}

/// A token source whose requests also name `quota_project` (`GOOGLE_CLOUD_QUOTA_PROJECT` beside
/// `GOOGLE_OAUTH_ACCESS_TOKEN`, as google-cloud-auth reads it beside ADC).
pub struct WithQuotaProject<T> {
    pub inner: T,
    pub quota_project: String,
}

#[async_trait]
impl<T: TokenSource> TokenSource for WithQuotaProject<T> {
    async fn token(&self) -> Result<String, GcpError> {
        self.inner.token().await
    }
    async fn auth(&self) -> Result<Auth, GcpError> {
        Ok(Auth { token: self.inner.token().await?, quota_project: Some(self.quota_project.clone()) })
    }
}

/// A token that never changes.
pub struct StaticToken(pub String);

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<String, GcpError> {
        Ok(self.0.clone())
    }
}

/// No credentials: for transports that only send anonymous requests.
pub struct NoCredentials;

#[async_trait]
impl TokenSource for NoCredentials {
    async fn token(&self) -> Result<String, GcpError> {
        Err(GcpError::Credentials("this client sends no credentials".into()))
    }
}

#[cfg(feature = "adc")]
/// Application Default Credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's ADC file, or the
/// metadata server), with the cloud-platform scope. google-cloud-auth caches and refreshes tokens.
pub struct AdcTokens(google_cloud_auth::credentials::AccessTokenCredentials);

#[cfg(feature = "adc")]
impl AdcTokens {
    pub fn new() -> Result<AdcTokens, GcpError> {
        google_cloud_auth::credentials::Builder::default()
            .with_scopes(["https://www.googleapis.com/auth/cloud-platform"])
            .build_access_token_credentials()
            .map(AdcTokens)
            .map_err(|e| GcpError::Credentials(e.to_string()))
    }
}

#[cfg(feature = "adc")]
#[async_trait]
impl TokenSource for AdcTokens {
    async fn token(&self) -> Result<String, GcpError> {
        self.0.access_token().await.map(|t| t.token).map_err(|e| GcpError::Credentials(e.to_string()))
    }

    /// The headers google-cloud-auth derives (it adds `x-goog-user-project` when the ADC file or
    /// `GOOGLE_CLOUD_QUOTA_PROJECT` names a quota project).
    async fn auth(&self) -> Result<Auth, GcpError> {
        use google_cloud_auth::credentials::{CacheableResource, CredentialsProvider};
        let headers = match self.0.headers(http::Extensions::new()).await {
            Ok(CacheableResource::New { data, .. }) => data,
            Ok(CacheableResource::NotModified) => http::HeaderMap::new(),
            Err(e) => return Err(GcpError::Credentials(e.to_string())),
        };
        // The same headers carry the token: one call to the (cached) provider per request.
        let token = match bearer_of(&headers) {
            Some(t) => t,
            None => self.token().await?,
        };
        Ok(Auth { token, quota_project: quota_project_of(&headers) })
    }
}

#[cfg(feature = "adc")]
fn bearer_of(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").filter(|t| !t.is_empty()).map(str::to_string)
}

#[cfg(feature = "adc")]
fn quota_project_of(headers: &http::HeaderMap) -> Option<String> {
    headers.get(QUOTA_PROJECT_HEADER).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_string)
}

#[cfg(feature = "adc")]
/// The credentials Google's tools would pick: `GOOGLE_OAUTH_ACCESS_TOKEN` if set (as the Google
/// Terraform provider does), with `GOOGLE_CLOUD_QUOTA_PROJECT` as its quota project when set;
/// Application Default Credentials otherwise.
pub fn from_environment() -> Result<std::sync::Arc<dyn TokenSource>, GcpError> {
    let quota = std::env::var("GOOGLE_CLOUD_QUOTA_PROJECT").ok().filter(|q| !q.is_empty());
    match (std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN"), quota) {
        (Ok(t), Some(q)) if !t.is_empty() => {
            Ok(std::sync::Arc::new(WithQuotaProject { inner: StaticToken(t), quota_project: q }))
        }
        (Ok(t), None) if !t.is_empty() => Ok(std::sync::Arc::new(StaticToken(t))),
        _ => Ok(std::sync::Arc::new(AdcTokens::new()?)),
    }
}

#[cfg(all(test, feature = "adc"))]
mod tests {
    use super::*;

    #[test]
    fn the_quota_project_comes_from_the_credentials_headers() {
        let mut h = http::HeaderMap::new();
        assert_eq!(quota_project_of(&h), None);
        h.insert(QUOTA_PROJECT_HEADER, http::HeaderValue::from_static("billing-project"));
        assert_eq!(quota_project_of(&h).as_deref(), Some("billing-project"));
        assert_eq!(bearer_of(&h), None);
        h.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer ya29.t"));
        assert_eq!(bearer_of(&h).as_deref(), Some("ya29.t"));
    }
}
