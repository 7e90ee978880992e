//! Pushing a built image to an OCI registry with oci-client: every blob the registry lacks, then
//! the manifest's exact bytes (`push_manifest_raw`), then a read back by digest to prove the
//! registry holds the image under the digest we computed.

pub use crate::credentials::RegistryAuth;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference, RegistryOperation};

use crate::build::BuiltImage;
use crate::error::ImageError;
use crate::layout::Layout;
use crate::oci::{MANIFEST_MEDIA_TYPE, Manifest};

/// Where to push and as whom.
#[derive(Clone, Debug)]
pub struct Destination {
    /// `HOST[:PORT]/REPOSITORY[:TAG]`.
    pub reference: String,
    pub auth: RegistryAuth,
    /// Registries spoken to over plain HTTP (a registry on loopback in tests).
    pub plain_http: Vec<String>,
}

/// Registries spoken to over plain HTTP: the host of `reference` when it is on this machine
/// (`localhost`, `127.0.0.1`, `[::1]`, any port); every other registry gets HTTPS.
pub fn loopback_plain_http(reference: &str) -> Vec<String> {
    let host = reference.split('/').next().unwrap_or("");
    let name = host.rsplit_once(':').map(|(n, _)| n).unwrap_or(host);
    if ["localhost", "127.0.0.1", "[::1]"].contains(&name) { vec![host.to_string()] } else { Vec::new() }
}

/// Credentials for `host` from the Docker config (no Google token): see [`crate::credentials`].
pub fn docker_config_auth(host: &str) -> Result<RegistryAuth, ImageError> {
    crate::credentials::registry_auth(host, None)
}

/// Where a blob's bytes come from: read only when the registry lacks it.
type BlobSource<'a> = Box<dyn Fn() -> Result<Vec<u8>, ImageError> + Send + Sync + 'a>;

/// Pushes `image`; returns the reference pinned by digest (`HOST/REPO@sha256:...`).
pub async fn push(image: &BuiltImage, to: &Destination) -> Result<String, ImageError> {
    let mut blobs: Vec<(String, BlobSource)> = Vec::new();
    for l in &image.base.manifest.layers {
        let layout = &image.base.layout;
        blobs.push((l.digest.clone(), Box::new(move || layout.read_blob(&l.digest))));
    }
    blobs.push((image.layer.digest.clone(), Box::new(|| Ok(image.layer.blob.clone()))));
    blobs.push((image.config_digest.clone(), Box::new(|| Ok(image.config.clone()))));
    push_parts(&image.manifest, &image.digest, blobs, to).await
}

/// Pushes the image tagged `tag` in `layout` (the base runtime image after its build).
pub async fn push_from_layout(layout: &Layout, tag: &str, to: &Destination) -> Result<String, ImageError> {
    let desc = layout.resolve(Some(tag))?;
    let manifest_bytes = layout.read_blob(&desc.digest)?;
    let manifest = Manifest::parse(&manifest_bytes, &format!("manifest {}", desc.digest))?;
    let mut blobs: Vec<(String, BlobSource)> = Vec::new();
    for d in manifest.layers.iter().chain(std::iter::once(&manifest.config)) {
        blobs.push((d.digest.clone(), Box::new(move || layout.read_blob(&d.digest))));
    }
    push_parts(&manifest_bytes, &desc.digest, blobs, to).await
}

/// Pulls `reference` (pinned by digest, `HOST/REPO@sha256:...`) into `layout`: the manifest and
/// every blob it names, each checked against its digest before it is stored. Returns the digest.
pub async fn pull_into_layout(
    reference: &str,
    auth: &RegistryAuth,
    plain_http: &[String],
    layout: &Layout,
) -> Result<String, ImageError> {
    let fail = |detail: String| ImageError::Registry { reference: reference.to_string(), detail };
    let parsed: Reference = reference.parse().map_err(|e| fail(format!("not an image reference: {e}")))?;
    let Some(want) = parsed.digest().map(str::to_string) else {
        return Err(fail("the reference is not pinned by digest (REPO@sha256:...)".into()));
    };
    let client =
        Client::new(ClientConfig { protocol: ClientProtocol::HttpsExcept(plain_http.to_vec()), ..Default::default() });
    client.auth(&parsed, auth, RegistryOperation::Pull).await.map_err(|e| fail(format!("login: {e}")))?;
    let (bytes, _) = client
        .pull_manifest_raw(&parsed, auth, &[MANIFEST_MEDIA_TYPE, crate::oci::DOCKER_MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|e| fail(format!("manifest: {e}")))?;
    if crate::digest_of(&bytes) != want {
        return Err(fail(format!("the registry sent a manifest whose digest is {}", crate::digest_of(&bytes))));
    }
    let manifest = Manifest::parse(&bytes, &format!("manifest {want}"))?;
    for d in manifest.layers.iter().chain(std::iter::once(&manifest.config)) {
        if layout.has_blob(&d.digest) {
            continue;
        }
        let mut blob = Vec::with_capacity(d.size as usize);
        client
            .pull_blob(&parsed, d.digest.as_str(), &mut blob)
            .await
            .map_err(|e| fail(format!("blob {}: {e}", d.digest)))?;
        if crate::digest_of(&blob) != d.digest {
            return Err(fail(format!("blob {} arrived with another digest", d.digest)));
        }
        layout.write_blob(&blob)?;
    }
    layout.write_blob(&bytes)?;
    Ok(want)
}

/// Every blob the registry lacks, then the manifest's exact bytes, then the read back.
async fn push_parts(
    manifest: &[u8],
    manifest_digest: &str,
    blobs: Vec<(String, BlobSource<'_>)>,
    to: &Destination,
) -> Result<String, ImageError> {
    let fail = |detail: String| ImageError::Registry { reference: to.reference.clone(), detail };
    let reference: Reference = to.reference.parse().map_err(|e| fail(format!("not an image reference: {e}")))?;
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(to.plain_http.clone()),
        ..Default::default()
    });
    client.auth(&reference, &to.auth, RegistryOperation::Push).await.map_err(|e| fail(format!("login: {e}")))?;
    for (digest, source) in blobs {
        if client.blob_exists(&reference, &digest).await.map_err(|e| fail(e.to_string()))? {
            continue;
        }
        let bytes = source()?;
        tracing::debug!(%digest, size = bytes.len(), "pushing blob");
        client.push_blob(&reference, bytes, &digest).await.map_err(|e| fail(format!("blob {digest}: {e}")))?;
    }
    let content_type = http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE);
    client
        .push_manifest_raw(&reference, manifest.to_vec(), content_type)
        .await
        .map_err(|e| fail(format!("manifest: {e}")))?;

    let pinned = format!("{}/{}@{}", reference.resolve_registry(), reference.repository(), manifest_digest);
    let by_digest: Reference = pinned.parse().map_err(|e| fail(format!("{pinned}: {e}")))?;
    let (bytes, digest) = client
        .pull_manifest_raw(&by_digest, &to.auth, &[MANIFEST_MEDIA_TYPE])
        .await
        .map_err(|e| fail(format!("reading the manifest back by digest: {e}")))?;
    if bytes.as_ref() != manifest || digest != manifest_digest {
        return Err(fail(format!("the registry holds {digest} where {manifest_digest} was pushed")));
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_registries_get_plain_http() {
        assert_eq!(loopback_plain_http("127.0.0.1:5000/dcr/x@sha256:0"), vec!["127.0.0.1:5000"]);
        assert_eq!(loopback_plain_http("localhost/x"), vec!["localhost"]);
        assert!(loopback_plain_http("us-docker.pkg.dev/p/r/x").is_empty());
    }
}
