//! The dcr Terraform provider: confidential data clean rooms as code.
//!
//! [`provider::DcrProvider`] implements the plugin traits of the `tfplugin6` crate. The provider
//! block ([`config`]) picks a backend: the embedded local cloud (`dcr-local-cloud`) or Google Cloud;
//! either way every call goes through the same REST clients (`dcr-gcp`), built in [`clients`].
//! Resources live one per file under [`resources`]; the cloud-independent logic they use (schemas,
//! checks, stand-ins) lives in [`dataset`]. [`docs`] renders the registry documentation from the
//! schemas themselves.

pub mod clients;
pub mod config;
pub mod data_sources;
pub mod docs;
pub mod files;
pub mod functions;
pub mod image_registry;
pub mod provider;
pub mod resources;
pub mod stop;
pub mod timeouts;
pub mod validate;
pub mod verification;
pub mod workload_image;

pub use provider::DcrProvider;
