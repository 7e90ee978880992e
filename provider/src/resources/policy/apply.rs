//! Applying a `dcr_policy`: converge (pool, provider, grants that follow the datasets, the policy
//! document) and destroy.

use std::collections::BTreeMap;

use dcr_attestation::claims::STS_AUDIENCE;
use dcr_attestation::condition::attribute_mapping;
use dcr_attestation::names::{self, PolicyLocation};
use dcr_attestation::policy::OBJECT;
use dcr_gcp::storage::Object;
use dcr_gcp::workload_identity::{Oidc, WorkloadIdentityPool, WorkloadIdentityPoolProvider, pool_principal_set};
use tfplugin6::model::Attr;
use tfplugin6::{ApplyRequest, ApplyResponse, Diagnostic, Diagnostics, Severity, Value};

use super::model::{Policy, known, strings};
use super::rules::{checked_condition, document, effective_rules, sha256_hex};
use super::set_dataset_access;
use super::{DECRYPTER, DEFAULT_TIMEOUT, OBJECT_VIEWER, PROVIDER_ID, TYPE_NAME, locate_all, null_digest_diagnostic};
use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::resources::common::{
    apply_converging, converge_typed, empty_and_delete_bucket, ensure_bucket, gcp_diag, grant, private_bucket,
};
use crate::resources::dataset::{LocatedDataset, parse_id};

pub(super) async fn apply(state: &ProviderState, req: ApplyRequest) -> ApplyResponse {
    let delete = delete(state, &req.prior_state);
    let converge = converge(state, &req.prior_state, &req.planned_state);
    let (new, diagnostics) = apply_converging(TYPE_NAME, &req, DEFAULT_TIMEOUT, delete, converge).await;
    // A create that failed before the pool existed leaves nothing to track.
    let no_pool = super::read(&new).is_ok_and(|p| p.pool.is_null());
    let nothing_created = req.prior_state.is_null() && diagnostics.has_errors() && no_pool;
    ApplyResponse { new_state: if nothing_created { Value::Null } else { new }, private: Vec::new(), diagnostics }
}

fn want_pool(name: &str) -> WorkloadIdentityPool {
    WorkloadIdentityPool {
        display_name: Some(format!("dcr {name}")),
        description: Some(format!("Workloads admitted by dcr_policy {name:?} (managed by Terraform)")),
        ..Default::default()
    }
}

fn want_provider(planned: &Policy) -> WorkloadIdentityPoolProvider {
    WorkloadIdentityPoolProvider {
        display_name: Some("attestation".into()),
        description: Some("Confidential Space attestation tokens (managed by dcr)".into()),
        attribute_mapping: attribute_mapping(),
        attribute_condition: planned.attribute_condition.known().cloned(),
        oidc: Some(Oidc {
            issuer_uri: planned.issuer.known().cloned().unwrap_or_default(),
            allowed_audiences: vec![STS_AUDIENCE.to_string()],
            jwks_json: None,
        }),
        ..Default::default()
    }
}

async fn converge(provider: &ProviderState, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
    // What is not done yet is recorded as it was before (null on create), so a failure leaves
    // a state the next plan turns into the missing work.
    let start = |prior: &Policy, planned: &Policy| Policy {
        pool: prior.pool.clone(),
        workload_identity_provider: prior.workload_identity_provider.clone(),
        dataset_keys: prior.dataset_keys.clone(),
        policy_sha256: prior.policy_sha256.clone(),
        policy_version: prior.policy_version.clone(),
        ..planned.clone()
    };
    let steps = async |prior: &Policy, planned: &Policy, state: &mut Policy| {
        converge_steps(provider, prior, planned, state).await
    };
    converge_typed(prior, planned, super::read, start, steps).await
}

async fn converge_steps(
    provider: &ProviderState,
    prior: &Policy,
    planned: &Policy,
    state: &mut Policy,
) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let name = known(&planned.name, "name")?;
    let number = known(&planned.project_number, "project_number")?;
    if planned.has_null_digest() {
        return Err(null_digest_diagnostic(Severity::Error).into());
    }
    let (rules, _, _) = effective_rules(planned, c.is_local)?;
    let condition = checked_condition(&rules)?;
    if planned.attribute_condition.as_deref() != Some(condition.as_str()) {
        return Err(Diagnostic::error(
            "dcr_policy: the planned attribute condition is stale",
            "This is a bug in the provider.",
        )
        .into());
    }
    let parent = format!("projects/{number}/locations/global");
    let pool = c
        .iam
        .ensure(&parent, &names::policy_pool_id(name), &want_pool(name))
        .await
        .map_err(|e| gcp_diag("Cannot create the workload identity pool", e))?;
    state.pool = Attr::Known(pool.name.clone());
    let wip = c
        .iam
        .ensure(&pool.name, PROVIDER_ID, &want_provider(planned))
        .await
        .map_err(|e| gcp_diag("Cannot create the workload identity provider", e))?;
    state.workload_identity_provider = Attr::Known(wip.name.clone());
    let member = pool_principal_set(&pool.name);

    // Grants follow the datasets: new ones (or new keys of re-created datasets) granted,
    // dropped ones revoked.
    let located = locate_all(&c, &strings(&planned.datasets)).await?;
    for l in &located {
        set_dataset_access(&c, l, &member, true).await?;
    }
    for (id, key) in &prior.keys() {
        if located.iter().any(|l| l.location.id() == *id && &l.crypto_key == key) {
            continue;
        }
        grant(&c.kms.iam(key), DECRYPTER, &member, false).await?;
        let bucket = parse_id(id).map_err(|e| Diagnostics::from(Diagnostic::error("Invalid dataset id", e)))?.bucket;
        if !located.iter().any(|l| l.location.bucket == bucket) {
            grant(&c.storage.bucket_iam(&bucket), OBJECT_VIEWER, &member, false).await?;
        }
    }
    state.dataset_keys =
        Attr::Known(located.iter().map(|l| (l.location.id(), Attr::Known(l.crypto_key.clone()))).collect());

    let bucket = known(&planned.bucket, "bucket")?;
    ensure_bucket(&c, &private_bucket(bucket, known(&planned.location, "location")?, &BTreeMap::new())).await?;
    grant(&c.storage.bucket_iam(bucket), OBJECT_VIEWER, &member, true).await?;
    let version = planned.policy_version.known().copied().unwrap_or(1) as u64;
    let bytes = document(state, &rules, &located, version).to_bytes();
    let sha = sha256_hex(&bytes);
    if let Some(want) = planned.policy_sha256.as_deref()
        && want != sha
    {
        return Err(Diagnostic::error(
            "The policy changed between plan and apply",
            format!(
                "A dataset's key changed after the plan was made (document sha256 {sha}, plan saw {want}). Run \
                 terraform apply again."
            ),
        )
        .into());
    }
    // Refresh recorded the hash of the document that is there (null when it is not).
    if prior.policy_sha256.as_deref() != Some(sha.as_str()) {
        // Every version stays in the bucket's history, so runs held to it still verify after
        // this change: the one being replaced (written before histories were kept, it may be
        // missing), then the new one, before it becomes the current document.
        if let Some(old) = prior.policy_sha256.as_deref() {
            keep_current_in_history(&c, bucket, old).await?;
        }
        write_history(&c, bucket, &sha, bytes.clone()).await?;
        let meta =
            Object { name: OBJECT.to_string(), content_type: Some("application/json".into()), ..Object::default() };
        c.storage.upload_object(bucket, &meta, std::io::Cursor::new(bytes), None).await.map_err(|e| {
            let at = PolicyLocation::new(bucket).document_uri();
            gcp_diag(&format!("Cannot write the policy document to {at}"), e)
        })?;
    }
    state.policy_version = Attr::Known(version as i64);
    state.policy_sha256 = Attr::Known(sha);
    Ok(())
}

/// Writes `history/SHA.json` unless it is there: a version's bytes never change, so an existing
/// one (`ifGenerationMatch=0` refused) is already right.
async fn write_history(c: &Clients, bucket: &str, sha: &str, bytes: Vec<u8>) -> Result<(), Diagnostics> {
    let name = PolicyLocation::history_object(sha);
    let meta = Object { name: name.clone(), content_type: Some("application/json".into()), ..Object::default() };
    match c.storage.upload_object(bucket, &meta, std::io::Cursor::new(bytes), Some(0)).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_precondition_failed() => Ok(()),
        Err(e) => Err(gcp_diag(&format!("Cannot keep the policy document's version in gs://{bucket}/{name}"), e)),
    }
}

/// Copies the current document into the history when it is the version `sha` (a document
/// changed by hand is not history: its hash is not one any run recorded from dcr's writes).
async fn keep_current_in_history(c: &Clients, bucket: &str, sha: &str) -> Result<(), Diagnostics> {
    if c.storage.get_object(bucket, &PolicyLocation::history_object(sha)).await.ok().flatten().is_some() {
        return Ok(());
    }
    match c.storage.read_object(bucket, OBJECT).await {
        Ok(current) if sha256_hex(&current) == sha => write_history(c, bucket, sha, current).await,
        _ => Ok(()),
    }
}

async fn delete(provider: &ProviderState, prior: &Value) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let prior = super::read(prior)?;
    if let Some(pool) = prior.pool.as_deref() {
        let member = pool_principal_set(pool);
        for (id, key) in prior.keys() {
            if let Ok(location) = parse_id(&id) {
                let l = LocatedDataset { location, crypto_key: key };
                set_dataset_access(&c, &l, &member, false).await?;
            }
        }
    }
    if let Some(b) = prior.bucket.as_deref() {
        empty_and_delete_bucket(&c, b).await?;
    }
    if let Some(p) = prior.workload_identity_provider.as_deref() {
        c.iam
            .delete_if_present::<WorkloadIdentityPoolProvider>(p)
            .await
            .map_err(|e| gcp_diag("Cannot delete the workload identity provider", e))?;
    }
    if let Some(p) = prior.pool.as_deref() {
        c.iam
            .delete_if_present::<WorkloadIdentityPool>(p)
            .await
            .map_err(|e| gcp_diag("Cannot delete the workload identity pool", e))?;
    }
    Ok(())
}
