//! The `dcr` command: what the people around the provider do outside Terraform. An analyst
//! fetches the stage-1 stand-ins laid out as a workload's inputs (`dcr pull`) and rehearses a
//! notebook on them as stage 2 will run it (`dcr run`); a consumer fetches
//! a run's released files and verifies them (`dcr results`); an auditor verifies a run, offline
//! where possible (`dcr verify`). It reads Google Cloud with Application Default
//! Credentials, or the local cloud of a state directory (`./.dcr` by default, as the provider)
//! through the very clients it uses for Google.
//!
//! The checks are `dcr_attestation::run`'s, the library behind the provider's verification too;
//! this crate only finds the files, the policy documents and the issuer's keys.

pub mod cloud;
pub mod error;
pub mod lab;
pub mod progress;
pub mod pull;
pub mod rebuild;
pub mod rehearse;
pub mod report;
pub mod run_dir;
pub mod scratch;
pub mod verify;

pub use error::CliError;
