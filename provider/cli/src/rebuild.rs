//! `dcr verify --notebook`: the auditor rebuilds the workload image from the notebook, its
//! parameters, the workload manifest and the base image, as the provider builds it
//! (`dcr_attestation::workload::image_files` and a reproducible base), and pins the digest that
//! comes out: the run verifies only if the TEE ran exactly that image.

use std::path::PathBuf;

use dcr_attestation::workload::{WorkloadManifest, image_created_by, image_files};
use dcr_image::FileEntry;
use dcr_image::build::{BaseImage, parse_base_reference};

use crate::error::{CliError, unavailable};

pub struct Rebuild {
    pub notebook: PathBuf,
    /// The workload manifest, as `data "dcr_image_digest"`'s `manifest` gives it.
    pub workload_manifest: PathBuf,
    /// The workload's `parameters` string, byte for byte (`jsonencode` output).
    pub parameters: String,
    /// `oci:LAYOUT:TAG`.
    pub base_image: String,
}

/// The digest of the image `r` describes.
pub fn image_digest(r: &Rebuild) -> Result<String, CliError> {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", p.display())));
    let manifest = WorkloadManifest::from_bytes(&read(&r.workload_manifest)?)
        .map_err(|e| CliError::Usage(format!("--workload-manifest {}: {e}", r.workload_manifest.display())))?;
    let notebook = read(&r.notebook)?;
    if !serde_json::from_str::<serde_json::Value>(&r.parameters).is_ok_and(|v| v.is_object()) {
        return Err(CliError::Usage("--parameters must be a JSON object, as jsonencode({ … }) gives".into()));
    }
    let (layout, tag) = parse_base_reference(&r.base_image)
        .ok_or_else(|| CliError::Usage(format!("--base-image {:?} is not oci:LAYOUT_DIR:TAG", r.base_image)))?;
    let base = BaseImage::from_layout(&layout, Some(&tag)).map_err(|e| {
        unavailable(format!("cannot read the base image {}: {e} (runtime-image/build.sh builds it)", r.base_image))
    })?;
    let files: Vec<FileEntry> = image_files(&manifest, notebook, r.parameters.as_bytes().to_vec())
        .into_iter()
        .map(|(path, mode, bytes)| FileEntry::new(path, mode, bytes))
        .collect();
    let built = dcr_image::build(&base, &files, &image_created_by(&manifest.name))
        .map_err(|e| unavailable(format!("cannot rebuild the workload image: {e}")))?;
    Ok(built.digest)
}
