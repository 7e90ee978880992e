//! What can go wrong building, storing or pushing an image.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("invalid path {path:?} in the image layer: {why}")]
    BadPath { path: String, why: String },
    #[error("{what} is not a valid OCI document: {detail}")]
    Format { what: String, detail: String },
    #[error("the OCI layout at {dir} {why}")]
    Layout { dir: PathBuf, why: String },
    #[error("blob {digest} does not match its content (got {actual}); the store is corrupt")]
    Corrupt { digest: String, actual: String },
    #[error("registry {reference}: {detail}")]
    Registry { reference: String, detail: String },
}

pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { path, source }
}
