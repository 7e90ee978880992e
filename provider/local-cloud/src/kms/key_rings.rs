//! `projects.locations.keyRings`: create, list, get.

use rusqlite::params;
use serde_json::{Value, json};

use super::{Scope, rows, valid_id};
use crate::api::{ApiError, ApiResult, check_fields, now_rfc3339};
use crate::store::{Store, sql};

pub(super) async fn create(
    store: &Store,
    scope: Scope,
    parent: &str,
    id: Option<&str>,
    body: Value,
) -> ApiResult<Value> {
    check_fields(&body, &[], "KeyRing")?;
    let id = id.ok_or_else(|| ApiError::bad_request("keyRingId is required."))?;
    if !valid_id(id) {
        return Err(ApiError::bad_request(format!("Invalid key ring id '{id}': must match [a-zA-Z0-9_-]{{1,63}}.")));
    }
    let (parent, name) = (parent.to_string(), format!("{parent}/keyRings/{id}"));
    store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            scope.require(&tx, None, "cloudkms.keyRings.create", &parent)?;
            if rows::key_ring_exists(&tx, &name)? {
                return Err(ApiError::conflict(format!("KeyRing {name} already exists.")));
            }
            let res = json!({"name": name, "createTime": now_rfc3339()});
            tx.execute(
                "INSERT INTO key_rings (name, project, resource, policy, policy_etag) VALUES (?1, ?2, ?3, '{}', 1)",
                params![name, scope.project, res.to_string()],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(res)
        })
        .await
}

pub(super) async fn list(store: &Store, scope: Scope, parent: String) -> ApiResult<Value> {
    store
        .call(move |c| {
            scope.require(c, None, "cloudkms.keyRings.list", &parent)?;
            let mut st = c
                .prepare("SELECT resource FROM key_rings WHERE name LIKE ?1 || '/keyRings/%' ORDER BY name")
                .map_err(sql)?;
            let items: Vec<Value> = st
                .query_map([&parent], |r| r.get::<_, String>(0))
                .map_err(sql)?
                .filter_map(Result::ok)
                .filter_map(|s| serde_json::from_str(&s).ok())
                .collect();
            let n = items.len();
            Ok(json!({"keyRings": items, "totalSize": n}))
        })
        .await
}

pub(super) async fn get(store: &Store, scope: Scope) -> ApiResult<Value> {
    store
        .call(move |c| {
            let name = &scope.key_ring;
            scope.require(c, None, "cloudkms.keyRings.get", name)?;
            rows::key_ring(c, name)?.ok_or_else(|| ApiError::not_found(format!("KeyRing {name} not found.")))
        })
        .await
}
