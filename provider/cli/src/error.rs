//! What can go wrong, and the exit code each gives.

use dcr_attestation::run::RunFailure;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The arguments cannot work (a URI that is not `gs://`, a directory that is not a run).
    #[error("{0}")]
    Usage(String),
    /// Verification could not be carried out (unreachable cloud, unreadable file); says nothing
    /// about the run.
    #[error("{0}")]
    Unavailable(String),
    /// A check failed: the run is not what it claims.
    #[error(transparent)]
    Check(#[from] RunFailure),
}

impl CliError {
    /// 1 for "could not verify", 2 for usage (as clap), 10 and up for each failed check.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Unavailable(_) => 1,
            CliError::Usage(_) => 2,
            CliError::Check(f) => f.check.exit_code(),
        }
    }
}

pub fn unavailable(what: impl std::fmt::Display) -> CliError {
    CliError::Unavailable(what.to_string())
}
