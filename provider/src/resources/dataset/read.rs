//! Reading a `dcr_dataset` back from the cloud: refresh (drift becomes null, which the next plan
//! turns into work) and import (a state rebuilt from the object's own metadata).

use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{Diagnostic, Diagnostics, Type, Value};

use super::model::{Dataset, known};
use super::schema::schema;
use super::{ENVELOPE_FORMAT, meta};
use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::resources::common::{gcp_diag, object_sha256};
use crate::validate;
use dcr_attestation::names::{self, DatasetLocation};

/// Compares the cloud with the state and records drift: anything missing becomes null, which
/// the next plan turns into work.
pub(super) async fn refresh(provider: &ProviderState, state: Value) -> Result<Value, Diagnostics> {
    let c = provider.clients()?;
    let mut state = super::read(&state)?;
    let bucket = known(&state.bucket, "bucket")?.to_string();
    let object = known(&state.object, "object")?.to_string();
    match c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))? {
        None => {
            state.object_generation = Attr::Null;
            state.ciphertext_sha256 = Attr::Null;
        }
        Some(b) => {
            let labels = b.labels.unwrap_or_default();
            if !(labels.is_empty() && state.labels.is_null()) {
                state.labels = Attr::Known(labels.into_iter().map(|(k, v)| (k, Attr::Known(v))).collect());
            }
            match c.storage.get_object(&bucket, &object).await.map_err(|e| gcp_diag("Cannot read object", e))? {
                None => {
                    state.object_generation = Attr::Null;
                    state.ciphertext_sha256 = Attr::Null;
                }
                Some(o) => {
                    let generation = o.generation.unwrap_or_default();
                    if state.object_generation.as_deref() != Some(generation.as_str()) {
                        // Replaced outside Terraform, or imported: hash what is there.
                        let sha =
                            object_sha256(&c, &bucket, &object).await.map_err(|e| gcp_diag("Cannot read object", e))?;
                        let m = o.metadata.unwrap_or_default();
                        let ours = m.get(meta::SOURCE_SHA).map(String::as_str) == state.source_sha256.as_deref();
                        state.object_generation = Attr::Known(generation);
                        state.ciphertext_sha256 = if ours { Attr::Known(sha) } else { Attr::Null };
                    }
                }
            }
        }
    }
    if let Some(k) = state.crypto_key.as_deref() {
        let usable = c
            .kms
            .get_crypto_key(k)
            .await
            .map_err(|e| gcp_diag("Cannot read crypto key", e))?
            .and_then(|key| key.primary)
            .is_some_and(|p| p.state == "ENABLED");
        if !usable {
            state.crypto_key = Attr::Null;
        }
    }
    if let (Some(s1), Some(name)) = (state.stage1_bucket.as_deref(), state.name.as_deref())
        && !stand_in_present(&c, s1, name).await?
    {
        state.stage1_sha256 = Attr::Null;
    }
    Ok(state.into_value())
}

async fn stand_in_present(c: &Clients, stage1_bucket: &str, name: &str) -> Result<bool, Diagnostics> {
    if c.storage.get_bucket(stage1_bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?.is_none() {
        return Ok(false);
    }
    let o = c
        .storage
        .get_object(stage1_bucket, &names::stage1_object(name))
        .await
        .map_err(|e| gcp_diag("Cannot read object", e))?;
    Ok(o.is_some())
}

/// A state from an import id, the dataset name (its bucket then has the default name) or
/// `BUCKET/NAME`; Terraform reads it next.
pub(super) async fn import(provider: &ProviderState, id: &str) -> Result<Value, Diagnostics> {
    let c = provider.clients()?;
    let place = DatasetLocation::from_id(id)
        .unwrap_or_else(|| DatasetLocation::new(DatasetLocation::default_bucket(&c.project, id), id));
    let (bucket, name) = (&place.bucket, &place.name);
    let cannot = |why: String| Diagnostics::from(Diagnostic::error(format!("Cannot import dcr_dataset {id:?}"), why));
    let bad_id =
        || cannot("The import id is the dataset name (when the bucket has its default name) or BUCKET/NAME.".into());
    validate::dataset_name(name).map_err(|_| bad_id())?;
    let object = place.object();
    let o = c
        .storage
        .get_object(bucket, &object)
        .await
        .map_err(|e| gcp_diag("Cannot read the dataset object", e))?
        .ok_or_else(|| cannot(format!("{} does not exist.", place.object_uri())))?;
    let b = c.storage.get_bucket(bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?.ok_or_else(bad_id)?;
    let m = o.metadata.unwrap_or_default();
    if m.get(meta::FORMAT).map(String::as_str) != Some(ENVELOPE_FORMAT) {
        return Err(cannot(format!("{} was not written by dcr.", place.object_uri())));
    }
    let block = schema().block;
    let block_json = |key: &str, nested: &str| -> Value {
        let t = block.nested(nested).map(|n| n.block.implied_type()).unwrap_or(Type::Dynamic);
        m.get(key)
            .and_then(|s| serde_json::from_str(s).ok())
            .and_then(|j| tfplugin6::value::from_json(&j, &t).ok())
            .unwrap_or(Value::Null)
    };
    let key = m.get(meta::KMS_KEY).cloned().unwrap_or_default();
    let kms_location = key.split('/').nth(3).unwrap_or("global").to_string();
    let labels = b.labels.unwrap_or_default();
    let stage = tfplugin6::model::read(&block_json(meta::STAGE, "programming_stage"), "recorded programming_stage")?;
    let mut state = Dataset {
        id: Attr::Known(place.id()),
        name: Attr::Known(name.clone()),
        bucket: Attr::Known(bucket.clone()),
        location: b.location.map_or(Attr::Null, Attr::Known),
        kms_location: Attr::Known(kms_location),
        labels: if labels.is_empty() {
            Attr::Null
        } else {
            Attr::Known(labels.into_iter().map(|(k, v)| (k, Attr::Known(v))).collect())
        },
        source: m.get(meta::SOURCE_PATH).cloned().map_or(Attr::Null, Attr::Known),
        schema: block_json(meta::SCHEMA, "schema"),
        programming_stage: stage,
        object_uri: Attr::Known(place.object_uri()),
        object: Attr::Known(object),
        key_ring: Attr::Known(key.split("/cryptoKeys/").next().unwrap_or_default().to_string()),
        crypto_key: Attr::Known(key),
        source_sha256: m.get(meta::SOURCE_SHA).cloned().map_or(Attr::Null, Attr::Known),
        source_rows: m.get(meta::SOURCE_ROWS).and_then(|r| r.parse::<i64>().ok()).map_or(Attr::Null, Attr::Known),
        ..Dataset::default()
    };
    state.privacy_ledger_uri = Attr::Known(place.ledger_uri());
    let ledger = super::ledger::read(&c, &place).await?;
    state.privacy_spent = Attr::Known(super::ledger::spent(&ledger.ledger, None));
    if !matches!(state.stage_mode(), Some("none")) {
        state.stage1_bucket = Attr::Known(place.stage1_bucket());
        state.stage1_uri = Attr::Known(place.stage1_uri());
        match object_sha256(&c, &place.stage1_bucket(), &place.stage1_object()).await {
            Ok(sha) => state.stage1_sha256 = Attr::Known(sha),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(gcp_diag("Cannot read the stand-in", e)),
        }
    }
    Ok(state.into_value())
}
