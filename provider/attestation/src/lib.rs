//! Attestation for dcr: the Confidential Space token claim set, verification of a token against its
//! issuer's JWKS (every check named when it fails), and the CEL attribute conditions that let only
//! approved workloads on confidential hardware exchange such a token for data access.
//!
//! It also holds where dcr keeps things ([`names`]): every bucket, object and prefix name.
//!
//! Pure logic with no I/O: the provider (plan-time checks, `verify_attestation`), the local cloud
//! (STS, the simulated issuer) and the launcher all share it, so a condition or a check means the
//! same thing everywhere.

pub mod audit;
pub mod cel;
pub mod claims;
pub mod condition;
pub mod names;
pub mod policy;
pub mod run;
pub mod signing;
pub mod verify;
pub mod workload;

pub use claims::AttestationClaims;
pub use signing::SigningKey;
pub use verify::{Attested, Check, Expectations, VerifyError, check_attested, verify};
