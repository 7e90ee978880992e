//! What a `dcr_policy`'s configuration, plan and state hold, as Rust values.

use std::collections::BTreeMap;

use tfplugin6::Diagnostics;
use tfplugin6::model::{Attr, Model, SetOf};
use tfplugin6::value::Number;

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct Policy {
    pub id: Attr<String>,
    pub name: Attr<String>,
    pub datasets: Attr<SetOf<Attr<String>>>,
    pub allowed_image_digests: Attr<SetOf<Attr<String>>>,
    pub require_confidential_hardware: Attr<bool>,
    pub allowed_hardware: Attr<SetOf<Attr<String>>>,
    pub allow_debug: Attr<bool>,
    pub require_stable_image: Attr<bool>,
    pub issuer: Attr<String>,
    pub bucket: Attr<String>,
    pub location: Attr<String>,
    pub project_number: Attr<String>,
    pub pool: Attr<String>,
    pub workload_identity_provider: Attr<String>,
    pub audience: Attr<String>,
    pub principal_set: Attr<String>,
    pub attribute_condition: Attr<String>,
    pub attribute_mapping: Attr<BTreeMap<String, Attr<String>>>,
    pub dataset_keys: Attr<BTreeMap<String, Attr<String>>>,
    pub policy_uri: Attr<String>,
    pub policy_version: Attr<i64>,
    pub policy_sha256: Attr<String>,
    pub output: Attr<PolicyOutput>,
    pub timeouts: Attr<crate::timeouts::Timeouts>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct PolicyOutput {
    pub max_bytes: Attr<Number>,
    pub allowed_extensions: Attr<SetOf<Attr<String>>>,
    pub readers: Attr<SetOf<Attr<String>>>,
}

/// The known strings of a set, sorted and without duplicates.
pub fn strings(set: &Attr<SetOf<Attr<String>>>) -> Vec<String> {
    let mut out: Vec<String> = set.known().into_iter().flat_map(|s| &s.0).filter_map(|e| e.known().cloned()).collect();
    out.sort();
    out.dedup();
    out
}

/// A set of known strings.
pub fn string_set(items: &[String]) -> Attr<SetOf<Attr<String>>> {
    Attr::Known(SetOf(items.iter().cloned().map(Attr::Known).collect()))
}

impl Policy {
    /// The dataset id → crypto key map, its known entries.
    pub fn keys(&self) -> BTreeMap<String, String> {
        let keys = self.dataset_keys.known().into_iter().flatten();
        keys.filter_map(|(k, v)| v.known().map(|v| (k.clone(), v.clone()))).collect()
    }

    /// Whether the configuration lists a digest that is null (a `dcr_image_digest` without its notebook).
    pub fn has_null_digest(&self) -> bool {
        self.allowed_image_digests.known().is_some_and(|s| s.0.iter().any(Attr::is_null))
    }
}

/// A string the plan made known; its absence at apply is a provider bug.
pub fn known<'a>(v: &'a Attr<String>, attribute: &str) -> Result<&'a str, Diagnostics> {
    crate::resources::common::known(super::TYPE_NAME, v, attribute)
}
