//! Where the launcher finds and puts things. The defaults are the documented paths inside the
//! image and the Confidential Space VM; the `DCR_*` variables exist for tests that run the launcher
//! outside a container. On Google Cloud, Confidential Space refuses environment variables the
//! image's launch policy does not allow, and dcr's base image allows only `DCR_LOCAL_CLOUD`, which
//! only a `local` workload reads.

use std::path::PathBuf;

/// The image directory holding the workload layer (manifest, notebook, parameters).
pub const IMAGE_DIR: &str = "/dcr";
/// Memory-backed working directory: inputs, outputs, the kernel's home.
pub const RUN_DIR: &str = "/run/dcr";
/// Confidential Space's teeserver socket.
pub const TEESERVER_SOCKET: &str = "/run/container_launcher/teeserver.sock";
/// Confidential Space's default token file (refreshed by the VM's launcher).
pub const TOKEN_FILE: &str = "/run/container_launcher/attestation_verifier_claims_token";

#[derive(Clone, Debug)]
pub struct Settings {
    pub image_dir: PathBuf,
    pub run_dir: PathBuf,
    pub teeserver_socket: PathBuf,
    pub token_file: PathBuf,
    /// The local cloud's base URL, for `local` workloads.
    pub local_cloud: Option<String>,
    /// A rehearsal's mounted directory (`dcr run`): stand-ins in, what the rules let out.
    pub rehearsal_dir: PathBuf,
    /// The Python with papermill and ipykernel.
    pub python: PathBuf,
    /// How long to wait for IAM changes to propagate; `None`: by backend (5 minutes on Google
    /// Cloud). `DCR_IAM_PROPAGATION_SECONDS` sets it for tests running the launcher by hand.
    pub iam_patience: Option<std::time::Duration>,
}

impl Settings {
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let path = |name: &str, default: &str| var(name).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
        Settings {
            image_dir: path("DCR_IMAGE_DIR", IMAGE_DIR),
            run_dir: path("DCR_RUN_DIR", RUN_DIR),
            teeserver_socket: path("DCR_TEESERVER_SOCKET", TEESERVER_SOCKET),
            token_file: path("DCR_TOKEN_FILE", TOKEN_FILE),
            local_cloud: var("DCR_LOCAL_CLOUD").and_then(|v| v.into_string().ok()),
            rehearsal_dir: path("DCR_REHEARSAL_DIR", dcr_attestation::workload::REHEARSAL_DIR),
            python: path("DCR_NOTEBOOK_PYTHON", "python3"),
            iam_patience: var("DCR_IAM_PROPAGATION_SECONDS")
                .and_then(|v| v.into_string().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(std::time::Duration::from_secs),
        }
    }

    pub fn inputs_dir(&self) -> PathBuf {
        self.run_dir.join("inputs")
    }
    pub fn outputs_dir(&self) -> PathBuf {
        self.run_dir.join("outputs")
    }
    pub fn work_dir(&self) -> PathBuf {
        self.run_dir.join("work")
    }
}
