//! The audit trail of a clean room, read from where it lies: every run released under an output
//! location, each verified as `dcr verify` verifies one (`dcr_attestation::run`: token, nonce,
//! policy versions, pinned digest, hardware, every output's hash), and the runs that released
//! nothing with their failure reports; and every use of the runs' datasets' keys, from Cloud
//! Audit Logs ([`key_accesses`]). The provider's `data "dcr_runs"` and `dcr runs` share it; the
//! clients and the issuers' keys are the caller's.

use std::collections::{BTreeMap, BTreeSet};

use dcr_attestation::names::{
    FAILURE_OBJECT, KMS_KEY_METADATA, OUTPUT_MANIFEST_OBJECT, OUTPUTS_DIR, PolicyLocation, TOKEN_OBJECT,
};
use dcr_attestation::policy::PolicyDocument;
use dcr_attestation::run::{FoundFile, RunExpected, RunFiles, verify_run};
use dcr_attestation::workload::{FailureReport, InputRecord, OutputManifest, hex_sha256, split_gs_uri};
use dcr_gcp::logging::{LogEntry, LoggingClient, key_decrypts_filter};
use dcr_gcp::storage::{Object, StorageClient};
use jsonwebtoken::jwk::JwkSet;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0:?} is not a gs://BUCKET/PREFIX location")]
    Location(String),
    #[error("cannot read {what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: dcr_gcp::GcpError,
    },
    #[error(
        "cannot read the audit log of key {key}: {source} (reading Data Access audit logs takes roles/logging.privateLogViewer on the key's project)"
    )]
    AuditLog {
        key: String,
        #[source]
        source: dcr_gcp::GcpError,
    },
    #[error("cannot read which key wraps {what}: {source}")]
    DatasetKey {
        what: String,
        #[source]
        source: dcr_gcp::GcpError,
    },
}

/// Where the keys of an issuer come from (the local cloud's published keys, or OIDC discovery).
#[async_trait::async_trait]
pub trait IssuerKeys: Sync {
    async fn jwks(&self, issuer: &str) -> Result<JwkSet, String>;
}

/// One run, as found and verified.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunRecord {
    /// `gs://BUCKET/PREFIX<digest hex>/`.
    pub uri: String,
    pub workload: String,
    pub image_digest: String,
    /// When the TEE released it (the token's `iat`, Unix seconds).
    pub released_at: Option<i64>,
    /// Hex SHA-256 of `output-manifest.json` (the token's nonce).
    pub manifest_sha256: String,
    /// Each input: dataset, the object generation read, the policy and its version.
    pub inputs: Vec<InputRecord>,
    pub outputs: Vec<String>,
    pub verified: bool,
    /// The failed check (`dcr verify`'s names), or the stage a failed run stopped at.
    pub failed_check: Option<String>,
    pub detail: String,
    /// The failure report of a run that released nothing.
    pub failure: Option<FailureReport>,
}

/// Every run under `location` (`gs://BUCKET/` or `gs://BUCKET/PREFIX/`), in name order, each
/// verified; `policy` keeps only the runs with an input under that policy.
pub async fn list_runs(
    storage: &StorageClient,
    location: &str,
    keys: &dyn IssuerKeys,
    policy: Option<&str>,
) -> Result<Vec<RunRecord>, AuditError> {
    let (bucket, prefix) = split_gs_uri(location).ok_or_else(|| AuditError::Location(location.to_string()))?;
    let objects = storage
        .list_objects(bucket, (!prefix.is_empty()).then_some(prefix))
        .await
        .map_err(|source| AuditError::Storage { what: location.to_string(), source })?;
    let mut records = Vec::new();
    let mut policies: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
    for (run_prefix, files) in runs_in(&objects) {
        let uri = format!("gs://{bucket}/{run_prefix}");
        let read = |name: &str| {
            let object = format!("{run_prefix}{name}");
            async move { download(storage, bucket, &object).await }
        };
        if !files.contains(OUTPUT_MANIFEST_OBJECT) {
            if policy.is_some() {
                // A failure report names no inputs: it cannot be placed under a policy.
                continue;
            }
            let failure: Option<FailureReport> =
                read(FAILURE_OBJECT).await.ok().and_then(|b| serde_json::from_slice(&b).ok());
            records.push(failed_record(uri, failure));
            continue;
        }
        let manifest_bytes = read(OUTPUT_MANIFEST_OBJECT).await?;
        let manifest = OutputManifest::from_bytes(&manifest_bytes).ok();
        if let (Some(p), Some(m)) = (policy, &manifest)
            && !m.inputs.iter().any(|i| i.policy == p)
        {
            continue;
        }
        let token = String::from_utf8_lossy(&read(TOKEN_OBJECT).await.unwrap_or_default()).into_owned();
        let mut outputs = Vec::new();
        for name in files.iter().filter_map(|f| f.strip_prefix(OUTPUTS_DIR)) {
            outputs.push(hash_object(storage, bucket, &format!("{run_prefix}{OUTPUTS_DIR}{name}"), name).await?);
        }
        let mut expected = RunExpected { location: Some(uri.clone()), ..Default::default() };
        for input in manifest.iter().flat_map(|m| &m.inputs) {
            if input.policy_uri.is_empty() {
                continue;
            }
            let version = (input.policy_uri.clone(), input.policy_sha256.clone());
            if !policies.contains_key(&version) {
                // An unreadable document fails the run's policy check, not the listing.
                policies.insert(version.clone(), policy_document(storage, input).await.unwrap_or_default());
            }
            expected.policies.push(policies[&version].clone());
        }
        let issuer = expected.policies.iter().find_map(|b| PolicyDocument::from_bytes(b).ok()).map(|p| p.issuer);
        let jwks = match issuer {
            Some(i) => keys.jwks(&i).await.unwrap_or(JwkSet { keys: Vec::new() }),
            None => JwkSet { keys: Vec::new() },
        };
        let files = RunFiles { manifest: &manifest_bytes, token: &token, outputs: &outputs };
        let checked = verify_run(&files, &jwks, &expected);
        let m = manifest.unwrap_or_default();
        records.push(RunRecord {
            uri,
            workload: m.workload,
            image_digest: m.image_digest,
            released_at: checked.as_ref().ok().and_then(|v| v.claims.issued_at),
            manifest_sha256: hex_sha256(&manifest_bytes),
            inputs: m.inputs,
            outputs: m.outputs.into_iter().map(|o| o.name).collect(),
            verified: checked.is_ok(),
            failed_check: checked.as_ref().err().map(|f| f.check.name().to_string()),
            detail: checked.err().map(|f| f.detail).unwrap_or_default(),
            failure: None,
        });
    }
    Ok(records)
}

/// The policy document `input` was held to: the one at its `policy_uri` when it still hashes to
/// the manifest's `policy_sha256`, else that version from the policy bucket's history
/// (`history/SHA256.json`, which `dcr_policy` writes beside every document). When neither is
/// there, the current document is returned, and the policy check says what changed.
pub async fn policy_document(storage: &StorageClient, input: &InputRecord) -> Result<Vec<u8>, AuditError> {
    let (bucket, object) =
        split_gs_uri(&input.policy_uri).ok_or_else(|| AuditError::Location(input.policy_uri.clone()))?;
    let current = download(storage, bucket, object).await?;
    if input.policy_sha256.is_empty() || hex_sha256(&current) == input.policy_sha256 {
        return Ok(current);
    }
    let history = PolicyLocation::history_object(&input.policy_sha256);
    match download(storage, bucket, &history).await {
        Ok(old) => Ok(old),
        Err(AuditError::Storage { source, .. }) if source.is_not_found() => Ok(current),
        Err(e) => Err(e),
    }
}

/// One use of a dataset's key: a Cloud KMS `Decrypt` call, from the key project's Data Access
/// audit log.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct KeyAccess {
    /// When (RFC 3339).
    pub time: String,
    /// `projects/P/locations/L/keyRings/R/cryptoKeys/K`.
    pub key: String,
    /// The datasets (`BUCKET/NAME`) among the runs' inputs whose data key it wraps.
    pub datasets: Vec<String>,
    /// Who called: a workload identity pool's `principal://…`, or an account's email.
    pub principal: String,
    /// Whether KMS decrypted; a refused call is on record too.
    pub granted: bool,
    /// Why a refused call was refused.
    pub status: String,
}

/// Every decrypt with the keys of the datasets `runs` read, oldest first. The key of a dataset is
/// the one its object's metadata names (the key the provider wrapped its data key with).
/// On Google Cloud, the key's project must log Data Access for Cloud KMS (`auditConfigs`, off by
/// default); the local cloud's project does.
pub async fn key_accesses(
    storage: &StorageClient,
    logging: &LoggingClient,
    runs: &[RunRecord],
) -> Result<Vec<KeyAccess>, AuditError> {
    let mut keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let objects: BTreeMap<&str, &str> =
        runs.iter().flat_map(|r| &r.inputs).map(|i| (i.object_uri.as_str(), i.dataset.as_str())).collect();
    for (uri, dataset) in objects {
        let Some((bucket, object)) = split_gs_uri(uri) else { continue };
        let found = storage
            .get_object(bucket, object)
            .await
            .map_err(|source| AuditError::DatasetKey { what: uri.to_string(), source })?;
        if let Some(key) = found.and_then(|o| o.metadata).and_then(|mut m| m.remove(KMS_KEY_METADATA)) {
            keys.entry(key).or_default().insert(dataset.to_string());
        }
    }
    let mut accesses = Vec::new();
    for (key, datasets) in keys {
        let Some(project) = key.strip_prefix("projects/").and_then(|k| k.split('/').next()) else { continue };
        let entries = logging
            .list_entries(&[format!("projects/{project}")], &key_decrypts_filter(project, &key))
            .await
            .map_err(|source| AuditError::AuditLog { key: key.clone(), source })?;
        accesses.extend(entries.iter().filter_map(|e| key_access(e, &key, &datasets)));
    }
    accesses.sort_by(|a, b| a.time.cmp(&b.time));
    Ok(accesses)
}

/// The access an audit entry records, if it is a decrypt with `key`.
fn key_access(entry: &LogEntry, key: &str, datasets: &BTreeSet<String>) -> Option<KeyAccess> {
    let audit = entry.proto_payload.as_ref().filter(|a| a.method_name == "Decrypt" && a.resource_name == key)?;
    let status = audit.status.clone().unwrap_or_default();
    Some(KeyAccess {
        time: entry.timestamp.clone(),
        key: key.to_string(),
        datasets: datasets.iter().cloned().collect(),
        principal: audit.authentication_info.principal(),
        granted: status.code == 0,
        status: status.message,
    })
}

/// The runs among `objects`: each prefix holding an output manifest or a failure report, with
/// the names under it.
fn runs_in(objects: &[Object]) -> BTreeMap<String, BTreeSet<String>> {
    let mut runs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for o in objects {
        for marker in [OUTPUT_MANIFEST_OBJECT, FAILURE_OBJECT] {
            if let Some(run) = o.name.strip_suffix(marker).filter(|p| p.is_empty() || p.ends_with('/')) {
                runs.entry(run.to_string()).or_default();
            }
        }
    }
    for o in objects {
        // The longest run prefix an object is under (in name order, a prefix sorts before the
        // names it is a prefix of).
        if let Some((run, files)) = runs.iter_mut().rev().find(|(run, _)| o.name.starts_with(run.as_str())) {
            files.insert(o.name[run.len()..].to_string());
        }
    }
    runs
}

fn failed_record(uri: String, failure: Option<FailureReport>) -> RunRecord {
    RunRecord {
        uri,
        workload: failure.as_ref().map(|f| f.workload.clone()).unwrap_or_default(),
        image_digest: failure.as_ref().map(|f| f.image_digest.clone()).unwrap_or_default(),
        released_at: None,
        manifest_sha256: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        verified: false,
        failed_check: Some(failure.as_ref().map(|f| f.stage.clone()).unwrap_or_else(|| "files".into())),
        detail: failure.as_ref().map(|f| format!("the run released nothing: {}", f.message)).unwrap_or_default(),
        failure,
    }
}

/// An object's size and SHA-256, streamed: outputs may be large.
async fn hash_object(storage: &StorageClient, bucket: &str, object: &str, name: &str) -> Result<FoundFile, AuditError> {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut size = 0u64;
    storage
        .download_object(bucket, object, |b| {
            ctx.update(b);
            size += b.len() as u64;
            Ok(())
        })
        .await
        .map_err(|source| AuditError::Storage { what: format!("gs://{bucket}/{object}"), source })?;
    Ok(FoundFile { name: name.to_string(), size, sha256: hex::encode(ctx.finish()) })
}

async fn download(storage: &StorageClient, bucket: &str, object: &str) -> Result<Vec<u8>, AuditError> {
    storage
        .read_object(bucket, object)
        .await
        .map_err(|source| AuditError::Storage { what: format!("gs://{bucket}/{object}"), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> Object {
        Object { name: name.into(), ..Default::default() }
    }

    #[test]
    fn audit_entries_become_key_accesses() {
        let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
        let datasets = BTreeSet::from(["b/patients".to_string()]);
        let entry = |method: &str, resource: &str, status: serde_json::Value| -> LogEntry {
            serde_json::from_value(serde_json::json!({
                "timestamp": "2026-12-05T06:00:00.000Z",
                "protoPayload": {"methodName": method, "resourceName": resource, "status": status,
                                 "authenticationInfo": {"principalSubject": "principal://x/subject/vm"}}}))
            .unwrap()
        };
        let ok = key_access(&entry("Decrypt", key, serde_json::json!({})), key, &datasets).unwrap();
        assert!(ok.granted);
        assert_eq!(
            (ok.principal.as_str(), ok.datasets.as_slice()),
            ("principal://x/subject/vm", &["b/patients".to_string()][..])
        );
        let denied =
            key_access(&entry("Decrypt", key, serde_json::json!({"code": 7, "message": "no"})), key, &datasets)
                .unwrap();
        assert!(!denied.granted);
        assert_eq!(denied.status, "no");
        assert!(key_access(&entry("Encrypt", key, serde_json::json!({})), key, &datasets).is_none());
        assert!(key_access(&entry("Decrypt", "projects/p/other", serde_json::json!({})), key, &datasets).is_none());
    }

    #[test]
    fn runs_are_the_prefixes_holding_a_manifest_or_a_failure_report() {
        let objects: Vec<Object> = [
            "study/aa/attestation-token.jwt",
            "study/aa/output-manifest.json",
            "study/aa/outputs/summary.csv",
            "study/bb/failure.json",
            "study/notes.txt",
            "other/cc/outputs/x.csv",
            "output-manifest.json",
        ]
        .into_iter()
        .map(object)
        .collect();
        let runs = runs_in(&objects);
        // A run at the location's root holds only what no deeper run does.
        assert_eq!(runs.keys().collect::<Vec<_>>(), ["", "study/aa/", "study/bb/"]);
        assert_eq!(
            runs[""].iter().collect::<Vec<_>>(),
            ["other/cc/outputs/x.csv", "output-manifest.json", "study/notes.txt"]
        );
        let aa: Vec<&str> = runs["study/aa/"].iter().map(String::as_str).collect();
        assert_eq!(aa, ["attestation-token.jwt", "output-manifest.json", "outputs/summary.csv"]);
        assert_eq!(runs["study/bb/"].iter().collect::<Vec<_>>(), ["failure.json"]);
    }
}
