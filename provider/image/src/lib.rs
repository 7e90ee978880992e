//! Reproducible OCI images for dcr workloads: a base image plus one layer (the notebook, its
//! parameters and the workload manifest). Every byte is a pure function of the inputs — tar
//! entries sorted, with zero times, owners and fixed modes; gzip with fixed settings; config and
//! manifest serialised here as canonical JSON — so the digest a data owner pins at plan time is
//! the digest that runs, and anyone can recompute it.
//!
//! [`layer`] builds layers, [`oci`] holds the image formats, [`layout`] reads and writes OCI image
//! layouts (the local store), [`build`] puts a base image and a layer together, [`registry`]
//! pushes the exact bytes to a registry (oci-client re-serialises manifests in its high-level
//! `push`, which would change the digest), and [`credentials`] finds who we are to a registry.

pub mod build;
pub mod credentials;
pub mod error;
pub mod layer;
pub mod layout;
pub mod oci;
pub mod registry;

pub use build::{BaseImage, BuiltImage, build};
pub use error::ImageError;
pub use layer::{FileEntry, Layer, build_layer, layer_from_rootfs};

/// `sha256:` and the hex SHA-256 of `bytes`: how OCI names content.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref()))
}
