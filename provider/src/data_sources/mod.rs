//! Data sources, one per file.

pub mod image_digest;
pub mod privacy_ledger;
pub mod verified_attestation;
