//! `dcr_dataset`: a private bucket, a KMS key, the source file validated against its schema and
//! stored with envelope encryption, and a stage-1 stand-in that named readers may see.
//!
//! One file per phase: [`schema`] (and configuration checks), [`plan`], [`apply`], [`read`]
//! (refresh and import), all on the typed [`model`]; [`columns`] reads the `schema` block into
//! `dcr_dataset`'s [`DatasetSchema`](dcr_dataset::schema::DatasetSchema).

mod apply;
pub mod columns;
mod dp;
pub(crate) mod ledger;
pub mod model;
pub mod plan;
mod read;
pub mod schema;
mod stage;

use dcr_attestation::names::DatasetLocation;
use tfplugin6::{Diagnostic, Diagnostics, Value};

use crate::clients::Clients;
use crate::resources::common::gcp_diag;
use crate::validate;
pub use plan::{PlanFacts, plan_state};
pub use schema::{schema, validate_config};

/// The `delta` of a `dp_synthetic` stand-in when the configuration sets none.
pub const DEFAULT_DELTA: f64 = 1e-9;
pub const TYPE_NAME: &str = "dcr_dataset";
/// Default limit of each operation (large sources take a while to encrypt and upload).
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// The `dcr-format` of an object dcr wrote: its envelope.
const ENVELOPE_FORMAT: &str = "dcr-envelope-v1";

/// Custom object metadata keys (everything needed to import the dataset; no data).
mod meta {
    pub const FORMAT: &str = "dcr-format";
    pub const KMS_KEY: &str = dcr_attestation::names::KMS_KEY_METADATA;
    pub const SOURCE_SHA: &str = "dcr-source-sha256";
    pub const SOURCE_PATH: &str = "dcr-source-path";
    pub const SOURCE_ROWS: &str = "dcr-source-rows";
    pub const SCHEMA: &str = "dcr-schema";
    pub const STAGE: &str = "dcr-programming-stage";
}

resource_by_phase!(DatasetResource);

/// The dataset a value holds (configuration, plan or state); a null one reads as all null.
fn read(v: &Value) -> Result<model::Dataset, Diagnostics> {
    if v.is_null() { Ok(model::Dataset::default()) } else { tfplugin6::model::read(v, TYPE_NAME) }
}

/// Where a dataset's data lives and which key wraps its data key: what a policy grants access to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedDataset {
    pub location: DatasetLocation,
    pub crypto_key: String,
}

/// Splits a dataset id `BUCKET/NAME`, checking both parts.
pub fn parse_id(id: &str) -> Result<DatasetLocation, String> {
    let l = DatasetLocation::from_id(id)
        .ok_or_else(|| format!("{id:?} is not a dataset id (BUCKET/NAME, the `id` of a dcr_dataset)"))?;
    validate::bucket_name(&l.bucket).map_err(|e| format!("{id:?} is not a dataset id: {e}"))?;
    validate::dataset_name(&l.name).map_err(|e| format!("{id:?} is not a dataset id: {e}"))?;
    Ok(l)
}

/// Finds the dataset `id` in the cloud: `None` when there is no dcr dataset there.
pub async fn locate(c: &Clients, id: &str) -> Result<Option<LocatedDataset>, Diagnostics> {
    let location = parse_id(id).map_err(|e| Diagnostics::from(Diagnostic::error("Invalid dataset id", e)))?;
    let Some(o) = c
        .storage
        .get_object(&location.bucket, &location.object())
        .await
        .map_err(|e| gcp_diag("Cannot read the dataset object", e))?
    else {
        return Ok(None);
    };
    let m = o.metadata.unwrap_or_default();
    match (m.get(meta::FORMAT).map(String::as_str), m.get(meta::KMS_KEY)) {
        (Some(ENVELOPE_FORMAT), Some(key)) => Ok(Some(LocatedDataset { location, crypto_key: key.clone() })),
        _ => Ok(None),
    }
}
