//! Errors of starting and running the local cloud itself (not API errors, which are [`crate::api::ApiError`]).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalCloudError {
    #[error(
        "cannot use {path} as the local cloud's state directory: {source}. Make sure the path is a \
         writable directory (or can be created), or set `local {{ state_dir = \"...\" }}` in the provider block"
    )]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("the local cloud's database {path} failed: {message}. If it is corrupt, move the state directory aside")]
    Database { path: PathBuf, message: String },
    #[error("cannot listen on 127.0.0.1: {0}")]
    Listen(std::io::Error),
    #[error(
        "invalid principal {0:?}: expected user:EMAIL, serviceAccount:EMAIL, group:EMAIL, principal://... or principalSet://..."
    )]
    Principal(String),
    #[error("the TEE simulator cannot serve on {path}: {source}. Check that the directory is writable")]
    TeeSocket { path: PathBuf, source: std::io::Error },
}
