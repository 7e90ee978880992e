//! IAM policies of resources in AIP-style APIs (Cloud KMS key rings and keys, Artifact Registry
//! repositories): `getIamPolicy` and `setIamPolicy` over a table whose rows carry `policy` (JSON)
//! and `policy_etag` (a revision counter). Permission checks stay with each service.

use rusqlite::{Connection, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields};
use crate::store::sql;

/// The stored policy of row `name`, with its etag and a version.
pub fn read(c: &Connection, table: &str, name: &str) -> ApiResult<Value> {
    let (policy, etag): (String, i64) = c
        .query_row(&format!("SELECT policy, policy_etag FROM {table} WHERE name = ?1"), [name], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(sql)?;
    let mut p: Value = serde_json::from_str(&policy).unwrap_or(json!({}));
    p["etag"] = json!(crate::iam::etag(etag));
    if p.get("version").is_none() {
        p["version"] = json!(1);
    }
    Ok(p)
}

/// Checks a `SetIamPolicyRequest` body (`fields` are the request's own: KMS's has `updateMask`,
/// Artifact Registry's only `policy`) and returns its policy.
pub fn requested_policy(body: &Value, fields: &[&str]) -> ApiResult<Value> {
    check_fields(body, fields, "SetIamPolicyRequest")?;
    let policy = body.get("policy").cloned().ok_or_else(|| ApiError::bad_request("policy is required."))?;
    check_fields(&policy, &["version", "bindings", "etag", "auditConfigs"], "Policy")?;
    crate::iam::validate_policy(&policy)?;
    Ok(policy)
}

/// Stores `policy` on row `name` unless its etag is stale (then `stale`, which each API words its
/// own way), and returns the policy as stored, with its new etag.
pub fn write(c: &Connection, table: &str, name: &str, policy: &Value, stale: ApiError) -> ApiResult<Value> {
    let current: i64 =
        c.query_row(&format!("SELECT policy_etag FROM {table} WHERE name = ?1"), [name], |r| r.get(0)).map_err(sql)?;
    if let Some(e) = policy.get("etag").and_then(Value::as_str)
        && e != crate::iam::etag(current)
    {
        return Err(stale);
    }
    let bindings = crate::iam::stored_bindings(policy);
    let mut stored = json!({"version": policy["version"].as_i64().unwrap_or(1)});
    if !bindings.is_empty() {
        stored["bindings"] = Value::Array(bindings);
    }
    let next = current + 1;
    c.execute(
        &format!("UPDATE {table} SET policy = ?1, policy_etag = ?2 WHERE name = ?3"),
        params![stored.to_string(), next, name],
    )
    .map_err(sql)?;
    stored["etag"] = json!(crate::iam::etag(next));
    Ok(stored)
}
