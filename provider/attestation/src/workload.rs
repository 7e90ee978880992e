//! What a workload image promises and what its run reports.
//!
//! The [`WorkloadManifest`] is baked into the workload image next to the notebook, so it is
//! measured: the image digest a data owner pins covers which datasets the notebook reads, under
//! which policies, and where its results go. The launcher reads it and nothing else to decide what
//! to do. The [`OutputManifest`] is what a run released; the run's attestation token carries its
//! SHA-256 as nonce, which binds the released files to the image that produced them.
//!
//! The manifest never names a policy's image digests: a policy pins the image, so the image cannot
//! depend on the policy's contents (that would be a cycle). It names policies by their audience and
//! document location, both fixed by the policy's project and name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const WORKLOAD_FORMAT: &str = "dcr-workload-v1";
pub const OUTPUT_FORMAT: &str = "dcr-output-v1";
pub const FAILURE_FORMAT: &str = "dcr-failure-v1";

/// Where the workload layer puts things inside the image (all under [`IMAGE_DIR`]).
pub const IMAGE_DIR: &str = "dcr";
pub const MANIFEST_FILE: &str = "workload.json";
pub const NOTEBOOK_FILE: &str = "notebook.ipynb";
pub const PARAMETERS_FILE: &str = "parameters.json";
/// In a rehearsal (`dcr run`), what the launcher is to check, in place of the workload manifest.
pub const REHEARSAL_FILE: &str = "rehearsal.json";
/// Where a rehearsal's host directory is mounted: the stand-ins under `inputs/`, and `released/`
/// for what the rules let out (and the executed notebook).
pub const REHEARSAL_DIR: &str = "/dcr-rehearsal";

/// The files of a workload image's one layer, as `(path, mode, contents)`: the manifest, the
/// notebook and its parameters under [`IMAGE_DIR`]. Their bytes and [`image_created_by`] are all a
/// workload image adds to its base, so the provider (which builds it) and an auditor (who rebuilds
/// it, `dcr verify --notebook`) get the same digest from the same inputs.
pub fn image_files(manifest: &WorkloadManifest, notebook: Vec<u8>, parameters: Vec<u8>) -> Vec<(String, u32, Vec<u8>)> {
    vec![
        (format!("{IMAGE_DIR}/{MANIFEST_FILE}"), 0o644, manifest.to_bytes()),
        (format!("{IMAGE_DIR}/{NOTEBOOK_FILE}"), 0o644, notebook),
        (format!("{IMAGE_DIR}/{PARAMETERS_FILE}"), 0o644, parameters),
    ]
}

/// The image config's history entry of a workload's layer.
pub fn image_created_by(workload: &str) -> String {
    format!("dcr_workload {workload}")
}

/// Object names a run writes under its output prefix.
pub use crate::names::{FAILURE_OBJECT, OUTPUT_MANIFEST_OBJECT, OUTPUTS_DIR, TOKEN_OBJECT};

/// Which cloud the launcher talks to. `local` reads the local cloud's address from the
/// environment (`DCR_LOCAL_CLOUD`); `gcp` always uses Google's endpoints, so an operator cannot
/// redirect a production workload's requests (and its tokens) elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Gcp,
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadManifest {
    pub format: String,
    /// The `dcr_workload` name.
    pub name: String,
    pub backend: Backend,
    /// Wall-clock limit for the notebook run.
    pub timeout_seconds: u64,
    /// Input name → where it is and which policy guards it. The name is the file name the notebook
    /// sees (`/run/dcr/inputs/NAME.csv`).
    pub inputs: BTreeMap<String, WorkloadInput>,
    pub output: WorkloadOutput,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadInput {
    /// The `dcr_dataset` id, `BUCKET/NAME`.
    pub dataset: String,
    /// `gs://BUCKET/NAME.csv.enc`: the encrypted object (dcr envelope).
    pub object_uri: String,
    /// The `dcr_policy` name.
    pub policy: String,
    /// `gs://…/policy.json`: the policy document (output rules, version).
    pub policy_uri: String,
    /// The policy's workload identity provider, where the attestation token is exchanged.
    pub audience: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadOutput {
    /// `gs://BUCKET/PREFIX/`; each run writes under `<uri><image digest hex>/`.
    pub uri: String,
    /// The consumer's workload identity provider that may write there.
    pub audience: String,
}

impl WorkloadManifest {
    /// Canonical bytes: fields in declaration order, maps sorted, pretty, final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a workload manifest serialises");
        out.push(b'\n');
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<WorkloadManifest, String> {
        let m: WorkloadManifest = serde_json::from_slice(b).map_err(|e| format!("not a dcr workload manifest: {e}"))?;
        if m.format != WORKLOAD_FORMAT {
            return Err(format!("unknown workload manifest format {:?} (expected {WORKLOAD_FORMAT})", m.format));
        }
        for name in m.inputs.keys() {
            if !is_input_name(name) {
                return Err(format!(
                    "input name {name:?} is not a plain file name (letters, digits, '_' and '-', at most 63)"
                ));
            }
        }
        Ok(m)
    }

    /// Where a run of the image with `image_digest` writes: `<output uri><hex>/`.
    pub fn run_prefix(&self, image_digest: &str) -> String {
        crate::names::run_prefix(&self.output.uri, image_digest)
    }
}

/// Input names become file names inside the TEE: no separators, dots or surprises.
pub fn is_input_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Splits `gs://BUCKET/OBJECT` (OBJECT may be empty, for prefixes).
pub fn split_gs_uri(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("gs://")?;
    let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, object))
}

/// A stage-1 rehearsal of a notebook (`dcr run`): the stage-2 run's time limit and the output
/// rules of the policies that will hold it, which the launcher applies exactly as in stage 2.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsal {
    pub timeout_seconds: u64,
    /// Policy name and its output rules.
    pub policies: Vec<(String, crate::policy::OutputRules)>,
}

/// What a run released, uploaded beside the outputs as `output-manifest.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputManifest {
    pub format: String,
    pub workload: String,
    /// The digest of the image that ran, as the TEE attested it.
    pub image_digest: String,
    pub inputs: Vec<InputRecord>,
    pub outputs: Vec<OutputFile>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    pub name: String,
    pub dataset: String,
    pub object_uri: String,
    /// The object generation read: which version of the data was used.
    pub generation: String,
    pub policy: String,
    pub policy_version: u64,
    /// Where the policy document was read (`gs://…/policy.json`) and the hex SHA-256 of the bytes
    /// read: an auditor checks a policy document against them, so the rules a run was held to
    /// are known exactly. Absent in manifests written before they were recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_uri: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub policy_sha256: String,
    /// The IAM members the policy lets read released output (its `output.readers`): a member may
    /// read a run's results when every input's policy names it. Absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<String>,
}

/// The members every input's policy lets read the outputs: what a run's results may be shared with,
/// besides the consumer who owns the output bucket.
pub fn shared_readers(inputs: &[InputRecord]) -> Vec<String> {
    let Some(first) = inputs.first() else { return Vec::new() };
    let mut readers: Vec<String> =
        first.readers.iter().filter(|r| inputs.iter().all(|i| i.readers.contains(r))).cloned().collect();
    readers.sort();
    readers.dedup();
    readers
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the outputs directory (`summary.csv`).
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

impl OutputManifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        document_bytes(self)
    }

    pub fn from_bytes(b: &[u8]) -> Result<OutputManifest, String> {
        parse_document(b, "output manifest", OUTPUT_FORMAT, |m: &OutputManifest| &m.format)
    }
}

/// How dcr stores its JSON documents: pretty, fields in declaration order, a final newline.
pub(crate) fn document_bytes<T: Serialize>(doc: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).expect("dcr documents serialise");
    out.push(b'\n');
    out
}

/// Parses a dcr document and checks its `format` field.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    b: &[u8],
    what: &str,
    expected: &str,
    format: impl Fn(&T) -> &str,
) -> Result<T, String> {
    let doc: T = serde_json::from_slice(b).map_err(|e| format!("not a dcr {what}: {e}"))?;
    if format(&doc) != expected {
        return Err(format!("unknown {what} format {:?} (expected {expected})", format(&doc)));
    }
    Ok(doc)
}

/// The nonce a run's attestation token carries: hex SHA-256 of the output manifest's bytes
/// (64 characters, inside the teeserver's 10–74 byte nonce limits).
pub fn output_nonce(manifest_bytes: &[u8]) -> String {
    hex_sha256(manifest_bytes)
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a run released nothing, uploaded as `failure.json`. It holds the launcher's own words
/// only (the stage, what it was doing, the exit code), never notebook output or data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureReport {
    pub format: String,
    pub workload: String,
    pub image_digest: String,
    pub stage: String,
    pub message: String,
    pub exit_code: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_shared_with_the_readers_every_policy_names() {
        let rec = |readers: &[&str]| InputRecord {
            name: "n".into(),
            dataset: "b/d".into(),
            object_uri: "gs://b/d.csv.enc".into(),
            generation: "1".into(),
            policy: "p".into(),
            policy_version: 1,
            policy_uri: String::new(),
            policy_sha256: String::new(),
            readers: readers.iter().map(|r| r.to_string()).collect(),
        };
        assert!(shared_readers(&[]).is_empty());
        assert_eq!(shared_readers(&[rec(&["user:b@x.io", "user:a@x.io"])]), vec!["user:a@x.io", "user:b@x.io"]);
        assert_eq!(shared_readers(&[rec(&["user:a@x.io", "user:b@x.io"]), rec(&["user:b@x.io"])]), vec!["user:b@x.io"]);
        assert!(shared_readers(&[rec(&["user:a@x.io"]), rec(&[])]).is_empty());
        // An input without readers leaves them out of the manifest's bytes.
        assert!(!String::from_utf8(serde_json::to_vec(&rec(&[])).unwrap()).unwrap().contains("readers"));
    }

    fn manifest() -> WorkloadManifest {
        WorkloadManifest {
            format: WORKLOAD_FORMAT.into(),
            name: "study".into(),
            backend: Backend::Local,
            timeout_seconds: 600,
            inputs: BTreeMap::from([(
                "patients".to_string(),
                WorkloadInput {
                    dataset: "b/patients".into(),
                    object_uri: "gs://b/patients.csv.enc".into(),
                    policy: "study".into(),
                    policy_uri: "gs://p-policy-study/policy.json".into(),
                    audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/dcr-study/providers/attestation".into(),
                },
            )]),
            output: WorkloadOutput { uri: "gs://out/results/".into(), audience: "//iam.googleapis.com/x".into() },
        }
    }

    #[test]
    fn manifests_round_trip_and_refuse_strange_input_names() {
        let m = manifest();
        assert_eq!(WorkloadManifest::from_bytes(&m.to_bytes()).unwrap(), m);
        assert_eq!(m.run_prefix("sha256:abc"), "gs://out/results/abc/");
        let mut bad = manifest();
        let input = bad.inputs.remove("patients").unwrap();
        bad.inputs.insert("../etc".into(), input);
        assert!(WorkloadManifest::from_bytes(&bad.to_bytes()).unwrap_err().contains("../etc"));
        let mut other = manifest();
        other.format = "x".into();
        assert!(WorkloadManifest::from_bytes(&other.to_bytes()).is_err());
    }

    #[test]
    fn gs_uris_split_into_bucket_and_object() {
        assert_eq!(split_gs_uri("gs://b/a/b.csv"), Some(("b", "a/b.csv")));
        assert_eq!(split_gs_uri("gs://b"), Some(("b", "")));
        assert_eq!(split_gs_uri("gs:///x"), None);
        assert_eq!(split_gs_uri("s3://b/x"), None);
    }

    #[test]
    fn the_nonce_is_the_manifest_hash() {
        assert_eq!(output_nonce(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
