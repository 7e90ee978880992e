//! What a `dcr_dataset`'s configuration, plan and state hold, as Rust values.

use std::collections::BTreeMap;

use dcr_attestation::names::DatasetLocation;
use tfplugin6::model::{Attr, Model, SetOf};
use tfplugin6::value::Number;
use tfplugin6::{Diagnostics, Value};

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct Dataset {
    pub id: Attr<String>,
    pub name: Attr<String>,
    pub source: Attr<String>,
    pub bucket: Attr<String>,
    pub location: Attr<String>,
    pub kms_location: Attr<String>,
    pub labels: Attr<BTreeMap<String, Attr<String>>>,
    pub object: Attr<String>,
    pub object_uri: Attr<String>,
    pub object_generation: Attr<String>,
    pub key_ring: Attr<String>,
    pub crypto_key: Attr<String>,
    pub source_sha256: Attr<String>,
    pub source_rows: Attr<i64>,
    pub ciphertext_sha256: Attr<String>,
    pub stage1_bucket: Attr<String>,
    pub stage1_uri: Attr<String>,
    pub stage1_sha256: Attr<String>,
    pub privacy_ledger_uri: Attr<String>,
    pub privacy_spent: Attr<Number>,
    /// The declared columns, read by [`super::columns::dataset_schema`].
    pub schema: Value,
    pub programming_stage: Attr<ProgrammingStage>,
    pub privacy_budget: Attr<PrivacyBudget>,
    pub timeouts: Attr<crate::timeouts::Timeouts>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ProgrammingStage {
    pub mode: Attr<String>,
    pub rows: Attr<Number>,
    pub epsilon: Attr<Number>,
    pub delta: Attr<Number>,
    pub bins: Attr<Number>,
    pub unit_column: Attr<String>,
    pub max_rows_per_unit: Attr<Number>,
    pub public_source: Attr<String>,
    pub readers: Attr<SetOf<Attr<String>>>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct PrivacyBudget {
    pub epsilon: Attr<Number>,
    pub delta: Attr<Number>,
}

impl Dataset {
    /// The labels whose values are known.
    pub fn known_labels(&self) -> BTreeMap<String, String> {
        let labels = self.labels.known().into_iter().flatten();
        labels.filter_map(|(k, v)| v.known().map(|v| (k.clone(), v.clone()))).collect()
    }

    /// The stand-in's mode: `none` without the block, `None` while unknown.
    pub fn stage_mode(&self) -> Option<&str> {
        match &self.programming_stage {
            Attr::Null => Some("none"),
            Attr::Unknown => None,
            Attr::Known(s) => s.mode.as_deref(),
        }
    }

    pub fn stage(&self) -> Option<&ProgrammingStage> {
        self.programming_stage.known()
    }

    /// Where the dataset is, once its bucket and name are known.
    pub fn place(&self) -> Option<DatasetLocation> {
        Some(DatasetLocation::new(self.bucket.as_deref()?, self.name.as_deref()?))
    }
}

/// A string the plan made known; its absence at apply is a provider bug.
pub fn known<'a>(v: &'a Attr<String>, attribute: &str) -> Result<&'a str, Diagnostics> {
    crate::resources::common::known(super::TYPE_NAME, v, attribute)
}
