//! `dcr verify` and `dcr results`: find what the checks need (the run's files, the policy
//! documents its inputs were held to, the issuer's keys), then run `dcr_attestation::run`'s
//! checks on them.

use std::path::{Path, PathBuf};

use dcr_attestation::policy::PolicyDocument;
use dcr_attestation::run::{RunExpected, RunFiles, VerifiedRun, verify_run};
use dcr_attestation::workload::OutputManifest;
use jsonwebtoken::jwk::JwkSet;

use crate::cloud::Cloud;
use crate::error::{CliError, unavailable};
use crate::run_dir;

/// What the auditor brings besides the run.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// Policy documents as files; inputs whose policy is not among them are read from the
    /// policy's location (`policy_uri` in the manifest).
    pub policy_files: Vec<PathBuf>,
    /// A JWK set file to check the signature with, instead of the issuer's published keys.
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    /// Digests the auditor pins, besides the policies'.
    pub image_digests: Vec<String>,
    pub require_confidential_hardware: bool,
}

/// Where a run is: a directory, or a `gs://` location.
pub enum RunSource {
    Dir(PathBuf),
    Uri(String),
}

impl RunSource {
    pub fn parse(s: &str) -> RunSource {
        if s.starts_with("gs://") { RunSource::Uri(run_dir::run_prefix(s)) } else { RunSource::Dir(PathBuf::from(s)) }
    }
}

/// Verifies the run at `source`; a `gs://` run is downloaded to a private temporary directory
/// first and removed after.
pub async fn verify(cloud: &Cloud, source: &RunSource, e: &Expectations, quiet: bool) -> Result<VerifiedRun, CliError> {
    match source {
        RunSource::Dir(dir) => verify_dir(cloud, dir, None, e).await,
        RunSource::Uri(uri) => {
            let staging = crate::scratch::private_dir("dcr-verify-", None)?;
            run_dir::download(cloud, uri, staging.path(), quiet).await?;
            verify_dir(cloud, staging.path(), Some(uri.clone()), e).await
        }
    }
}

/// Downloads the run at `uri` into `to` and verifies it there. Files land in `to` only once
/// verified; an earlier download's files in `to` are replaced.
pub async fn results(
    cloud: &Cloud,
    uri: &str,
    to: &Path,
    e: &Expectations,
    quiet: bool,
) -> Result<VerifiedRun, CliError> {
    let uri = run_dir::run_prefix(uri);
    std::fs::create_dir_all(to).map_err(|err| unavailable(format!("cannot create {}: {err}", to.display())))?;
    let staging = crate::scratch::private_dir(".dcr-download-", Some(to))?;
    let written = run_dir::download(cloud, &uri, staging.path(), quiet).await?;
    let verified = verify_dir(cloud, staging.path(), Some(uri.clone()), e).await?;
    for name in written.iter().map(|w| w.split('/').next().unwrap_or(w)).collect::<std::collections::BTreeSet<_>>() {
        let (from, into) = (staging.path().join(name), to.join(name));
        let replace = |err: std::io::Error| unavailable(format!("cannot move {name} into {}: {err}", to.display()));
        if into.is_dir() {
            std::fs::remove_dir_all(&into).map_err(replace)?;
        } else if into.exists() {
            std::fs::remove_file(&into).map_err(replace)?;
        }
        std::fs::rename(&from, &into).map_err(replace)?;
    }
    Ok(verified)
}

async fn verify_dir(
    cloud: &Cloud,
    dir: &Path,
    location: Option<String>,
    e: &Expectations,
) -> Result<VerifiedRun, CliError> {
    let evidence = run_dir::read(dir)?;
    let mut policies = Vec::new();
    for f in &e.policy_files {
        policies
            .push(std::fs::read(f).map_err(|err| unavailable(format!("cannot read policy {}: {err}", f.display())))?);
    }
    // The manifest is not yet verified here; it only says where to look. The checks then hold the
    // documents found against the manifest's records, once its hash is the token's nonce.
    if let Ok(manifest) = OutputManifest::from_bytes(&evidence.manifest) {
        let given: Vec<String> =
            policies.iter().filter_map(|b| PolicyDocument::from_bytes(b).ok()).map(|p| p.name).collect();
        let mut fetched = Vec::new();
        for input in &manifest.inputs {
            if given.contains(&input.policy) || input.policy_uri.is_empty() || fetched.contains(&input.policy_uri) {
                continue;
            }
            let document = dcr_audit::policy_document(cloud.storage().await?, input).await.map_err(|err| {
                unavailable(format!(
                    "cannot read policy {:?} at {}: {err} (give its document with --policy FILE)",
                    input.policy, input.policy_uri
                ))
            })?;
            policies.push(document);
            fetched.push(input.policy_uri.clone());
        }
    }
    let issuer =
        e.issuer.clone().or_else(|| policies.iter().find_map(|b| PolicyDocument::from_bytes(b).ok()).map(|p| p.issuer));
    let jwks = match (&e.jwks_file, &issuer) {
        (Some(f), _) => {
            let bytes = std::fs::read(f).map_err(|err| unavailable(format!("cannot read {}: {err}", f.display())))?;
            serde_json::from_slice(&bytes)
                .map_err(|err| CliError::Usage(format!("{} is not a JWK set: {err}", f.display())))?
        }
        (None, Some(i)) => cloud.issuer_jwks(i).await?,
        // Without an issuer the policy check fails before any key is needed.
        (None, None) => JwkSet { keys: Vec::new() },
    };
    let expected = RunExpected {
        policies,
        issuer: e.issuer.clone(),
        location,
        allowed_digests: e.image_digests.clone(),
        require_confidential_hardware: e.require_confidential_hardware,
    };
    let files = RunFiles { manifest: &evidence.manifest, token: &evidence.token, outputs: &evidence.outputs };
    Ok(verify_run(&files, &jwks, &expected)?)
}
