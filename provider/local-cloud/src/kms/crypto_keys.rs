//! `keyRings.cryptoKeys`: create (with its first version unless asked not to), list, get, and
//! patch of labels.

use rusqlite::params;
use serde_json::{Value, json};

use super::{DEFAULT_DESTROY_SCHEDULED, Scope, rows, valid_id};
use crate::api::{ApiError, ApiResult, check_fields, now_rfc3339};
use crate::store::{Store, sql};

/// The fields of `CryptoKey` a create request may carry (cloudkms.v1 discovery).
const CRYPTO_KEY_FIELDS: &[&str] = &[
    "purpose",
    "versionTemplate",
    "labels",
    "rotationPeriod",
    "nextRotationTime",
    "destroyScheduledDuration",
    "importOnly",
    "cryptoKeyBackend",
    "keyAccessJustificationsPolicy",
];

/// Refuses what the local cloud cannot serve (anything but symmetric encryption keys) and what
/// Google refuses (a rotation period without its next rotation time).
fn check_create(body: &Value) -> ApiResult<()> {
    check_fields(body, CRYPTO_KEY_FIELDS, "CryptoKey")?;
    let purpose = body["purpose"].as_str().unwrap_or("");
    if purpose != "ENCRYPT_DECRYPT" {
        return Err(ApiError::bad_request(format!(
            "Unsupported purpose {purpose:?}: the local cloud supports ENCRYPT_DECRYPT keys (GOOGLE_SYMMETRIC_ENCRYPTION)."
        )));
    }
    if let Some(a) = body.pointer("/versionTemplate/algorithm").and_then(Value::as_str)
        && a != "GOOGLE_SYMMETRIC_ENCRYPTION"
    {
        return Err(ApiError::bad_request(format!("Algorithm {a} is not valid for purpose ENCRYPT_DECRYPT.")));
    }
    if body.get("rotationPeriod").is_some() && body.get("nextRotationTime").is_none() {
        return Err(ApiError::bad_request("nextRotationTime must be set when rotationPeriod is set."));
    }
    Ok(())
}

pub(super) async fn create(
    store: &Store,
    scope: Scope,
    id: Option<&str>,
    skip_version: bool,
    body: Value,
) -> ApiResult<Value> {
    let id = id.ok_or_else(|| ApiError::bad_request("cryptoKeyId is required."))?;
    if !valid_id(id) {
        return Err(ApiError::bad_request(format!("Invalid crypto key id '{id}': must match [a-zA-Z0-9_-]{{1,63}}.")));
    }
    check_create(&body)?;
    let name = format!("{}/cryptoKeys/{id}", scope.key_ring);
    store
        .call(move |c| {
            let kr = &scope.key_ring;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            scope.require(&tx, None, "cloudkms.cryptoKeys.create", kr)?;
            if !rows::key_ring_exists(&tx, kr)? {
                return Err(ApiError::not_found(format!("KeyRing {kr} not found.")));
            }
            if rows::key(&tx, &name)?.is_some() {
                return Err(ApiError::conflict(format!("CryptoKey {name} already exists.")));
            }
            let now = now_rfc3339();
            let mut res = json!({
                "name": name,
                "purpose": "ENCRYPT_DECRYPT",
                "createTime": now,
                "versionTemplate": {"protectionLevel": "SOFTWARE", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"},
                "destroyScheduledDuration": body["destroyScheduledDuration"].as_str().unwrap_or(DEFAULT_DESTROY_SCHEDULED),
            });
            if let Some(l) = body.get("labels").filter(|l| l.as_object().is_some_and(|m| !m.is_empty())) {
                res["labels"] = l.clone();
            }
            tx.execute(
                "INSERT INTO crypto_keys (name, key_ring, resource, policy, policy_etag) VALUES (?1, ?2, ?3, '{}', 1)",
                params![name, kr, res.to_string()],
            )
            .map_err(sql)?;
            if !skip_version {
                let mut material = [0u8; 32];
                aws_lc_rs::rand::fill(&mut material).map_err(|_| ApiError::internal("no randomness"))?;
                tx.execute(
                    "INSERT INTO key_versions (name, crypto_key, number, material, state, create_time) \
                     VALUES (?1, ?2, 1, ?3, 'ENABLED', ?4)",
                    params![format!("{name}/cryptoKeyVersions/1"), name, material.to_vec(), now],
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
            rows::key(c, &name)?.ok_or_else(|| ApiError::internal("key vanished"))
        })
        .await
}

pub(super) async fn list(store: &Store, scope: Scope) -> ApiResult<Value> {
    store
        .call(move |c| {
            let kr = &scope.key_ring;
            scope.require(c, None, "cloudkms.cryptoKeys.list", kr)?;
            let names: Vec<String> = {
                let mut st =
                    c.prepare("SELECT name FROM crypto_keys WHERE key_ring = ?1 ORDER BY name").map_err(sql)?;
                st.query_map([kr], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect()
            };
            let mut items = Vec::new();
            for n in names {
                items.extend(rows::key(c, &n)?);
            }
            let n = items.len();
            Ok(json!({"cryptoKeys": items, "totalSize": n}))
        })
        .await
}

pub(super) async fn get(store: &Store, scope: Scope, key: String) -> ApiResult<Value> {
    store
        .call(move |c| {
            scope.require(c, Some(&key), "cloudkms.cryptoKeys.get", &key)?;
            rows::key(c, &key)?.ok_or_else(|| ApiError::not_found(format!("CryptoKey {key} not found.")))
        })
        .await
}

/// `PATCH` with `updateMask=labels`: the only field the local cloud updates.
pub(super) async fn patch(
    store: &Store,
    scope: Scope,
    key: String,
    update_mask: Option<&str>,
    body: Value,
) -> ApiResult<Value> {
    let mask = update_mask.ok_or_else(|| ApiError::bad_request("updateMask is required."))?;
    if let Some(m) = mask.split(',').find(|m| *m != "labels") {
        return Err(ApiError::bad_request(format!("The local cloud cannot update '{m}'; supported: labels.")));
    }
    store
        .call(move |c| {
            scope.require(c, Some(&key), "cloudkms.cryptoKeys.update", &key)?;
            let mut res =
                rows::key(c, &key)?.ok_or_else(|| ApiError::not_found(format!("CryptoKey {key} not found.")))?;
            res["labels"] = body.get("labels").cloned().unwrap_or(json!({}));
            if let Some(o) = res.as_object_mut() {
                o.remove("primary");
            }
            c.execute("UPDATE crypto_keys SET resource = ?1 WHERE name = ?2", params![res.to_string(), key])
                .map_err(sql)?;
            rows::key(c, &key)?.ok_or_else(|| ApiError::internal("key vanished"))
        })
        .await
}
