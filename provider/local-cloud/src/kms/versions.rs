//! `cryptoKeys.cryptoKeyVersions`: list, get, destroy (scheduled, as on Google) and restore.

use rusqlite::params;
use serde_json::{Value, json};

use super::{Scope, rows};
use crate::api::{ApiError, ApiResult};
use crate::store::{Store, sql};

pub(super) async fn list(store: &Store, scope: Scope, key: String) -> ApiResult<Value> {
    store
        .call(move |c| {
            scope.require(c, Some(&key), "cloudkms.cryptoKeyVersions.list", &key)?;
            if rows::key(c, &key)?.is_none() {
                return Err(ApiError::not_found(format!("CryptoKey {key} not found.")));
            }
            let names: Vec<String> = {
                let mut st =
                    c.prepare("SELECT name FROM key_versions WHERE crypto_key = ?1 ORDER BY number").map_err(sql)?;
                st.query_map([&key], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect()
            };
            let mut items = Vec::new();
            for n in names {
                items.extend(rows::version(c, &n)?.map(|v| v.json));
            }
            let n = items.len();
            Ok(json!({"cryptoKeyVersions": items, "totalSize": n}))
        })
        .await
}

pub(super) async fn get(store: &Store, scope: Scope, key: String, version: &str) -> ApiResult<Value> {
    let vname = format!("{key}/cryptoKeyVersions/{version}");
    store
        .call(move |c| {
            scope.require(c, Some(&key), "cloudkms.cryptoKeyVersions.get", &vname)?;
            rows::version(c, &vname)?
                .map(|v| v.json)
                .ok_or_else(|| ApiError::not_found(format!("CryptoKeyVersion {vname} not found.")))
        })
        .await
}

/// Schedules the version's destruction after the key's `destroyScheduledDuration`.
pub(super) async fn destroy(store: &Store, scope: Scope, key: String, version: &str) -> ApiResult<Value> {
    transition(store, scope, key, version, "cloudkms.cryptoKeyVersions.destroy", |key, vname, state| {
        if !["ENABLED", "DISABLED"].contains(&state) {
            return Err(ApiError::failed_precondition(format!(
                "{vname} is not in state ENABLED or DISABLED (it is {state})."
            )));
        }
        let secs: i64 = key["destroyScheduledDuration"]
            .as_str()
            .and_then(|d| d.trim_end_matches('s').parse().ok())
            .unwrap_or(2_592_000);
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
        let at = at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        Ok(("DESTROY_SCHEDULED", Some(at)))
    })
    .await
}

/// Takes a version scheduled for destruction back to DISABLED.
pub(super) async fn restore(store: &Store, scope: Scope, key: String, version: &str) -> ApiResult<Value> {
    transition(store, scope, key, version, "cloudkms.cryptoKeyVersions.restore", |_, vname, state| {
        if state != "DESTROY_SCHEDULED" {
            return Err(ApiError::failed_precondition(format!(
                "{vname} is not scheduled for destruction (it is {state})."
            )));
        }
        Ok(("DISABLED", None))
    })
    .await
}

/// Moves a version to the state `next` chooses from the key, the version's name and its current
/// state (with the destroy time it sets, if any), and answers the version as it now is.
async fn transition(
    store: &Store,
    scope: Scope,
    key: String,
    version: &str,
    permission: &'static str,
    next: impl FnOnce(&Value, &str, &str) -> ApiResult<(&'static str, Option<String>)> + Send + 'static,
) -> ApiResult<Value> {
    let vname = format!("{key}/cryptoKeyVersions/{version}");
    store
        .call(move |c| {
            scope.require(c, Some(&key), permission, &vname)?;
            let current = rows::version(c, &vname)?
                .ok_or_else(|| ApiError::not_found(format!("CryptoKeyVersion {vname} not found.")))?;
            let key_json = rows::key(c, &key)?.unwrap_or(json!({}));
            let (state, destroy_time) = next(&key_json, &vname, &current.state)?;
            c.execute(
                "UPDATE key_versions SET state = ?1, destroy_time = ?2 WHERE name = ?3",
                params![state, destroy_time, vname],
            )
            .map_err(sql)?;
            rows::version(c, &vname)?.map(|v| v.json).ok_or_else(|| ApiError::internal("version vanished"))
        })
        .await
}
