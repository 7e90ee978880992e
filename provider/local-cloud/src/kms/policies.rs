//! `getIamPolicy` and `setIamPolicy` on key rings and crypto keys.

use serde_json::Value;

use super::{Scope, rows};
use crate::api::{ApiError, ApiResult};
use crate::store::{Store, sql};

/// The policy's table and row, the permission prefix, and whether the row exists.
fn target(c: &rusqlite::Connection, scope: &Scope, key: Option<&str>) -> ApiResult<(&'static str, String, bool)> {
    Ok(match key {
        Some(k) => ("crypto_keys", k.to_string(), rows::key(c, k)?.is_some()),
        None => ("key_rings", scope.key_ring.clone(), rows::key_ring_exists(c, &scope.key_ring)?),
    })
}

fn permission(key: Option<&str>, verb: &str) -> String {
    let collection = if key.is_some() { "cryptoKeys" } else { "keyRings" };
    format!("cloudkms.{collection}.{verb}")
}

pub(super) async fn get(store: &Store, scope: Scope, key: Option<String>) -> ApiResult<Value> {
    store
        .call(move |c| {
            let key = key.as_deref();
            let (table, name, exists) = target(c, &scope, key)?;
            scope.require(c, key, &permission(key, "getIamPolicy"), &name)?;
            if !exists {
                return Err(ApiError::not_found(format!("{name} not found.")));
            }
            crate::aip_iam::read(c, table, &name)
        })
        .await
}

pub(super) async fn set(store: &Store, scope: Scope, key: Option<String>, body: Value) -> ApiResult<Value> {
    store
        .call(move |c| {
            let key = key.as_deref();
            let (table, name, exists) = target(c, &scope, key)?;
            let policy = crate::aip_iam::requested_policy(&body, &["policy", "updateMask"])?;
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            scope.require(&tx, key, &permission(key, "setIamPolicy"), &name)?;
            if !exists {
                return Err(ApiError::not_found(format!("{name} not found.")));
            }
            // KMS reports a stale etag as ABORTED (409): the caller should re-read and retry.
            let stale = ApiError::new(
                409,
                "aborted",
                "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
            );
            let stored = crate::aip_iam::write(&tx, table, &name, &policy, stale)?;
            tx.commit().map_err(sql)?;
            Ok(stored)
        })
        .await
}
