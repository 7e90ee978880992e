//! Writing to the consumer's output location, with a federated token from the consumer's
//! workload identity provider (no long-lived credential anywhere). Each run owns the prefix
//! `<output uri><image digest hex>/`, which it clears first so no stale object survives a rerun.

use std::path::Path;
use std::time::Duration;

use dcr_attestation::workload::{WorkloadManifest, split_gs_uri};
use dcr_gcp::Endpoints;
use dcr_gcp::storage::{Object, StorageClient};
use dcr_gcp::sts::StsClient;

use crate::error::LauncherError;
use crate::inputs::clients_for;
use crate::propagation::{self, Call};
use crate::teeserver::Attestation;

pub struct Release {
    storage: StorageClient,
    bucket: String,
    /// Object-name prefix of this run, ending in `/`.
    prefix: String,
    audience: String,
    endpoints: Endpoints,
    /// When the current federated token was obtained.
    exchanged: tokio::time::Instant,
}

fn fail(message: String) -> LauncherError {
    LauncherError::Release(message)
}

/// A federated token for the output's audience, waiting out IAM propagation (the output pool and
/// its grant are created just before the VM).
async fn exchange(sts: &StsClient, audience: &str, token: &str, patience: Duration) -> Result<String, LauncherError> {
    let f = propagation::retry("output: token exchange", Call::Exchange, patience, || sts.exchange(audience, token))
        .await
        .map_err(|e| {
            fail(format!("the output's workload identity provider refused this workload's attestation token: {e}"))
        })?;
    Ok(f.access_token)
}

impl Release {
    pub async fn connect(
        manifest: &WorkloadManifest,
        image_digest: &str,
        attestation_token: &str,
        sts: &StsClient,
        endpoints: &Endpoints,
        patience: Duration,
    ) -> Result<Release, LauncherError> {
        let run = manifest.run_prefix(image_digest);
        let (bucket, prefix) = split_gs_uri(&run).ok_or_else(|| fail(format!("output uri {run:?} is not gs://")))?;
        let audience = manifest.output.audience.clone();
        let token = exchange(sts, &audience, attestation_token, patience).await?;
        let (storage, _) = clients_for(&token, endpoints).map_err(fail)?;
        Ok(Release {
            storage,
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            audience,
            endpoints: endpoints.clone(),
            exchanged: tokio::time::Instant::now(),
        })
    }

    /// Exchanges again when the federated token is at least `age` old: a long run must not reach
    /// its release with a token that expired while the notebook ran. `attestation` is refreshed
    /// first when it is as old.
    pub async fn renew_if_older(
        &mut self,
        age: Duration,
        attestation: &mut Attestation,
        sts: &StsClient,
    ) -> Result<(), LauncherError> {
        if self.exchanged.elapsed() < age {
            return Ok(());
        }
        let subject = attestation.refreshed_if_older(age).await?.to_string();
        let token = exchange(sts, &self.audience, &subject, Duration::ZERO).await?;
        self.storage = clients_for(&token, &self.endpoints).map_err(fail)?.0;
        self.exchanged = tokio::time::Instant::now();
        Ok(())
    }

    pub fn uri(&self, name: &str) -> String {
        format!("gs://{}/{}{name}", self.bucket, self.prefix)
    }

    /// Removes what an earlier run of the same image left under this run's prefix. It is the
    /// first use of the output token: a 403 may be the bucket grant still propagating.
    pub async fn clear(&self, patience: Duration) -> Result<(), LauncherError> {
        let old = propagation::retry("output: list the run's prefix", Call::FirstUse, patience, || {
            self.storage.list_objects(&self.bucket, Some(&self.prefix))
        })
        .await
        .map_err(|e| fail(format!("cannot list {}: {e}", self.uri(""))))?;
        for o in old {
            self.storage
                .delete_object(&self.bucket, &o.name)
                .await
                .map_err(|e| fail(format!("cannot remove the earlier run's gs://{}/{}: {e}", self.bucket, o.name)))?;
        }
        Ok(())
    }

    pub async fn put_bytes(&self, name: &str, bytes: Vec<u8>, content_type: &str) -> Result<(), LauncherError> {
        self.upload(name, std::io::Cursor::new(bytes), content_type).await
    }

    pub async fn put_file(&self, name: &str, path: &Path) -> Result<(), LauncherError> {
        let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))?;
        self.upload(name, file, content_type(name)).await
    }

    async fn upload<R: std::io::Read + Send + 'static>(
        &self,
        name: &str,
        source: R,
        content_type: &str,
    ) -> Result<(), LauncherError> {
        let object = Object {
            name: format!("{}{name}", self.prefix),
            content_type: Some(content_type.to_string()),
            ..Object::default()
        };
        self.storage
            .upload_object(&self.bucket, &object, source, None)
            .await
            .map(|_| ())
            .map_err(|e| fail(format!("cannot write {}: {e}", self.uri(name))))
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).as_deref() {
        Some("csv") => "text/csv",
        Some("json") => "application/json",
        Some("txt") | Some("md") => "text/plain",
        Some("png") => "image/png",
        Some("parquet") => "application/vnd.apache.parquet",
        _ => "application/octet-stream",
    }
}
