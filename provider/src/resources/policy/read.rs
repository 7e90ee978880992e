//! Reading a `dcr_policy` back from the cloud: refresh (drift becomes null or leaves the key map,
//! which the next plan turns into work) and import (a state rebuilt from the policy document).

use std::collections::BTreeMap;

use dcr_attestation::names::{self, PolicyLocation};
use dcr_attestation::policy::PolicyDocument;
use dcr_gcp::workload_identity::{
    WorkloadIdentityPool, WorkloadIdentityPoolProvider, audience, is_deleted, pool_name, pool_principal_set,
};
use tfplugin6::model::{Attr, IntoValue, SetOf};
use tfplugin6::value::Number;
use tfplugin6::{Diagnostic, Diagnostics, Value};

use super::model::{Policy, PolicyOutput, known, string_set};
use super::rules::{output_rules, sha256_hex};
use super::schema::policy_name;
use super::{OBJECT_VIEWER, PROVIDER_ID, TYPE_NAME, has_dataset_access, holds, read_document};
use crate::provider::ProviderState;
use crate::resources::common::gcp_diag;
use crate::resources::dataset::locate;

/// Records drift: a pool, provider or grant that is gone becomes null (or leaves the map), a
/// condition edited outside Terraform shows as it is; the next plan turns either into work.
pub(super) async fn refresh(provider: &ProviderState, state: Value) -> Result<Value, Diagnostics> {
    let c = provider.clients()?;
    let mut state = super::read(&state)?;
    let name = known(&state.name, "name")?.to_string();
    let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
    let pool = pool_name(&number, &names::policy_pool_id(&name));
    let provider_name = format!("{pool}/providers/{PROVIDER_ID}");
    let live_pool: Option<WorkloadIdentityPool> =
        c.iam.get(&pool).await.map_err(|e| gcp_diag("Cannot read the workload identity pool", e))?;
    let pool_ok = live_pool.as_ref().is_some_and(|p| !is_deleted(p) && !p.disabled);
    state.pool = if pool_ok { Attr::Known(pool.clone()) } else { Attr::Null };
    let live: Option<WorkloadIdentityPoolProvider> =
        c.iam.get(&provider_name).await.map_err(|e| gcp_diag("Cannot read the workload identity provider", e))?;
    match live.filter(|p| pool_ok && !is_deleted(p) && !p.disabled) {
        None => state.workload_identity_provider = Attr::Null,
        Some(p) => {
            state.workload_identity_provider = Attr::Known(provider_name);
            state.attribute_condition = p.attribute_condition.map_or(Attr::Null, Attr::Known);
            state.attribute_mapping =
                Attr::Known(p.attribute_mapping.into_iter().map(|(k, v)| (k, Attr::Known(v))).collect());
            if let Some(oidc) = p.oidc {
                state.issuer = Attr::Known(oidc.issuer_uri);
            }
        }
    }
    let member = pool_principal_set(&pool);
    let mut keys = BTreeMap::new();
    for (id, key) in state.keys() {
        if let Some(l) = locate(&c, &id).await?
            && l.crypto_key == key
            && has_dataset_access(&c, &l, &member).await?
        {
            keys.insert(id, Attr::Known(key));
        }
    }
    state.dataset_keys = Attr::Known(keys);
    if let Some(bucket) = state.bucket.known().cloned() {
        let readable = holds(&c.storage.bucket_iam(&bucket), OBJECT_VIEWER, &member).await?;
        match read_document(&c, &bucket).await? {
            // The document is only as good as the workloads' access to it.
            Some(bytes) if readable => {
                state.policy_sha256 = Attr::Known(sha256_hex(&bytes));
                if let Ok(doc) = PolicyDocument::from_bytes(&bytes) {
                    state.policy_version = Attr::Known(doc.version as i64);
                }
            }
            _ => state.policy_sha256 = Attr::Null,
        }
    }
    Ok(state.into_value())
}

/// A state from an import id, the policy name (its bucket then has the default name) or
/// `BUCKET/NAME`, rebuilt from the policy document; Terraform reads it next.
pub(super) async fn import(provider: &ProviderState, id: &str) -> Result<Value, Diagnostics> {
    let c = provider.clients()?;
    let (bucket, name) = match id.split_once('/') {
        Some((b, n)) => (b.to_string(), n.to_string()),
        None => (PolicyLocation::default_bucket(&c.project, id), id.to_string()),
    };
    let cannot = |why: String| Diagnostics::from(Diagnostic::error(format!("Cannot import {TYPE_NAME} {id:?}"), why));
    policy_name(&name).map_err(|e| cannot(format!("{e}. The import id is the policy name, or BUCKET/NAME.")))?;
    let document = PolicyLocation::new(&bucket).document_uri();
    let bytes = read_document(&c, &bucket).await?.ok_or_else(|| cannot(format!("{document} does not exist.")))?;
    let doc = PolicyDocument::from_bytes(&bytes).map_err(|e| cannot(format!("{document}: {e}")))?;
    if doc.name != name {
        return Err(cannot(format!("{document} is the document of policy {:?}.", doc.name)));
    }
    let b = c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?;
    let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
    let pool = pool_name(&number, &names::policy_pool_id(&name));
    let provider = format!("{pool}/providers/{PROVIDER_ID}");
    let hw = doc.rules.require_confidential_hardware;
    // A config without an output block means the defaults; import cannot tell the two apart
    // and picks the shorter config.
    let output = if doc.output == output_rules(&Policy::default()) {
        Attr::Null
    } else {
        Attr::Known(PolicyOutput {
            max_bytes: Attr::Known(Number::Int(doc.output.max_bytes as i64)),
            allowed_extensions: string_set(&doc.output.allowed_extensions),
            readers: if doc.output.readers.is_empty() { Attr::Null } else { string_set(&doc.output.readers) },
        })
    };
    let state = Policy {
        id: Attr::Known(name.clone()),
        name: Attr::Known(name),
        datasets: Attr::Known(SetOf(doc.datasets.iter().map(|d| Attr::Known(d.id.clone())).collect())),
        allowed_image_digests: string_set(&doc.rules.allowed_image_digests),
        require_confidential_hardware: Attr::Known(hw),
        allowed_hardware: if hw { string_set(&doc.rules.allowed_hardware) } else { Attr::Null },
        allow_debug: Attr::Known(doc.rules.allow_debug),
        require_stable_image: Attr::Known(doc.rules.require_stable_image),
        issuer: Attr::Known(doc.issuer.clone()),
        bucket: Attr::Known(bucket),
        location: b.and_then(|b| b.location).map_or(Attr::Null, Attr::Known),
        output,
        attribute_condition: Attr::Known(doc.attribute_condition.clone()),
        dataset_keys: Attr::Known(
            doc.datasets.iter().map(|d| (d.id.clone(), Attr::Known(d.crypto_key.clone()))).collect(),
        ),
        policy_uri: Attr::Known(document),
        policy_version: Attr::Known(doc.version as i64),
        project_number: Attr::Known(number),
        audience: Attr::Known(audience(&provider)),
        principal_set: Attr::Known(pool_principal_set(&pool)),
        pool: Attr::Known(pool),
        workload_identity_provider: Attr::Known(provider),
        ..Policy::default()
    };
    Ok(state.into_value())
}
