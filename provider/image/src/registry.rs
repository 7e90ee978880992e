//! Pushing a built image to an OCI registry with oci-client: every blob the registry lacks, then
//! the manifest's exact bytes (`push_manifest_raw`), then a read back by digest to prove the
//! registry holds the image under the digest we computed.

use oci_client::client::{ClientConfig, ClientProtocol};
pub use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::build::BuiltImage;
use crate::error::ImageError;
use crate::oci::MANIFEST_MEDIA_TYPE;

/// Where to push and as whom.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `HOST[:PORT]/REPOSITORY[:TAG]`.
    pub reference: String,
    pub auth: RegistryAuth,
    /// Registries spoken to over plain HTTP (a registry on loopback in tests).
    pub plain_http: Vec<String>,
}

/// Pushes `image`; returns the reference pinned by digest (`HOST/REPO@sha256:...`).
pub async fn push(image: &BuiltImage, to: &Destination) -> Result<String, ImageError> {
    let fail = |detail: String| ImageError::Registry { reference: to.reference.clone(), detail };
    let reference: Reference = to.reference.parse().map_err(|e| fail(format!("not an image reference: {e}")))?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(to.plain_http.clone()),
        ..Default::default()
    });
    client.auth(&reference, &to.auth, RegistryOperation::Push).await.map_err(|e| fail(format!("login: {e}")))?;

    let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
    for l in &image.base.manifest.layers {
        if !client.blob_exists(&reference, &l.digest).await.map_err(|e| fail(e.to_string()))? {
            blobs.push((l.digest.clone(), image.base.layout.read_blob(&l.digest)?));
        }
    }
    blobs.push((image.layer.digest.clone(), image.layer.blob.clone()));
    blobs.push((image.config_digest.clone(), image.config.clone()));
    for (digest, bytes) in blobs {
        if client.blob_exists(&reference, &digest).await.map_err(|e| fail(e.to_string()))? {
            continue;
        }
        tracing::debug!(%digest, size = bytes.len(), "pushing blob");
        client.push_blob(&reference, bytes, &digest).await.map_err(|e| fail(format!("blob {digest}: {e}")))?;
    }
    let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
    client
        .push_manifest_raw(&reference, image.manifest.clone(), content_type)
        .await
        .map_err(|e| fail(format!("manifest: {e}")))?;

    let pinned = format!("{}/{}@{}", reference.resolve_registry(), reference.repository(), image.digest);
    let by_digest: Reference = pinned.parse().map_err(|e| fail(format!("{pinned}: {e}")))?;
    let (bytes, digest) = client
        .pull_manifest_raw(&by_digest, &to.auth, &[MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|e| fail(format!("reading the manifest back by digest: {e}")))?;
    if bytes.as_ref() != image.manifest.as_slice() || digest != image.digest {
        return Err(fail(format!("the registry holds {digest} where {} was pushed", image.digest)));
    }
    Ok(pinned)
}
