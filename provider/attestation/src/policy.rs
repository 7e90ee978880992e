//! The policy document: what a `dcr_policy` promises, stored as an object an attested workload can
//! read (`policy_uri`). The launcher enforces its output rules; auditors read its version and
//! condition. Serialised with fields in declaration order and lists sorted, so the same policy
//! always gives the same bytes (and the provider can plan its hash).

use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "dcr-policy-v1";
/// Object name of the document in the policy bucket.
pub use crate::names::POLICY_OBJECT as OBJECT;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDocument {
    pub format: String,
    pub name: String,
    /// Increases by one whenever anything below changes.
    pub version: u64,
    pub issuer: String,
    /// Where workloads exchange their attestation token (the provider's full resource name).
    pub audience: String,
    pub workload_identity_provider: String,
    pub attribute_condition: String,
    pub datasets: Vec<DatasetRef>,
    pub rules: AttestationRules,
    pub output: OutputRules,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetRef {
    /// The `dcr_dataset` id, `BUCKET/NAME`.
    pub id: String,
    pub object_uri: String,
    pub crypto_key: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRules {
    pub allowed_image_digests: Vec<String>,
    pub require_confidential_hardware: bool,
    pub allowed_hardware: Vec<String>,
    pub allow_debug: bool,
    pub require_stable_image: bool,
}

/// What may leave the TEE: every output file must pass every input policy's rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputRules {
    /// Total bytes of all output files.
    pub max_bytes: u64,
    /// File extensions allowed, without the dot (`csv`).
    pub allowed_extensions: Vec<String>,
    /// IAM members who may read released output.
    pub readers: Vec<String>,
}

impl PolicyDocument {
    /// The canonical bytes: sorted lists, pretty JSON, a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut d = self.clone();
        d.datasets.sort_by(|a, b| a.id.cmp(&b.id));
        for l in [
            &mut d.rules.allowed_image_digests,
            &mut d.rules.allowed_hardware,
            &mut d.output.allowed_extensions,
            &mut d.output.readers,
        ] {
            l.sort();
            l.dedup();
        }
        crate::workload::document_bytes(&d)
    }

    pub fn from_bytes(b: &[u8]) -> Result<PolicyDocument, String> {
        crate::workload::parse_document(b, "policy document", FORMAT, |d: &PolicyDocument| &d.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> PolicyDocument {
        PolicyDocument {
            format: FORMAT.into(),
            name: "p".into(),
            version: 1,
            issuer: "https://i".into(),
            audience: "//iam.googleapis.com/x".into(),
            workload_identity_provider: "x".into(),
            attribute_condition: "true".into(),
            datasets: vec![
                DatasetRef { id: "b/z".into(), object_uri: "gs://b/z".into(), crypto_key: "k2".into() },
                DatasetRef { id: "b/a".into(), object_uri: "gs://b/a".into(), crypto_key: "k1".into() },
            ],
            rules: AttestationRules {
                allowed_image_digests: vec!["sha256:b".into(), "sha256:a".into()],
                require_confidential_hardware: true,
                allowed_hardware: vec!["GCP_INTEL_TDX".into()],
                allow_debug: false,
                require_stable_image: true,
            },
            output: OutputRules {
                max_bytes: 10,
                allowed_extensions: vec!["json".into(), "csv".into()],
                readers: vec![],
            },
        }
    }

    #[test]
    fn bytes_do_not_depend_on_list_order_and_round_trip() {
        let a = doc();
        let mut b = doc();
        b.datasets.reverse();
        b.rules.allowed_image_digests.reverse();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let back = PolicyDocument::from_bytes(&a.to_bytes()).unwrap();
        assert_eq!(back.datasets[0].id, "b/a");
        assert_eq!(back.to_bytes(), a.to_bytes());
        let mut c = doc();
        c.format = "other".into();
        assert!(PolicyDocument::from_bytes(&c.to_bytes()).is_err());
    }
}
