//! Applying a `dcr_dataset`: "converge" — every step checks what exists and does only what is
//! missing, so an apply that failed halfway is finished by the next one — and destroy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dcr_attestation::names::{self, DatasetLocation};
use dcr_gcp::kms::CryptoKey;
use dcr_gcp::storage::Object;
use tfplugin6::model::{Attr, IntoValue};
use tfplugin6::{ApplyRequest, ApplyResponse, AttributePath, Diagnostic, Diagnostics, Value};

use super::model::{Dataset, known};
use super::{DEFAULT_TIMEOUT, ENVELOPE_FORMAT, TYPE_NAME, meta};
use crate::clients::Clients;
use dcr_dataset::HashingReader;
use dcr_dataset::standin::random_csv;

use super::columns::dataset_schema;
use crate::provider::ProviderState;
use crate::resources::common::{
    apply_converging, blocking, converge_typed, empty_and_delete_bucket, ensure_bucket, gcp_diag, private_bucket,
};

const OBJECT_VIEWER: &str = "roles/storage.objectViewer";

pub(super) async fn apply(state: &ProviderState, req: ApplyRequest) -> ApplyResponse {
    let delete = delete(state, &req.prior_state);
    let converge = converge(state, &req.prior_state, &req.planned_state);
    let (new, diagnostics) = apply_converging(TYPE_NAME, &req, DEFAULT_TIMEOUT, delete, converge).await;
    // A create that failed before anything was written leaves nothing to track.
    let no_key = super::read(&new).is_ok_and(|d| d.crypto_key.is_null());
    let nothing_created = req.prior_state.is_null() && diagnostics.has_errors() && no_key;
    let new_state = if nothing_created && !bucket_exists(state, &new).await { Value::Null } else { new };
    ApplyResponse { new_state, private: Vec::new(), diagnostics }
}

async fn bucket_exists(state: &ProviderState, v: &Value) -> bool {
    let (Ok(c), Ok(d)) = (state.clients(), super::read(v)) else { return false };
    let Some(b) = d.bucket.as_deref() else { return false };
    matches!(c.storage.get_bucket(b).await, Ok(Some(_)))
}

/// Brings the cloud to `planned`, filling computed values into the returned state as each step
/// completes; on error the state says what exists so far.
async fn converge(provider: &ProviderState, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
    let steps = async |prior: &Dataset, planned: &Dataset, state: &mut Dataset| {
        converge_steps(provider, prior, planned, state).await
    };
    converge_typed(prior, planned, super::read, |_, planned| planned.clone(), steps).await
}

async fn converge_steps(
    provider: &ProviderState,
    prior: &Dataset,
    planned: &Dataset,
    state: &mut Dataset,
) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let place = DatasetLocation::new(known(&planned.bucket, "bucket")?, known(&planned.name, "name")?);
    state.id = Attr::Known(place.id());
    let labels = planned.known_labels();
    ensure_bucket(&c, &private_bucket(&place.bucket, known(&planned.location, "location")?, &labels)).await?;
    let key = ensure_key(&c, known(&planned.key_ring, "key_ring")?, planned.crypto_key.as_deref(), &labels).await?;
    let new_key = planned.crypto_key.as_deref() != Some(key.as_str());
    state.crypto_key = Attr::Known(key.clone());
    if state.ciphertext_sha256.is_unknown() || new_key {
        let what = format!("the upload of {}", known(&planned.source, "source")?);
        let up = provider.stop.unless_stopped(&what, upload_encrypted(&c, state, &key)).await??;
        state.object_generation = Attr::Known(up.generation);
        state.ciphertext_sha256 = Attr::Known(up.ciphertext_sha256);
    }
    match planned.stage_mode() {
        Some("none") => {
            if let Some(old) = prior.stage1_bucket.as_deref() {
                empty_and_delete_bucket(&c, old).await?;
            }
        }
        _ => {
            let needs_upload = state.stage1_sha256.is_unknown() || prior.stage1_sha256 != planned.stage1_sha256;
            if let Some(sha) = publish_stage1(&c, state, needs_upload).await? {
                state.stage1_sha256 = Attr::Known(sha);
            }
        }
    }
    if state.privacy_spent.is_unknown() {
        let stored = super::ledger::read(&c, &place).await?;
        state.privacy_spent = Attr::Known(super::ledger::spent(&stored.ledger, super::ledger::budget(planned)));
    }
    Ok(())
}

async fn delete(provider: &ProviderState, prior: &Value) -> Result<(), Diagnostics> {
    let c = provider.clients()?;
    let prior = super::read(prior)?;
    if let Some(s1) = prior.stage1_bucket.as_deref() {
        empty_and_delete_bucket(&c, s1).await?;
    }
    if let Some(b) = prior.bucket.as_deref() {
        super::ledger::empty_keeping_ledger(&c, b, prior.name.as_deref()).await?;
    }
    if let Some(k) = prior.crypto_key.as_deref() {
        destroy_key_versions(&c, k).await?;
    }
    Ok(())
}

/// The key ring (created when missing) and a usable crypto key: the one in state if its primary
/// version is still enabled, else a new one with a fresh suffix (KMS never frees key names).
async fn ensure_key(
    c: &Clients,
    key_ring: &str,
    current: Option<&str>,
    labels: &BTreeMap<String, String>,
) -> Result<String, Diagnostics> {
    if c.kms.get_key_ring(key_ring).await.map_err(|e| gcp_diag("Cannot read key ring", e))?.is_none() {
        let (parent, id) = key_ring.rsplit_once("/keyRings/").unwrap_or((key_ring, ""));
        match c.kms.create_key_ring(parent, id).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(gcp_diag(&format!("Cannot create key ring {key_ring}"), e)),
        }
    }
    if let Some(name) = current
        && let Some(key) = c.kms.get_crypto_key(name).await.map_err(|e| gcp_diag("Cannot read crypto key", e))?
        && key.primary.as_ref().is_some_and(|p| p.state == "ENABLED")
    {
        return Ok(name.to_string());
    }
    let mut suffix = [0u8; 3];
    aws_lc_rs::rand::fill(&mut suffix).map_err(|_| Diagnostics::from(Diagnostic::error("no randomness", "")))?;
    let id = format!("data-{}", hex::encode(suffix));
    let key =
        CryptoKey { purpose: Some("ENCRYPT_DECRYPT".into()), labels: Some(labels.clone()), ..CryptoKey::default() };
    let created = c
        .kms
        .create_crypto_key(key_ring, &id, &key)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot create crypto key {key_ring}/cryptoKeys/{id}"), e))?;
    Ok(created.name)
}

/// Where a [`hashed_upload`] leaves the SHA-256 of what it streamed, once it reached the end.
type HashSlot = Arc<Mutex<Option<String>>>;

/// Wraps an upload's body so that the hex SHA-256 of every byte sent lands in the returned slot.
fn hashed_upload<R: std::io::Read>(body: R) -> (HashingReader<R>, HashSlot) {
    let sha = HashSlot::default();
    let slot = sha.clone();
    let reader = HashingReader::on_eof(
        body,
        Box::new(move |hex, _| {
            *slot.lock().expect("hash slot") = Some(hex.to_string());
            Ok(())
        }),
    );
    (reader, sha)
}

struct Uploaded {
    generation: String,
    ciphertext_sha256: String,
}

/// Encrypts the source with a fresh data key and streams it up. The source must still hash to
/// what plan saw: a file edited between plan and apply aborts the upload before it completes.
async fn upload_encrypted(c: &Clients, state: &Dataset, crypto_key: &str) -> Result<Uploaded, Diagnostics> {
    let bucket = known(&state.bucket, "bucket")?;
    let object = known(&state.object, "object")?;
    let source = known(&state.source, "source")?;
    let expected_sha = known(&state.source_sha256, "source_sha256")?.to_string();

    let data_key = dcr_envelope::generate_data_key();
    let wrapped = c
        .kms
        .encrypt(crypto_key, &data_key, Some(&dcr_envelope::wrap_aad(bucket, object)))
        .await
        .map_err(|e| gcp_diag("Cannot wrap the data key with KMS", e))?;
    let header = dcr_envelope::Header::new(crypto_key, &wrapped.ciphertext, dcr_envelope::DEFAULT_CHUNK_SIZE);

    let verified = source_as_planned(source, &expected_sha)?;
    let encrypting = dcr_envelope::EncryptingReader::new(verified, &data_key, &header)
        .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot start encryption", e.to_string())))?;
    let (hashed, cipher_sha) = hashed_upload(encrypting);

    let stage = state.programming_stage.clone().into_value();
    let mut metadata = BTreeMap::from([
        (meta::FORMAT.to_string(), ENVELOPE_FORMAT.to_string()),
        (meta::KMS_KEY.to_string(), crypto_key.to_string()),
        (meta::SOURCE_SHA.to_string(), expected_sha),
        (meta::SOURCE_PATH.to_string(), source.to_string()),
        (meta::SCHEMA.to_string(), tfplugin6::value::to_json(&state.schema).to_string()),
        (meta::STAGE.to_string(), tfplugin6::value::to_json(&stage).to_string()),
    ]);
    if let Some(rows) = state.source_rows.known() {
        metadata.insert(meta::SOURCE_ROWS.to_string(), rows.to_string());
    }
    let meta = Object {
        name: object.to_string(),
        content_type: Some("application/octet-stream".into()),
        metadata: Some(metadata),
        ..Object::default()
    };
    let uploaded = c
        .storage
        .upload_object(bucket, &meta, hashed, None)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot upload gs://{bucket}/{object}"), e))?;
    let ciphertext_sha256 = cipher_sha.lock().expect("hash slot").clone().unwrap_or_default();
    Ok(Uploaded { generation: uploaded.generation.unwrap_or_default(), ciphertext_sha256 })
}

/// The source file, read through a check that it still hashes to what plan saw: a file edited
/// between plan and apply fails the read at its end, before what was read is used.
pub(super) fn source_as_planned(
    source: &str,
    plan_sha: &str,
) -> Result<HashingReader<std::io::BufReader<std::fs::File>>, Diagnostics> {
    let file = crate::files::open_regular(&AttributePath::root("source"), source)?;
    let (src_path, plan_sha) = (source.to_string(), plan_sha.to_string());
    Ok(HashingReader::on_eof(
        std::io::BufReader::with_capacity(1 << 20, file),
        Box::new(move |sha, _| {
            if sha == plan_sha {
                Ok(())
            } else {
                Err(std::io::Error::other(format!(
                    "{src_path:?} changed after the plan was made (sha256 {sha}, plan saw {plan_sha}); run terraform plan again"
                )))
            }
        }),
    ))
}

/// Publishes the stage-1 stand-in and grants its readers; returns the stand-in's SHA-256.
async fn publish_stage1(c: &Clients, state: &Dataset, upload: bool) -> Result<Option<String>, Diagnostics> {
    let s1 = known(&state.stage1_bucket, "stage1_bucket")?;
    let name = known(&state.name, "name")?;
    ensure_bucket(c, &private_bucket(s1, known(&state.location, "location")?, &state.known_labels())).await?;
    let stage = state.stage().cloned().unwrap_or_default();
    let readers: Vec<String> =
        stage.readers.known().into_iter().flat_map(|s| &s.0).filter_map(|r| r.known().cloned()).collect();
    dcr_gcp::iam::read_modify_write(&c.storage.bucket_iam(s1), |p| p.set_role_members(OBJECT_VIEWER, &readers))
        .await
        .map_err(|e| gcp_diag(&format!("Cannot grant readers on bucket {s1:?}"), e))?;
    if !upload {
        return Ok(None);
    }
    // Every stand-in streams up, hashed as it goes: a public sample or a DP-synthetic one may be
    // large (the latter waits in an unnamed temporary file, readable by this process alone).
    let body: Box<dyn std::io::Read + Send> = match stage.mode.as_deref() {
        Some("sample") => {
            let path = known(&stage.public_source, "programming_stage.public_source")?;
            let at = AttributePath::root("programming_stage").attr("public_source");
            Box::new(std::io::BufReader::with_capacity(1 << 20, crate::files::open_regular(&at, path)?))
        }
        Some("dp_synthetic") => Box::new(super::dp::generate_and_record(c, state, &stage).await?),
        _ => {
            let schema = dataset_schema(&state.schema)?
                .ok_or_else(|| Diagnostics::from(Diagnostic::error("schema unknown at apply", "")))?;
            let rows = stage.rows.known().and_then(|r| r.as_i64()).unwrap_or(1000) as u64;
            let buf = blocking("The stand-in's generation", move || {
                let mut buf = Vec::new();
                random_csv(&schema, rows, &mut rand::rng(), &mut buf)
                    .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot generate the stand-in", e.to_string())))?;
                Ok(buf)
            })
            .await?;
            Box::new(std::io::Cursor::new(buf))
        }
    };
    let (hashed, sha) = hashed_upload(body);
    let meta = Object { name: names::stage1_object(name), content_type: Some("text/csv".into()), ..Object::default() };
    c.storage
        .upload_object(s1, &meta, hashed, None)
        .await
        .map_err(|e| gcp_diag(&format!("Cannot upload the stand-in to {s1:?}"), e))?;
    let sha = sha.lock().expect("hash slot").clone();
    Ok(sha)
}

async fn destroy_key_versions(c: &Clients, key: &str) -> Result<(), Diagnostics> {
    let versions = match c.kms.list_versions(key).await {
        Ok(v) => v,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(gcp_diag("Cannot list key versions", e)),
    };
    for v in versions.iter().filter(|v| v.state == "ENABLED" || v.state == "DISABLED") {
        c.kms.destroy_version(&v.name).await.map_err(|e| gcp_diag("Cannot schedule key version destruction", e))?;
    }
    Ok(())
}
