//! Data sources, one per file.

pub mod verified_attestation;
