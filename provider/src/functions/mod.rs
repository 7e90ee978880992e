//! Provider-defined functions (`provider::dcr::NAME(...)`, Terraform 1.8 and later), one per file.

pub mod verify_attestation;
