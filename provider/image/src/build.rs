//! Putting an image together: a base image plus one layer, with the config and manifest written
//! as canonical JSON so the result's digest follows from the inputs alone.

use serde_json::{Value, json};

use crate::digest_of;
use crate::error::ImageError;
use crate::layer::{FileEntry, Layer, build_layer};
use crate::layout::Layout;
use crate::oci::{
    CONFIG_MEDIA_TYPE, Descriptor, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Manifest, canonical, canonical_json,
};

/// Every time an image records: the epoch, not the moment of the build.
pub const EPOCH: &str = "1970-01-01T00:00:00Z";

/// The tag `runtime-image/build.sh` gives the base image.
pub const DEFAULT_BASE_TAG: &str = "dcr-runtime:0.1.0";

/// dcr's cache directory on this machine: `$DCR_CACHE_DIR`, else `~/.cache/dcr`.
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("DCR_CACHE_DIR")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").filter(|h| !h.is_empty()).map(|h| std::path::PathBuf::from(h).join(".cache/dcr"))
        })
        .unwrap_or_else(|| std::path::PathBuf::from(".dcr-cache"))
}

/// `oci:LAYOUT:TAG` of the base image `runtime-image/build.sh` builds: its layout in the
/// [`cache_dir`]. The provider's `base_image` default, and `dcr run`'s.
pub fn default_base_image() -> String {
    format!("oci:{}:{DEFAULT_BASE_TAG}", cache_dir().join("runtime-image/layout").display())
}

/// Splits `oci:LAYOUT_DIR:TAG` (the tag may hold colons; the directory may not).
pub fn parse_base_reference(s: &str) -> Option<(std::path::PathBuf, String)> {
    let rest = s.strip_prefix("oci:")?;
    let (dir, tag) = rest.split_once(':')?;
    (!dir.is_empty() && !tag.is_empty()).then(|| (std::path::PathBuf::from(dir), tag.to_string()))
}

/// A base image, read from an OCI layout.
#[derive(Clone, Debug)]
pub struct BaseImage {
    pub layout: Layout,
    pub manifest: Manifest,
    pub digest: String,
    pub config: Value,
}

impl BaseImage {
    /// The image tagged `tag` (or the only image) in the layout at `dir`.
    pub fn from_layout(dir: &std::path::Path, tag: Option<&str>) -> Result<BaseImage, ImageError> {
        let layout = Layout::open(dir)?;
        let desc = layout.resolve(tag)?;
        let bytes = layout.read_blob(&desc.digest)?;
        let manifest = Manifest::parse(&bytes, &format!("base image manifest {}", desc.digest))?;
        let config_bytes = layout.read_blob(&manifest.config.digest)?;
        let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Format {
            what: format!("base image config {}", manifest.config.digest),
            detail: e.to_string(),
        })?;
        for l in &manifest.layers {
            if !layout.has_blob(&l.digest) {
                return Err(ImageError::Layout { dir: dir.to_path_buf(), why: format!("lacks layer {}", l.digest) });
            }
        }
        Ok(BaseImage { layout, manifest, digest: desc.digest, config })
    }
}

/// A built image: its manifest and config bytes, the new layer, and where the base's layers are.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub manifest: Vec<u8>,
    /// The image digest: what `tee-image-reference` pins and attestation tokens report.
    pub digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    pub layer: Layer,
    pub base: BaseImage,
}

impl BuiltImage {
    pub fn manifest_descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.into(),
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
            annotations: None,
        }
    }

    /// Stores the image (and the base's layers) in `layout`, tagged `tag`.
    pub fn write_to(&self, layout: &Layout, tag: &str) -> Result<(), ImageError> {
        for l in &self.base.manifest.layers {
            layout.copy_blob_from(&self.base.layout, &l.digest)?;
        }
        layout.write_blob(&self.layer.blob)?;
        layout.write_blob(&self.config)?;
        layout.write_blob(&self.manifest)?;
        layout.tag(tag, &self.manifest_descriptor())
    }
}

fn layer_descriptor(layer: &Layer) -> Descriptor {
    Descriptor {
        media_type: LAYER_MEDIA_TYPE.into(),
        digest: layer.digest.clone(),
        size: layer.blob.len() as u64,
        annotations: None,
    }
}

/// The canonical manifest bytes for a config and its layers.
fn manifest_for(config: &[u8], layers: Vec<Descriptor>) -> Vec<u8> {
    canonical(&Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: digest_of(config),
            size: config.len() as u64,
            annotations: None,
        },
        layers,
        annotations: None,
    })
}

/// What a base image's config says besides its layer: how the container starts.
#[derive(Clone, Debug, Default)]
pub struct RuntimeConfig {
    pub entrypoint: Vec<String>,
    /// `KEY=VALUE` lines.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
}

/// A single-layer image made from a root file system: the base runtime image.
#[derive(Clone, Debug)]
pub struct RootfsImage {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config: Vec<u8>,
    pub layer: Layer,
}

impl RootfsImage {
    pub fn new(layer: Layer, runtime: &RuntimeConfig, created_by: &str) -> RootfsImage {
        let mut cfg = json!({
            "Entrypoint": runtime.entrypoint,
            "Env": runtime.env,
            "Labels": runtime.labels,
        });
        if let Some(w) = &runtime.working_dir {
            cfg["WorkingDir"] = json!(w);
        }
        let config = canonical_json(&json!({
            "architecture": "amd64",
            "os": "linux",
            "created": EPOCH,
            "config": cfg,
            "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
            "history": [{"created": EPOCH, "created_by": created_by}],
        }));
        let manifest = manifest_for(&config, vec![layer_descriptor(&layer)]);
        RootfsImage { digest: digest_of(&manifest), manifest, config, layer }
    }

    /// Stores the image in `layout`, tagged `tag`.
    pub fn write_to(&self, layout: &Layout, tag: &str) -> Result<(), ImageError> {
        layout.write_blob(&self.layer.blob)?;
        layout.write_blob(&self.config)?;
        layout.write_blob(&self.manifest)?;
        let desc = Descriptor {
            media_type: MANIFEST_MEDIA_TYPE.into(),
            digest: self.digest.clone(),
            size: self.manifest.len() as u64,
            annotations: None,
        };
        layout.tag(tag, &desc)
    }
}

/// The base image with one more layer holding `files`; `created_by` is recorded in its history.
pub fn build(base: &BaseImage, files: &[FileEntry], created_by: &str) -> Result<BuiltImage, ImageError> {
    let layer = build_layer(files)?;
    let mut config = base.config.clone();
    let bad = |detail: &str| ImageError::Format { what: "base image config".into(), detail: detail.into() };
    config.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    config["created"] = json!(EPOCH);
    let diff_ids = config
        .pointer_mut("/rootfs/diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("no rootfs.diff_ids"))?;
    diff_ids.push(json!(layer.diff_id));
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    config["history"].as_array_mut().expect("array").push(json!({"created": EPOCH, "created_by": created_by}));
    let config_bytes = canonical_json(&config);
    let config_digest = digest_of(&config_bytes);

    let mut layers = base.manifest.layers.clone();
    layers.push(layer_descriptor(&layer));
    let manifest_bytes = manifest_for(&config_bytes, layers);
    Ok(BuiltImage {
        digest: digest_of(&manifest_bytes),
        manifest: manifest_bytes,
        config: config_bytes,
        config_digest,
        layer,
        base: base.clone(),
    })
}
