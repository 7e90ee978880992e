//! Reading KMS resources back from the store as Google renders them.

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};

use crate::api::ApiResult;
use crate::store::sql;

/// A stored version: its JSON, its key material, its state.
pub(super) struct StoredVersion {
    pub json: Value,
    pub material: Vec<u8>,
    pub state: String,
}

fn version_json(name: &str, state: &str, create_time: &str, destroy_time: Option<&str>) -> Value {
    let mut v = json!({
        "name": name,
        "state": state,
        "createTime": create_time,
        "generateTime": create_time,
        "protectionLevel": "SOFTWARE",
        "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
    });
    if let Some(d) = destroy_time {
        v["destroyTime"] = json!(d);
    }
    v
}

pub(super) fn version(c: &Connection, name: &str) -> ApiResult<Option<StoredVersion>> {
    let row: Option<(String, Vec<u8>, String, Option<String>)> = c
        .query_row("SELECT state, material, create_time, destroy_time FROM key_versions WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(sql)?;
    Ok(row.map(|(state, material, ct, dt)| StoredVersion {
        json: version_json(name, &state, &ct, dt.as_deref()),
        material,
        state,
    }))
}

/// A crypto key with its primary version (version 1, the only one the local cloud creates).
pub(super) fn key(c: &Connection, name: &str) -> ApiResult<Option<Value>> {
    let res: Option<String> = c
        .query_row("SELECT resource FROM crypto_keys WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    let Some(res) = res else { return Ok(None) };
    let mut v: Value = serde_json::from_str(&res).unwrap_or(json!({}));
    if let Some(primary) = version(c, &format!("{name}/cryptoKeyVersions/1"))? {
        v["primary"] = primary.json;
    }
    Ok(Some(v))
}

pub(super) fn key_ring(c: &Connection, name: &str) -> ApiResult<Option<Value>> {
    let res: Option<String> =
        c.query_row("SELECT resource FROM key_rings WHERE name = ?1", [name], |r| r.get(0)).optional().map_err(sql)?;
    Ok(res.and_then(|s| serde_json::from_str(&s).ok()))
}

pub(super) fn key_ring_exists(c: &Connection, name: &str) -> ApiResult<bool> {
    Ok(c.query_row("SELECT COUNT(*) FROM key_rings WHERE name = ?1", [name], |r| r.get::<_, i64>(0)).map_err(sql)? > 0)
}
