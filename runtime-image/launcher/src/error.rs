//! What can stop a run, one variant per stage, each with its exit code (docs/guides/launcher.md).
//! Messages are the launcher's own words: they name inputs, policies, rules and files, never data.

#[derive(Debug, thiserror::Error)]
pub enum LauncherError {
    /// The image or the VM is not set up as a dcr workload (exit 2).
    #[error("{0}")]
    Setup(String),
    /// No attestation token from the TEE (exit 3).
    #[error("{0}")]
    Attestation(String),
    /// An input could not be obtained: refused exchange, missing grant, bad envelope (exit 4).
    #[error("input {input:?} (policy {policy:?}): {message}")]
    Input { input: String, policy: String, message: String },
    /// The notebook failed (exit 5).
    #[error("{0}")]
    Notebook(String),
    /// The notebook ran past the workload's timeout (exit 6).
    #[error("the notebook did not finish within {0} seconds and was stopped")]
    Timeout(u64),
    /// An output file broke an output rule; nothing was released (exit 7).
    #[error("{0}")]
    OutputRules(String),
    /// Writing to the output bucket failed (exit 8).
    #[error("{0}")]
    Release(String),
}

impl LauncherError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LauncherError::Setup(_) => 2,
            LauncherError::Attestation(_) => 3,
            LauncherError::Input { .. } => 4,
            LauncherError::Notebook(_) => 5,
            LauncherError::Timeout(_) => 6,
            LauncherError::OutputRules(_) => 7,
            LauncherError::Release(_) => 8,
        }
    }

    /// The stage name written into failure reports.
    pub fn stage(&self) -> &'static str {
        match self {
            LauncherError::Setup(_) => "setup",
            LauncherError::Attestation(_) => "attestation",
            LauncherError::Input { .. } => "inputs",
            LauncherError::Notebook(_) | LauncherError::Timeout(_) => "notebook",
            LauncherError::OutputRules(_) => "output_rules",
            LauncherError::Release(_) => "release",
        }
    }
}
