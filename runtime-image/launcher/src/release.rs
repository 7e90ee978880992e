//! Writing to the consumer's output location, with a federated token from the consumer's
//! workload identity provider (no long-lived credential anywhere). Each run owns the prefix
//! `<output uri><image digest hex>/`, which it clears first so no stale object survives a rerun.

use std::path::Path;

use dcr_attestation::workload::{WorkloadManifest, split_gs_uri};
use dcr_gcp::Endpoints;
use dcr_gcp::storage::{Object, StorageClient};
use dcr_gcp::sts::StsClient;

use crate::error::LauncherError;
use crate::inputs::clients_for;

pub struct Release {
    storage: StorageClient,
    bucket: String,
    /// Object-name prefix of this run, ending in `/`.
    prefix: String,
}

fn fail(message: String) -> LauncherError {
    LauncherError::Release(message)
}

impl Release {
    pub async fn connect(
        manifest: &WorkloadManifest,
        image_digest: &str,
        attestation_token: &str,
        sts: &StsClient,
        endpoints: &Endpoints,
    ) -> Result<Release, LauncherError> {
        let run = manifest.run_prefix(image_digest);
        let (bucket, prefix) = split_gs_uri(&run).ok_or_else(|| fail(format!("output uri {run:?} is not gs://")))?;
        let federated = sts.exchange(&manifest.output.audience, attestation_token).await.map_err(|e| {
            fail(format!("the output's workload identity provider refused this workload's attestation token: {e}"))
        })?;
        let (storage, _) = clients_for(&federated.access_token, endpoints).map_err(fail)?;
        Ok(Release { storage, bucket: bucket.to_string(), prefix: prefix.to_string() })
    }

    pub fn uri(&self, name: &str) -> String {
        format!("gs://{}/{}{name}", self.bucket, self.prefix)
    }

    /// Removes what an earlier run of the same image left under this run's prefix.
    pub async fn clear(&self) -> Result<(), LauncherError> {
        let old = self
            .storage
            .list_objects(&self.bucket, Some(&self.prefix))
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
