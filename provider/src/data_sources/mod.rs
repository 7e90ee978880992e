//! Data sources, one per file.

pub mod image_digest;
pub mod verified_attestation;
