//! Where bearer tokens come from: a fixed token (the local cloud, or `GOOGLE_OAUTH_ACCESS_TOKEN`)
//! or Application Default Credentials through google-cloud-auth.

use async_trait::async_trait;

use crate::error::GcpError;

#[async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self) -> Result<String, GcpError>;
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
}

#[cfg(feature = "adc")]
/// The credentials Google's tools would pick: `GOOGLE_OAUTH_ACCESS_TOKEN` if set (as the Google
/// Terraform provider does), Application Default Credentials otherwise.
pub fn from_environment() -> Result<std::sync::Arc<dyn TokenSource>, GcpError> {
    match std::env::var("GOOGLE_OAUTH_ACCESS_TOKEN") {
        Ok(t) if !t.is_empty() => Ok(std::sync::Arc::new(StaticToken(t))),
        _ => Ok(std::sync::Arc::new(AdcTokens::new()?)),
    }
}
