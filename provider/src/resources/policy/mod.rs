//! `dcr_policy`: who may read a data owner's datasets. A workload identity pool and an OIDC
//! provider trusting the attestation issuer, whose attribute condition — generated from the
//! policy's rules and shown in the plan — admits only approved image digests on the required
//! hardware; grants for the pool's principals (decrypt on each dataset's key, read on its bucket);
//! and the policy document, stored where an attested workload can read it.
//!
//! Like `dcr_dataset`, apply converges: each step checks what exists and does what is missing, so
//! a failed apply is finished by the next one, and a pool or provider deleted outside Terraform
//! (soft-deleted, on Google Cloud) is brought back by undeleting it.
//!
//! One file per phase: [`schema`] (and configuration checks), [`rules`] (the rules in force and
//! the policy document), [`plan`], [`apply`], [`read`] (refresh and import), on the typed [`model`].

mod apply;
pub mod model;
pub mod plan;
mod read;
pub mod rules;
pub mod schema;

use dcr_attestation::names;
use dcr_attestation::policy::OBJECT;
use dcr_gcp::iam::IamResource;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Severity, Value};

use crate::clients::Clients;
use crate::resources::common::{gcp_diag, grant, read_object};
use crate::resources::dataset::{LocatedDataset, locate};
pub use plan::{PlanFacts, plan_state};
pub use rules::{checked_condition, effective_rules};
pub use schema::{policy_name, schema, validate_config};

pub const TYPE_NAME: &str = "dcr_policy";
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Every dcr pool has one provider, trusting the attestation issuer.
pub const PROVIDER_ID: &str = "attestation";
/// Pool ids are `dcr-NAME`; Google allows 32 characters.
const MAX_NAME: usize = names::MAX_POLICY_NAME;
const DECRYPTER: &str = "roles/cloudkms.cryptoKeyDecrypter";
const OBJECT_VIEWER: &str = "roles/storage.objectViewer";
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_OUTPUT_EXTENSIONS: [&str; 3] = ["csv", "json", "txt"];
const MAX_OUTPUT_BYTES: u64 = 5 << 40;

resource_by_phase!(PolicyResource);

/// The policy a value holds (configuration, plan or state); a null one reads as all null.
fn read(v: &Value) -> Result<model::Policy, Diagnostics> {
    if v.is_null() { Ok(model::Policy::default()) } else { tfplugin6::model::read(v, TYPE_NAME) }
}

/// The error for a dataset id that names no dataset.
fn missing_dataset(id: &str) -> Diagnostics {
    Diagnostic::attribute_error(
        AttributePath::root("datasets"),
        format!("dataset {id:?} does not exist"),
        "Name an existing dcr_dataset by its id (`dcr_dataset.NAME.id`); a dataset created in the same apply is \
         found once it exists.",
    )
    .into()
}

/// The datasets of `planned`, located in the cloud; a missing one is an error naming it.
async fn locate_all(c: &Clients, ids: &[String]) -> Result<Vec<LocatedDataset>, Diagnostics> {
    let mut out = Vec::new();
    for id in ids {
        out.push(locate(c, id).await?.ok_or_else(|| missing_dataset(id))?);
    }
    Ok(out)
}

/// About a null element of allowed_image_digests: a warning at plan, an error at apply.
fn null_digest_diagnostic(severity: Severity) -> Diagnostic {
    let at = AttributePath::root("allowed_image_digests");
    Diagnostic {
        severity,
        summary: format!("Invalid {at}: an element is null; applying this policy would fail"),
        detail: "Every element must be an image digest. A `data.dcr_image_digest` whose notebook file is missing \
                 reads as null: put the notebook back. (Destroy works without it.)"
            .into(),
        attribute: Some(at),
    }
}

async fn set_dataset_access(c: &Clients, l: &LocatedDataset, member: &str, present: bool) -> Result<(), Diagnostics> {
    grant(&c.kms.iam(&l.crypto_key), DECRYPTER, member, present).await?;
    grant(&c.storage.bucket_iam(&l.location.bucket), OBJECT_VIEWER, member, present).await
}

/// Whether `member` holds `role` on `r` (a resource that is gone grants nothing).
async fn holds(r: &dyn IamResource, role: &str, member: &str) -> Result<bool, Diagnostics> {
    match r.get_policy().await {
        Ok(p) => Ok(p.members(role).iter().any(|m| m == member)),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(gcp_diag(&format!("Cannot read the IAM policy of {}", r.describe()), e)),
    }
}

/// Whether the pool's principals hold decrypt on the key and read on the bucket.
async fn has_dataset_access(c: &Clients, l: &LocatedDataset, member: &str) -> Result<bool, Diagnostics> {
    Ok(holds(&c.kms.iam(&l.crypto_key), DECRYPTER, member).await?
        && holds(&c.storage.bucket_iam(&l.location.bucket), OBJECT_VIEWER, member).await?)
}

/// Reads the policy document: its bytes, or `None` when it is missing.
async fn read_document(c: &Clients, bucket: &str) -> Result<Option<Vec<u8>>, Diagnostics> {
    read_object(c, bucket, OBJECT).await
}

#[cfg(test)]
mod tests;
