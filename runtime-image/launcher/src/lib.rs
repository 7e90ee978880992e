//! `dcr-launcher`, the entrypoint of every dcr workload image. Inside the TEE it reads the
//! workload manifest baked into the image, gets the TEE's attestation token, exchanges it at each
//! input policy's workload identity provider for access to that dataset, decrypts the data into
//! memory-backed storage, runs the notebook with papermill under a time limit, checks every output
//! file against every input policy's output rules, and only then releases the outputs together with
//! an output manifest and a fresh attestation token whose nonce is the manifest's SHA-256. When
//! anything fails it releases a failure report with no data in it and exits non-zero.
//!
//! [`settings`] says where things are, [`teeserver`] talks to the TEE (and keeps its token fresh),
//! [`propagation`] waits out IAM changes that have not reached every server yet, [`inputs`] fetches and
//! decrypts, [`notebook`] runs papermill, [`rules`] decides what may leave, [`release`] writes to
//! the output bucket, and [`run`] puts the stages in order. [`rehearsal`] is stage 1's dry run of
//! the same notebook on stand-ins (`dcr run`). `docs/guides/launcher.md` is the
//! user-facing description (paths, manifest format, exit codes).

pub mod error;
pub mod inputs;
pub mod notebook;
pub mod progress;
pub mod propagation;
pub mod rehearsal;
pub mod release;
pub mod rules;
pub mod run;
pub mod settings;
pub mod teeserver;

pub use error::LauncherError;
pub use run::run;
pub use settings::Settings;
