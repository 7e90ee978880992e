//! Where dcr keeps things: every bucket, object, key ring, pool and prefix name dcr derives, in
//! one place, for the provider, the launcher and the CLI alike. A name derived in two places can
//! drift apart (a custom policy bucket once did); here each rule is written once, and tested.
//!
//! The types take names that are already valid; checking user input is the provider's job.

/// What the encrypted object of a dataset is called after the dataset's name.
const DATASET_OBJECT_SUFFIX: &str = ".csv.enc";
/// What a dataset's stage-1 bucket adds to the dataset's bucket name.
pub const STAGE1_BUCKET_SUFFIX: &str = "-stage1";
/// The prefix of the ids dcr gives its key rings, pools and VMs.
const DCR_PREFIX: &str = "dcr-";
/// The prefix of a workload's consumer pool id.
const OUTPUT_POOL_PREFIX: &str = "dcr-out-";
/// The policy document's object name in the policy's bucket.
pub const POLICY_OBJECT: &str = "policy.json";
/// Where a policy's bucket keeps every version of its document ([`PolicyLocation::history_object`]).
pub const POLICY_HISTORY_DIR: &str = "history/";
/// The objects a run writes under its prefix.
pub const OUTPUTS_DIR: &str = "outputs/";
pub const OUTPUT_MANIFEST_OBJECT: &str = "output-manifest.json";
pub const TOKEN_OBJECT: &str = "attestation-token.jwt";
pub const FAILURE_OBJECT: &str = "failure.json";
/// The custom metadata key of a dataset's object that names the Cloud KMS key wrapping its data
/// key: where an auditor finds which key's use to look up.
pub const KMS_KEY_METADATA: &str = "dcr-kms-key";

/// A dataset's bucket and name, from which everything else it has is named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetLocation {
    pub bucket: String,
    pub name: String,
}

impl DatasetLocation {
    pub fn new(bucket: impl Into<String>, name: impl Into<String>) -> DatasetLocation {
        DatasetLocation { bucket: bucket.into(), name: name.into() }
    }

    /// The bucket of a dataset whose configuration names none: `PROJECT-NAME`.
    pub fn default_bucket(project: &str, name: &str) -> String {
        format!("{project}-{name}")
    }

    /// Splits a dataset id, `BUCKET/NAME` (the parts are not checked).
    pub fn from_id(id: &str) -> Option<DatasetLocation> {
        let (bucket, name) = id.split_once('/')?;
        Some(DatasetLocation::new(bucket, name))
    }

    /// The dataset's id (and import id): `BUCKET/NAME`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.bucket, self.name)
    }

    /// The encrypted object (a dcr envelope): `NAME.csv.enc`.
    pub fn object(&self) -> String {
        dataset_object(&self.name)
    }

    pub fn object_uri(&self) -> String {
        gs_uri(&self.bucket, &self.object())
    }

    /// The bucket analysts read the stand-in from: `BUCKET-stage1`.
    pub fn stage1_bucket(&self) -> String {
        stage1_bucket(&self.bucket)
    }

    pub fn stage1_object(&self) -> String {
        stage1_object(&self.name)
    }

    pub fn stage1_uri(&self) -> String {
        gs_uri(&self.stage1_bucket(), &self.stage1_object())
    }

    /// The dataset's privacy ledger, beside its data: `NAME.privacy-ledger.json`.
    pub fn ledger_object(&self) -> String {
        format!("{}{LEDGER_SUFFIX}", self.name)
    }

    pub fn ledger_uri(&self) -> String {
        gs_uri(&self.bucket, &self.ledger_object())
    }
}

/// What follows a dataset's name in its privacy ledger's object name.
pub const LEDGER_SUFFIX: &str = ".privacy-ledger.json";

/// The encrypted object of the dataset `name` (a dcr envelope): `NAME.csv.enc`.
pub fn dataset_object(name: &str) -> String {
    format!("{name}{DATASET_OBJECT_SUFFIX}")
}

/// The stage-1 bucket of a dataset in `bucket`: `BUCKET-stage1`.
pub fn stage1_bucket(bucket: &str) -> String {
    format!("{bucket}{STAGE1_BUCKET_SUFFIX}")
}

/// The stand-in CSV of the dataset `name` in its stage-1 bucket: `NAME.csv`.
pub fn stage1_object(name: &str) -> String {
    format!("{name}.csv")
}

/// The key ring of a dataset's keys: `projects/PROJECT/locations/LOCATION/keyRings/dcr-NAME`.
pub fn key_ring(project: &str, location: &str, dataset: &str) -> String {
    format!("projects/{project}/locations/{location}/keyRings/{DCR_PREFIX}{dataset}")
}

/// Where a policy's document is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyLocation {
    pub bucket: String,
}

impl PolicyLocation {
    pub fn new(bucket: impl Into<String>) -> PolicyLocation {
        PolicyLocation { bucket: bucket.into() }
    }

    /// The bucket of a policy whose configuration names none: `PROJECT-policy-NAME`.
    pub fn default_bucket(project: &str, name: &str) -> String {
        format!("{project}-policy-{name}")
    }

    pub fn document_uri(&self) -> String {
        gs_uri(&self.bucket, POLICY_OBJECT)
    }

    /// Where every version of the document is kept, named by its hex SHA-256: a run's manifest
    /// records the hash of the document it was held to, so an auditor finds that version after
    /// the policy has changed. Content-addressed, so no version can be swapped for another.
    pub fn history_object(sha256_hex: &str) -> String {
        format!("{POLICY_HISTORY_DIR}{sha256_hex}.json")
    }
}

/// The longest policy name whose pool id fits Google's 32 characters.
pub const MAX_POLICY_NAME: usize = 32 - DCR_PREFIX.len();

/// The id of a policy's workload identity pool: `dcr-NAME`.
pub fn policy_pool_id(policy: &str) -> String {
    format!("{DCR_PREFIX}{policy}")
}

/// The id of a workload's consumer pool, the one allowed to write its results: `dcr-out-NAME`.
pub fn output_pool_id(workload: &str) -> String {
    format!("{OUTPUT_POOL_PREFIX}{workload}")
}

/// The longest workload name whose consumer pool id fits Google's 32 characters.
pub const MAX_WORKLOAD_NAME: usize = 32 - OUTPUT_POOL_PREFIX.len();

/// The name of a workload's VM: `dcr-NAME`.
pub fn instance_name(workload: &str) -> String {
    format!("{DCR_PREFIX}{workload}")
}

/// The hex part of an image digest (`sha256:HEX`).
pub fn digest_hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// A run's own prefix under a workload's output prefix (or output URI): `PREFIX<digest hex>/`.
pub fn run_prefix(output_prefix: &str, digest: &str) -> String {
    format!("{output_prefix}{}/", digest_hex(digest))
}

/// Where one run writes: `gs://BUCKET/PREFIX<image digest hex>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunLocation {
    pub bucket: String,
    /// The run's own prefix, ending in `/`.
    pub prefix: String,
}

impl RunLocation {
    /// The run of the image `digest` under a workload's output `prefix` (ending in `/`).
    pub fn new(bucket: &str, output_prefix: &str, digest: &str) -> RunLocation {
        RunLocation { bucket: bucket.to_string(), prefix: run_prefix(output_prefix, digest) }
    }

    /// The output prefix of a workload whose configuration names none: `NAME/`.
    pub fn default_output_prefix(workload: &str) -> String {
        format!("{workload}/")
    }

    /// The run under an output URI `gs://BUCKET/PREFIX` (ending in `/`).
    pub fn under(output_uri: &str, digest: &str) -> Option<RunLocation> {
        let (bucket, prefix) = crate::workload::split_gs_uri(output_uri)?;
        Some(RunLocation::new(bucket, prefix, digest))
    }

    pub fn uri(&self) -> String {
        gs_uri(&self.bucket, &self.prefix)
    }

    /// An object of the run, by its name under the run's prefix.
    pub fn object(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn object_uri(&self, name: &str) -> String {
        gs_uri(&self.bucket, &self.object(name))
    }
}

fn gs_uri(bucket: &str, object: &str) -> String {
    format!("gs://{bucket}/{object}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dataset_is_named_from_its_bucket_and_name() {
        let d = DatasetLocation::new(DatasetLocation::default_bucket("proj", "patients"), "patients");
        assert_eq!(d.id(), "proj-patients/patients");
        assert_eq!(DatasetLocation::from_id(&d.id()), Some(d.clone()));
        assert_eq!(DatasetLocation::from_id("no-slash"), None);
        assert_eq!(d.object_uri(), "gs://proj-patients/patients.csv.enc");
        assert_eq!(d.stage1_uri(), "gs://proj-patients-stage1/patients.csv");
        assert_eq!(d.ledger_uri(), "gs://proj-patients/patients.privacy-ledger.json");
        assert_eq!(key_ring("proj", "global", "patients"), "projects/proj/locations/global/keyRings/dcr-patients");
    }

    #[test]
    fn policies_pools_and_vms() {
        let p = PolicyLocation::new(PolicyLocation::default_bucket("proj", "study"));
        assert_eq!(p.document_uri(), "gs://proj-policy-study/policy.json");
        assert_eq!(policy_pool_id("study"), "dcr-study");
        assert_eq!(policy_pool_id(&"p".repeat(MAX_POLICY_NAME)).len(), 32);
        assert_eq!(output_pool_id("study"), "dcr-out-study");
        assert_eq!(output_pool_id(&"w".repeat(MAX_WORKLOAD_NAME)).len(), 32);
        assert_eq!(instance_name("study"), "dcr-study");
    }

    #[test]
    fn a_run_writes_under_its_image_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let run = RunLocation::new("out", &RunLocation::default_output_prefix("study"), &digest);
        assert_eq!(run.uri(), format!("gs://out/study/{}/", "ab".repeat(32)));
        assert_eq!(run.object(TOKEN_OBJECT), format!("study/{}/attestation-token.jwt", "ab".repeat(32)));
        assert_eq!(RunLocation::under("gs://out/study/", &digest), Some(run));
        assert_eq!(RunLocation::under("gs://out/", "sha256:00").map(|r| r.uri()), Some("gs://out/00/".into()));
        assert_eq!(RunLocation::under("s3://out/", "sha256:00"), None);
    }
}
