//! Cloud Storage JSON API subset: buckets, bucket IAM, objects (media and resumable uploads,
//! streaming downloads), with Google's naming rules, preconditions and error codes.

use std::io::Write;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields, json_response, now_rfc3339};
use crate::server::{App, Req, segments};
use crate::store::sql;

/// Non-final resumable chunks must be multiples of this.
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;

// ---------------------------------------------------------------------------------------------
// pure rules

/// Bucket names as Cloud Storage accepts them (dotted names are refused: they need domain
/// verification, which the local cloud cannot do).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    if !(3..=63).contains(&name.len()) {
        return Err(format!("Invalid bucket name: '{name}'. Bucket names must be 3 to 63 characters."));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err(format!("Invalid bucket name: '{name}'"));
    }
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!("Invalid bucket name: '{name}'"));
    }
    if name.starts_with("goog") || name.contains("google") || name.contains("g00gle") {
        return Err(format!("Invalid bucket name: '{name}'. Bucket names cannot contain \"google\"."));
    }
    Ok(())
}

pub fn validate_object_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 1024 || name.contains(['\r', '\n']) || name == "." || name == ".." {
        return Err(format!("Invalid object name: {name:?}"));
    }
    Ok(())
}

/// A `Content-Range` of a resumable upload request.
#[derive(Debug, PartialEq, Eq)]
pub struct ContentRange {
    /// First and last byte of this chunk, or None for a status query / empty final chunk.
    pub range: Option<(u64, u64)>,
    pub total: Option<u64>,
}

pub fn parse_content_range(v: &str) -> Option<ContentRange> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = if total == "*" { None } else { Some(total.parse().ok()?) };
    let range = if range == "*" {
        None
    } else {
        let (a, b) = range.split_once('-')?;
        let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
        if b < a {
            return None;
        }
        Some((a, b))
    };
    Some(ContentRange { range, total })
}

/// Fields a Bucket resource may carry in a request (storage.v1 `Bucket`); anything else is refused
/// so a client's typo fails loudly here instead of being silently ignored by Google.
const BUCKET_FIELDS: &[&str] = &[
    "name",
    "location",
    "storageClass",
    "labels",
    "iamConfiguration",
    "versioning",
    "lifecycle",
    "retentionPolicy",
    "softDeletePolicy",
    "encryption",
    "cors",
    "logging",
    "website",
    "billing",
    "defaultEventBasedHold",
    "rpo",
    "autoclass",
    "hierarchicalNamespace",
    "customPlacementConfig",
    "locationType",
    "kind",
    "id",
    "etag",
    "metageneration",
    "projectNumber",
    "selfLink",
    "timeCreated",
    "updated",
    "acl",
    "defaultObjectAcl",
    "owner",
];

/// CRC32C (Castagnoli), the checksum Cloud Storage reports, computed incrementally.
pub struct Crc32c(u32);

impl Crc32c {
    pub fn new() -> Crc32c {
        Crc32c(0)
    }
    pub fn update(&mut self, data: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, data);
    }
    /// Base64 of the big-endian checksum, as the JSON API writes it.
    pub fn finish_b64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.0.to_be_bytes())
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------------
// permissions

fn load_policy(c: &rusqlite::Connection, sql_text: &str, key: &str) -> ApiResult<Option<Value>> {
    let p: Option<String> = c.query_row(sql_text, [key], |r| r.get(0)).optional().map_err(sql)?;
    Ok(p.and_then(|p| serde_json::from_str(&p).ok()))
}

pub fn project_policy(c: &rusqlite::Connection, project: &str) -> ApiResult<Option<Value>> {
    load_policy(c, "SELECT policy FROM projects WHERE id = ?1", project)
}

/// Whether `principal` holds `permission` through the project's or the bucket's policy, on the
/// bucket or (`object`) on one object of it: conditional bindings of the bucket's policy grant
/// where their condition holds on that resource (an object prefix condition grants objects under
/// it, not listing the bucket, as on Google).
fn bucket_allows(
    c: &rusqlite::Connection,
    principal: &crate::iam::Identity,
    bucket: &str,
    object: Option<&str>,
    permission: &str,
) -> ApiResult<bool> {
    let row: Option<(String, String)> = c
        .query_row("SELECT project, policy FROM buckets WHERE name = ?1", [bucket], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(sql)?;
    let Some((project, policy)) = row else { return Ok(false) };
    let policy: Value = serde_json::from_str(&policy).unwrap_or(Value::Null);
    let proj = project_policy(c, &project)?.unwrap_or(Value::Null);
    let on = crate::iam::ConditionResource::storage(bucket, object);
    Ok(crate::iam::allows(&proj, principal, permission)
        || crate::iam::allows_on(&policy, principal, permission, Some(&on)))
}

fn denied_bucket(principal: &crate::iam::Identity, permission: &str, bucket: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{principal} does not have {permission} access to the Google Cloud Storage bucket. Permission '{permission}' denied on resource (or it may not exist). (bucket {bucket})"
    ))
}

fn denied_object(principal: &crate::iam::Identity, permission: &str, bucket: &str, object: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{principal} does not have {permission} access to the Google Cloud Storage object. Permission '{permission}' denied on resource (or it may not exist). (gs://{bucket}/{object})"
    ))
}

/// A bucket must exist, and the caller must hold `permission` on it; a caller without
/// `storage.buckets.get` learns nothing about whether it exists (403, as Google answers).
fn require_bucket(
    c: &rusqlite::Connection,
    principal: &crate::iam::Identity,
    bucket: &str,
    permission: &str,
) -> ApiResult<Value> {
    let res: Option<String> =
        c.query_row("SELECT resource FROM buckets WHERE name = ?1", [bucket], |r| r.get(0)).optional().map_err(sql)?;
    match res {
        Some(r) => {
            if !bucket_allows(c, principal, bucket, None, permission)? {
                return Err(denied_bucket(principal, permission, bucket));
            }
            Ok(serde_json::from_str(&r).unwrap_or(Value::Null))
        }
        None => Err(ApiError::not_found("The specified bucket does not exist.")),
    }
}

fn require_object_permission(
    c: &rusqlite::Connection,
    principal: &crate::iam::Identity,
    bucket: &str,
    object: &str,
    permission: &str,
) -> ApiResult<()> {
    let exists: bool =
        c.query_row("SELECT COUNT(*) FROM buckets WHERE name = ?1", [bucket], |r| r.get::<_, i64>(0)).map_err(sql)? > 0;
    if !exists {
        return Err(ApiError::not_found("The specified bucket does not exist."));
    }
    let on = (!object.is_empty()).then_some(object);
    if !bucket_allows(c, principal, bucket, on, permission)? {
        return Err(denied_object(principal, permission, bucket, object));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON API (non-media)

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let seg = segments(&r.raw_path);
    let seg: Vec<&str> = seg.iter().skip(2).map(String::as_str).collect(); // after storage/v1
    let principal = r.principal.clone();
    let method = r.method.as_str().to_string();
    match (method.as_str(), seg.as_slice()) {
        ("POST", ["b"]) => insert_bucket(app, r, body).await,
        ("GET", ["b"]) => list_buckets(app, r).await,
        ("GET", ["b", bucket]) => {
            let bucket = bucket.to_string();
            let v = app.store.call(move |c| require_bucket(c, &principal, &bucket, "storage.buckets.get")).await?;
            Ok(json_response(v))
        }
        ("PATCH", ["b", bucket]) => patch_bucket(app, r, bucket, body.unwrap_or(json!({}))).await,
        ("DELETE", ["b", bucket]) => delete_bucket(app, r, bucket).await,
        ("GET", ["b", bucket, "iam"]) => {
            let bucket = bucket.to_string();
            let requested = r.query_i64("optionsRequestedPolicyVersion")?.unwrap_or(1);
            let v = app
                .store
                .call(move |c| {
                    require_bucket(c, &principal, &bucket, "storage.buckets.getIamPolicy")?;
                    let (policy, etag): (String, i64) = c
                        .query_row("SELECT policy, policy_etag FROM buckets WHERE name = ?1", [&bucket], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .map_err(sql)?;
                    // storage.v1 `optionsRequestedPolicyVersion`: "If the optionsRequestedPolicyVersion is
                    // for an older version that doesn't support part of the requested IAM policy, the
                    // request fails."
                    let parsed: Value = serde_json::from_str(&policy).unwrap_or(Value::Null);
                    if requested < 3 && crate::iam::has_conditions(&parsed) {
                        return Err(ApiError::bad_request(format!(
                            "The policy of bucket {bucket} has conditional role bindings: request it with \
                             optionsRequestedPolicyVersion=3."
                        )));
                    }
                    Ok(render_policy(&bucket, &policy, etag))
                })
                .await?;
            Ok(json_response(v))
        }
        ("PUT", ["b", bucket, "iam"]) => set_bucket_policy(app, r, bucket, body.unwrap_or(json!({}))).await,
        ("GET", ["b", bucket, "iam", "testPermissions"]) => {
            let bucket = bucket.to_string();
            let asked: Vec<String> =
                r.query.iter().filter(|(k, _)| k == "permissions").map(|(_, v)| v.clone()).collect();
            let v = app
                .store
                .call(move |c| {
                    let mut granted = Vec::new();
                    for p in asked {
                        if bucket_allows(c, &principal, &bucket, None, &p)? {
                            granted.push(p);
                        }
                    }
                    Ok(json!({"kind": "storage#testIamPermissionsResponse", "permissions": granted}))
                })
                .await?;
            Ok(json_response(v))
        }
        ("GET", ["b", bucket, "o"]) => list_objects(app, r, bucket).await,
        ("GET", ["b", bucket, "o", object]) => {
            let (bucket, object) = (bucket.to_string(), object.to_string());
            let v = app
                .store
                .call(move |c| {
                    require_object_permission(c, &principal, &bucket, &object, "storage.objects.get")?;
                    object_resource(c, &bucket, &object)?
                        .ok_or_else(|| ApiError::not_found(format!("No such object: {bucket}/{object}")))
                })
                .await?;
            Ok(json_response(v))
        }
        ("DELETE", ["b", bucket, "o", object]) => delete_object(app, r, bucket, object).await,
        _ => Err(ApiError::not_found(format!(
            "{} {} is not part of the local cloud's Storage API",
            r.method, r.raw_path
        ))),
    }
}

fn render_policy(bucket: &str, policy: &str, etag: i64) -> Value {
    let mut p: Value = serde_json::from_str(policy).unwrap_or(json!({}));
    p["kind"] = json!("storage#policy");
    p["resourceId"] = json!(format!("projects/_/buckets/{bucket}"));
    p["etag"] = json!(crate::iam::etag(etag));
    if p.get("version").is_none() {
        p["version"] = json!(1);
    }
    if p.get("bindings").is_none() {
        p["bindings"] = json!([]);
    }
    p
}

async fn insert_bucket(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let project =
        r.query("project").ok_or_else(|| ApiError::new(400, "required", "Required parameter: project"))?.to_string();
    let body = body.ok_or_else(|| ApiError::new(400, "required", "Required: bucket resource in the request body"))?;
    check_fields(&body, BUCKET_FIELDS, "Bucket")?;
    let name = body["name"].as_str().ok_or_else(|| ApiError::new(400, "required", "Required: name"))?.to_string();
    validate_bucket_name(&name).map_err(ApiError::bad_request)?;
    if let Some(pap) = body.pointer("/iamConfiguration/publicAccessPrevention").and_then(Value::as_str)
        && !["inherited", "enforced", "unspecified"].contains(&pap)
    {
        return Err(ApiError::bad_request(format!("Invalid value for publicAccessPrevention: {pap}")));
    }
    let principal = r.principal.clone();
    let now = now_rfc3339();
    let v = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            let proj = project_policy(&tx, &project)?
                .ok_or_else(|| ApiError::forbidden(format!("{principal} does not have storage.buckets.create access to the Google Cloud project {project}.")))?;
            if !crate::iam::allows(&proj, &principal, "storage.buckets.create") {
                return Err(ApiError::forbidden(format!(
                    "{principal} does not have storage.buckets.create access to the Google Cloud project {project}. Permission 'storage.buckets.create' denied on resource (or it may not exist)."
                )));
            }
            let exists: i64 = tx.query_row("SELECT COUNT(*) FROM buckets WHERE name = ?1", [&name], |r| r.get(0)).map_err(sql)?;
            if exists > 0 {
                return Err(ApiError::conflict(
                    "Your previous request to create the named bucket succeeded and you already own it.",
                ));
            }
            let number: String = tx.query_row("SELECT number FROM projects WHERE id = ?1", [&project], |r| r.get(0)).map_err(sql)?;
            let ubla = body.pointer("/iamConfiguration/uniformBucketLevelAccess/enabled").and_then(Value::as_bool)
                .or_else(|| body.pointer("/iamConfiguration/bucketPolicyOnly/enabled").and_then(Value::as_bool))
                .unwrap_or(false);
            let pap = body.pointer("/iamConfiguration/publicAccessPrevention").and_then(Value::as_str).unwrap_or("inherited");
            let resource = json!({
                "kind": "storage#bucket",
                "id": name,
                "selfLink": format!("https://www.googleapis.com/storage/v1/b/{name}"),
                "projectNumber": number,
                "name": name,
                "timeCreated": now,
                "updated": now,
                "metageneration": "1",
                "location": body["location"].as_str().unwrap_or("US").to_uppercase(),
                "locationType": "multi-region",
                "storageClass": body["storageClass"].as_str().unwrap_or("STANDARD"),
                "etag": "CAE=",
                "labels": body.get("labels").cloned().unwrap_or(json!({})),
                "versioning": body.get("versioning").cloned().unwrap_or(json!({"enabled": false})),
                "iamConfiguration": iam_configuration(ubla, pap, &now),
            });
            let policy = json!({"version": 1, "bindings": [
                {"role": "roles/storage.legacyBucketOwner", "members": [format!("projectOwner:{project}"), format!("projectEditor:{project}")]},
                {"role": "roles/storage.legacyBucketReader", "members": [format!("projectViewer:{project}")]}
            ]});
            tx.execute(
                "INSERT INTO buckets (name, project, resource, metageneration, policy, policy_etag) VALUES (?1, ?2, ?3, 1, ?4, 1)",
                params![name, project, resource.to_string(), policy.to_string()],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(strip_empty_labels(resource))
        })
        .await?;
    Ok(json_response(v))
}

fn strip_empty_labels(mut v: Value) -> Value {
    if v["labels"].as_object().is_some_and(|m| m.is_empty())
        && let Some(o) = v.as_object_mut()
    {
        o.remove("labels");
    }
    v
}

fn iam_configuration(ubla: bool, pap: &str, now: &str) -> Value {
    let mut u = json!({"enabled": ubla});
    if ubla {
        u["lockedTime"] = json!(now);
    }
    json!({"uniformBucketLevelAccess": u, "bucketPolicyOnly": u, "publicAccessPrevention": pap})
}

async fn list_buckets(app: &App, r: &Req) -> ApiResult<Response> {
    let project =
        r.query("project").ok_or_else(|| ApiError::new(400, "required", "Required parameter: project"))?.to_string();
    let prefix = r.query("prefix").unwrap_or("").to_string();
    let max = r.query_i64("maxResults")?.unwrap_or(1000).clamp(1, 1000) as usize;
    let after = r.query("pageToken").map(decode_token).transpose()?.unwrap_or_default();
    let principal = r.principal.clone();
    let v = app
        .store
        .call(move |c| {
            let proj = project_policy(c, &project)?.unwrap_or(Value::Null);
            if !crate::iam::allows(&proj, &principal, "storage.buckets.list") {
                return Err(ApiError::forbidden(format!(
                    "{principal} does not have storage.buckets.list access to the Google Cloud project {project}."
                )));
            }
            let mut st = c
                .prepare("SELECT name, resource FROM buckets WHERE project = ?1 AND name > ?2 ORDER BY name")
                .map_err(sql)?;
            let rows: Vec<(String, String)> = st
                .query_map(params![project, after], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?
                .filter_map(Result::ok)
                .collect();
            let matching: Vec<(String, String)> = rows.into_iter().filter(|(n, _)| n.starts_with(&prefix)).collect();
            let mut out = json!({"kind": "storage#buckets"});
            let items: Vec<Value> = matching
                .iter()
                .take(max)
                .map(|(_, r)| strip_empty_labels(serde_json::from_str(r).unwrap_or(Value::Null)))
                .collect();
            if matching.len() > max {
                out["nextPageToken"] = json!(encode_token(&matching[max - 1].0));
            }
            if !items.is_empty() {
                out["items"] = Value::Array(items);
            }
            Ok(out)
        })
        .await?;
    Ok(json_response(v))
}

fn encode_token(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode_token(t: &str) -> ApiResult<String> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad_request("Invalid pageToken."))
}

async fn patch_bucket(app: &App, r: &Req, bucket: &str, body: Value) -> ApiResult<Response> {
    check_fields(&body, BUCKET_FIELDS, "Bucket")?;
    for fixed in ["name", "location", "storageClass"] {
        if body.get(fixed).is_some() && fixed != "storageClass" {
            return Err(ApiError::bad_request(format!("{fixed} cannot be changed on an existing bucket.")));
        }
    }
    let bucket = bucket.to_string();
    let principal = r.principal.clone();
    let ifm = r.query_i64("ifMetagenerationMatch")?;
    let ifnm = r.query_i64("ifMetagenerationNotMatch")?;
    let now = now_rfc3339();
    let v = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            let mut res = require_bucket(&tx, &principal, &bucket, "storage.buckets.update")?;
            let meta: i64 = tx
                .query_row("SELECT metageneration FROM buckets WHERE name = ?1", [&bucket], |r| r.get(0))
                .map_err(sql)?;
            if ifm.is_some_and(|m| m != meta) || ifnm.is_some_and(|m| m == meta) {
                return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
            }
            if let Some(l) = body.get("labels") {
                let mut labels = res["labels"].as_object().cloned().unwrap_or_default();
                for (k, v) in l.as_object().cloned().unwrap_or_default() {
                    if v.is_null() {
                        labels.remove(&k);
                    } else {
                        labels.insert(k, v);
                    }
                }
                res["labels"] = Value::Object(labels);
            }
            if let Some(ic) = body.get("iamConfiguration") {
                let ubla = ic.pointer("/uniformBucketLevelAccess/enabled").and_then(Value::as_bool).unwrap_or(
                    res.pointer("/iamConfiguration/uniformBucketLevelAccess/enabled")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                );
                let pap = ic
                    .get("publicAccessPrevention")
                    .and_then(Value::as_str)
                    .or(res.pointer("/iamConfiguration/publicAccessPrevention").and_then(Value::as_str))
                    .unwrap_or("inherited")
                    .to_string();
                if !["inherited", "enforced", "unspecified"].contains(&pap.as_str()) {
                    return Err(ApiError::bad_request(format!("Invalid value for publicAccessPrevention: {pap}")));
                }
                res["iamConfiguration"] = iam_configuration(ubla, &pap, &now);
            }
            if let Some(v) = body.get("versioning") {
                res["versioning"] = v.clone();
            }
            if let Some(sc) = body.get("storageClass") {
                res["storageClass"] = sc.clone();
            }
            let meta = meta + 1;
            res["metageneration"] = json!(meta.to_string());
            res["updated"] = json!(now);
            tx.execute(
                "UPDATE buckets SET resource = ?1, metageneration = ?2 WHERE name = ?3",
                params![res.to_string(), meta, bucket],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(strip_empty_labels(res))
        })
        .await?;
    Ok(json_response(v))
}

async fn delete_bucket(app: &App, r: &Req, bucket: &str) -> ApiResult<Response> {
    let bucket = bucket.to_string();
    let principal = r.principal.clone();
    let ifm = r.query_i64("ifMetagenerationMatch")?;
    app.store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            require_bucket(&tx, &principal, &bucket, "storage.buckets.delete")?;
            let meta: i64 = tx
                .query_row("SELECT metageneration FROM buckets WHERE name = ?1", [&bucket], |r| r.get(0))
                .map_err(sql)?;
            if ifm.is_some_and(|m| m != meta) {
                return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
            }
            let n: i64 =
                tx.query_row("SELECT COUNT(*) FROM objects WHERE bucket = ?1", [&bucket], |r| r.get(0)).map_err(sql)?;
            if n > 0 {
                return Err(ApiError::conflict("The bucket you tried to delete is not empty."));
            }
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&bucket]).map_err(sql)?;
            tx.commit().map_err(sql)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_bucket_policy(app: &App, r: &Req, bucket: &str, body: Value) -> ApiResult<Response> {
    crate::iam::validate_policy(&body)?;
    let bucket = bucket.to_string();
    let principal = r.principal.clone();
    let v = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            let res = require_bucket(&tx, &principal, &bucket, "storage.buckets.setIamPolicy")?;
            let current: i64 = tx
                .query_row("SELECT policy_etag FROM buckets WHERE name = ?1", [&bucket], |r| r.get(0))
                .map_err(sql)?;
            if let Some(e) = body.get("etag").and_then(Value::as_str)
                && e != crate::iam::etag(current)
            {
                return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
            }
            let conditional =
                body["bindings"].as_array().is_some_and(|b| b.iter().any(|b| b.get("condition").is_some()));
            if conditional && res.pointer("/iamConfiguration/uniformBucketLevelAccess/enabled") != Some(&json!(true)) {
                return Err(ApiError::bad_request("IAM conditions require uniform bucket-level access to be enabled."));
            }
            let bindings = crate::iam::stored_bindings(&body);
            let stored = json!({"version": body["version"].as_i64().unwrap_or(1), "bindings": bindings});
            let next = current + 1;
            tx.execute(
                "UPDATE buckets SET policy = ?1, policy_etag = ?2 WHERE name = ?3",
                params![stored.to_string(), next, bucket],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(render_policy(&bucket, &stored.to_string(), next))
        })
        .await?;
    Ok(json_response(v))
}

fn object_resource(c: &rusqlite::Connection, bucket: &str, object: &str) -> ApiResult<Option<Value>> {
    let r: Option<String> = c
        .query_row("SELECT resource FROM objects WHERE bucket = ?1 AND name = ?2", [bucket, object], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(r.and_then(|r| serde_json::from_str(&r).ok()))
}

async fn list_objects(app: &App, r: &Req, bucket: &str) -> ApiResult<Response> {
    let bucket = bucket.to_string();
    let principal = r.principal.clone();
    let prefix = r.query("prefix").unwrap_or("").to_string();
    let delimiter = r.query("delimiter").map(str::to_string);
    let max = r.query_i64("maxResults")?.unwrap_or(1000).clamp(1, 1000) as usize;
    let after = r.query("pageToken").map(decode_token).transpose()?.unwrap_or_default();
    let v = app
        .store
        .call(move |c| {
            require_object_permission(c, &principal, &bucket, "", "storage.objects.list")?;
            let mut st = c
                .prepare("SELECT name, resource FROM objects WHERE bucket = ?1 AND name > ?2 ORDER BY name")
                .map_err(sql)?;
            let rows: Vec<(String, String)> = st
                .query_map(params![bucket, after], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(sql)?
                .filter_map(Result::ok)
                .collect();
            let mut items = Vec::new();
            let mut prefixes: Vec<String> = Vec::new();
            let mut last = None;
            for (name, res) in rows.into_iter().filter(|(n, _)| n.starts_with(&prefix)) {
                if items.len() + prefixes.len() >= max {
                    break;
                }
                if let Some(d) = &delimiter
                    && let Some(i) = name[prefix.len()..].find(d.as_str())
                {
                    let p = name[..prefix.len() + i + d.len()].to_string();
                    if !prefixes.contains(&p) {
                        prefixes.push(p);
                    }
                } else {
                    items.push(serde_json::from_str::<Value>(&res).unwrap_or(Value::Null));
                }
                last = Some(name);
            }
            let mut out = json!({"kind": "storage#objects"});
            if !items.is_empty() {
                out["items"] = Value::Array(items);
            }
            if !prefixes.is_empty() {
                out["prefixes"] = json!(prefixes);
            }
            if let Some(l) = last {
                let more: i64 = c
                    .query_row(
                        "SELECT COUNT(*) FROM objects WHERE bucket = ?1 AND name > ?2 AND name LIKE ?3 || '%'",
                        params![bucket, l, prefix],
                        |r| r.get(0),
                    )
                    .map_err(sql)?;
                if more > 0 {
                    out["nextPageToken"] = json!(encode_token(&l));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(json_response(v))
}

async fn delete_object(app: &App, r: &Req, bucket: &str, object: &str) -> ApiResult<Response> {
    let (bucket, object) = (bucket.to_string(), object.to_string());
    let principal = r.principal.clone();
    let ifg = r.query_i64("ifGenerationMatch")?;
    let store = app.store.clone();
    let file = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            require_object_permission(&tx, &principal, &bucket, &object, "storage.objects.delete")?;
            let row: Option<(i64, String)> = tx
                .query_row(
                    "SELECT generation, file FROM objects WHERE bucket = ?1 AND name = ?2",
                    [&bucket, &object],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let (generation, file) =
                row.ok_or_else(|| ApiError::not_found(format!("No such object: {bucket}/{object}")))?;
            if ifg.is_some_and(|g| g != generation) {
                return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
            }
            tx.execute("DELETE FROM objects WHERE bucket = ?1 AND name = ?2", [&bucket, &object]).map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(file)
        })
        .await?;
    let _ = std::fs::remove_file(store.object_path(&file));
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---------------------------------------------------------------------------------------------
// media: download and uploads

pub async fn download(app: &App, r: &Req) -> ApiResult<Response> {
    let seg = segments(&r.raw_path);
    let seg: Vec<&str> = seg.iter().skip(2).map(String::as_str).collect();
    let ["b", bucket, "o", object] = seg.as_slice() else {
        return Err(ApiError::bad_request("alt=media is only supported on objects."));
    };
    let (bucket, object) = (bucket.to_string(), object.to_string());
    let principal = r.principal.clone();
    // Buckets here keep no noncurrent versions: any generation but the live one does not exist.
    let want_generation = r.query_i64("generation")?;
    let (file, res) = app
        .store
        .call(move |c| {
            require_object_permission(c, &principal, &bucket, &object, "storage.objects.get")?;
            let row: Option<(String, String, i64)> = c
                .query_row(
                    "SELECT file, resource, generation FROM objects WHERE bucket = ?1 AND name = ?2",
                    [&bucket, &object],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            match row {
                Some((file, res, g)) if want_generation.is_none_or(|w| w == g) => Ok((file, res)),
                Some(_) => Err(ApiError::not_found(format!(
                    "No such object: {bucket}/{object}#{}",
                    want_generation.unwrap_or_default()
                ))),
                None => Err(ApiError::not_found(format!("No such object: {bucket}/{object}"))),
            }
        })
        .await?;
    let f = tokio::fs::File::open(app.store.object_path(&file))
        .await
        .map_err(|e| ApiError::internal(format!("object data missing: {e}")))?;
    let res: Value = serde_json::from_str(&res).unwrap_or(Value::Null);
    // Stream the file in 256 KiB reads: memory stays flat whatever the object size.
    let stream = futures::stream::unfold(f, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 256 * 1024];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let ct = res["contentType"].as_str().unwrap_or("application/octet-stream").to_string();
    if let Ok(v) = ct.parse() {
        resp.headers_mut().insert("content-type", v);
    }
    if let Some(g) = res["generation"].as_str().and_then(|g| g.parse().ok()) {
        resp.headers_mut().insert("x-goog-generation", g);
    }
    Ok(resp)
}

/// Preconditions on the object generation, checked when an upload completes.
#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct Preconditions {
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
}

fn preconditions(r: &Req) -> ApiResult<Preconditions> {
    Ok(Preconditions {
        if_generation_match: r.query_i64("ifGenerationMatch")?,
        if_generation_not_match: r.query_i64("ifGenerationNotMatch")?,
    })
}

const OBJECT_FIELDS: &[&str] = &[
    "name",
    "contentType",
    "metadata",
    "contentEncoding",
    "contentDisposition",
    "contentLanguage",
    "cacheControl",
    "crc32c",
    "md5Hash",
    "kmsKeyName",
    "storageClass",
    "temporaryHold",
    "eventBasedHold",
    "customTime",
    "acl",
    "bucket",
    "size",
    "retention",
];

pub async fn upload(app: &App, r: &Req, body: Body) -> ApiResult<Response> {
    let seg = segments(&r.raw_path);
    let seg: Vec<&str> = seg.iter().skip(3).map(String::as_str).collect(); // after upload/storage/v1
    let ["b", bucket, "o"] = seg.as_slice() else {
        return Err(ApiError::not_found(format!("{} {} is not an upload endpoint", r.method, r.raw_path)));
    };
    let bucket = bucket.to_string();
    match (r.method.as_str(), r.query("uploadType"), r.query("upload_id")) {
        ("PUT", _, Some(id)) | ("POST", _, Some(id)) => resumable_chunk(app, r, &bucket, id, body).await,
        ("POST", Some("media"), None) => {
            let name =
                r.query("name").ok_or_else(|| ApiError::new(400, "required", "Required parameter: name"))?.to_string();
            validate_object_name(&name).map_err(ApiError::bad_request)?;
            let meta =
                json!({"name": name, "contentType": r.header("content-type").unwrap_or("application/octet-stream")});
            let pre = preconditions(r)?;
            let principal = r.principal.clone();
            {
                let (b, n, p) = (bucket.clone(), name.clone(), principal.clone());
                app.store.call(move |c| require_object_permission(c, &p, &b, &n, "storage.objects.create")).await?;
            }
            let id = uuid::Uuid::new_v4().to_string();
            let path = app.store.upload_path(&id);
            let written = stream_to_file(body, &path, false).await?;
            let _ = written;
            finalize(app, &principal, &bucket, meta, pre, &path).await
        }
        ("POST", Some("resumable"), None) => {
            let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
            let mut meta: Value = if bytes.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("Invalid JSON payload received. {e}")))?
            };
            check_fields(&meta, OBJECT_FIELDS, "Object")?;
            if meta.get("kmsKeyName").is_some() {
                return Err(ApiError::bad_request(
                    "Setting kmsKeyName in the object resource is not supported; use the kmsKeyName query parameter.",
                ));
            }
            if let Some(n) = r.query("name") {
                meta["name"] = json!(n);
            }
            let name =
                meta["name"].as_str().ok_or_else(|| ApiError::new(400, "required", "Required: name"))?.to_string();
            validate_object_name(&name).map_err(ApiError::bad_request)?;
            if meta.get("contentType").is_none()
                && let Some(ct) = r.header("x-upload-content-type")
            {
                meta["contentType"] = json!(ct);
            }
            let pre = serde_json::to_string(&preconditions(r)?).unwrap_or_default();
            let id = uuid::Uuid::new_v4().simple().to_string();
            let principal = r.principal.clone();
            let file = app.store.upload_path(&id);
            std::fs::File::create(&file).map_err(|e| ApiError::internal(e.to_string()))?;
            {
                let (b, n, idc, f) = (bucket.clone(), name.clone(), id.clone(), file.to_string_lossy().into_owned());
                let p = principal.clone();
                app.store
                    .call(move |c| {
                        require_object_permission(c, &p, &b, &n, "storage.objects.create")?;
                        c.execute(
                            "INSERT INTO uploads (id, bucket, resource, preconditions, file, received, principal) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
                            params![idc, b, meta.to_string(), pre, f, p.principal],
                        )
                        .map_err(sql)?;
                        Ok(())
                    })
                    .await?;
            }
            let host = r.header("host").unwrap_or("127.0.0.1");
            let location = format!(
                "http://{host}/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={id}",
                crate::server::encode_segment(&bucket)
            );
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut().insert("location", location.parse().map_err(|_| ApiError::internal("bad location"))?);
            Ok(resp)
        }
        ("POST", Some("multipart"), None) => Err(ApiError::bad_request(
            "The local cloud does not support uploadType=multipart; use uploadType=media or uploadType=resumable.",
        )),
        (_, Some(other), None) => Err(ApiError::bad_request(format!("Invalid uploadType: {other}"))),
        _ => Err(ApiError::new(400, "required", "Required parameter: uploadType")),
    }
}

/// Writes a request body to `path` as it arrives (appending when `append`), returning the bytes written.
async fn stream_to_file(body: Body, path: &std::path::Path, append: bool) -> ApiResult<u64> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut stream = body.into_data_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("Upload interrupted: {e}")))?;
        n += chunk.len() as u64;
        // Small synchronous writes to a local file: cheap enough not to need the blocking pool.
        f.write_all(&chunk).map_err(|e| ApiError::internal(e.to_string()))?;
    }
    Ok(n)
}

async fn resumable_chunk(app: &App, r: &Req, bucket: &str, id: &str, body: Body) -> ApiResult<Response> {
    let idc = id.to_string();
    let row: Option<(String, String, String, i64, String, String)> = app
        .store
        .call(move |c| {
            c.query_row(
                "SELECT bucket, resource, preconditions, received, file, principal FROM uploads WHERE id = ?1",
                [&idc],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
            )
            .optional()
            .map_err(sql)
        })
        .await?;
    let (ubucket, meta, pre, received, file, principal) =
        row.ok_or_else(|| ApiError::not_found("No such upload session (it may have completed or expired)."))?;
    if ubucket != bucket || principal != r.principal.principal {
        return Err(ApiError::not_found("No such upload session."));
    }
    let received = received as u64;
    let cr = match r.header("content-range") {
        Some(v) => {
            parse_content_range(v).ok_or_else(|| ApiError::bad_request(format!("Invalid Content-Range: {v}")))?
        }
        None => ContentRange { range: None, total: None },
    };
    let path = std::path::PathBuf::from(&file);
    let mut now_received = received;
    if let Some((a, b)) = cr.range {
        if a != received {
            return Err(ApiError::bad_request(format!(
                "Invalid request: the chunk starts at byte {a}, but the session has {received} bytes."
            )));
        }
        let len = b - a + 1;
        let is_final = cr.total.is_some_and(|t| t == b + 1);
        if !is_final && len % CHUNK_GRANULARITY != 0 {
            return Err(ApiError::bad_request(format!(
                "Invalid request: non-final chunks must be a multiple of {CHUNK_GRANULARITY} bytes (got {len})."
            )));
        }
        let n = stream_to_file(body, &path, true).await?;
        if n != len {
            // Drop what arrived: the session stays at its previous size.
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(received);
            }
            return Err(ApiError::bad_request(format!("Content-Range says {len} bytes but the body had {n}.")));
        }
        now_received = received + n;
        let idc = id.to_string();
        app.store
            .call(move |c| {
                c.execute("UPDATE uploads SET received = ?1 WHERE id = ?2", params![now_received as i64, idc])
                    .map(|_| ())
                    .map_err(sql)
            })
            .await?;
    }
    if let Some(total) = cr.total {
        if total == now_received {
            let meta: Value = serde_json::from_str(&meta).unwrap_or(json!({}));
            let pre: Preconditions = serde_json::from_str(&pre).unwrap_or_default();
            let resp = finalize(app, &r.principal, bucket, meta, pre, &path).await;
            let idc = id.to_string();
            let _ = app
                .store
                .call(move |c| c.execute("DELETE FROM uploads WHERE id = ?1", [&idc]).map(|_| ()).map_err(sql))
                .await;
            return resp;
        }
        if total < now_received {
            return Err(ApiError::bad_request("Content-Range total is smaller than the bytes already received."));
        }
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if now_received > 0 {
        resp.headers_mut()
            .insert("range", format!("bytes=0-{}", now_received - 1).parse().map_err(|_| ApiError::internal("range"))?);
    }
    Ok(resp)
}

/// Makes an uploaded file the new live generation of the object, checking preconditions
/// atomically with the swap.
async fn finalize(
    app: &App,
    principal: &crate::iam::Identity,
    bucket: &str,
    meta: Value,
    pre: Preconditions,
    path: &std::path::Path,
) -> ApiResult<Response> {
    // Checksum and size from the file (one streaming pass on the blocking pool).
    let p = path.to_path_buf();
    let (size, crc) = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        use std::io::Read;
        let mut f = std::fs::File::open(&p)?;
        let mut crc = Crc32c::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            crc.update(&buf[..n]);
            size += n as u64;
        }
        Ok((size, crc.finish_b64()))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(|e| ApiError::internal(e.to_string()))?;

    let file = uuid::Uuid::new_v4().simple().to_string();
    let dest = app.store.object_path(&file);
    std::fs::rename(path, &dest).map_err(|e| ApiError::internal(e.to_string()))?;
    let (bucket, principal) = (bucket.to_string(), principal.clone());
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let store = app.store.clone();
    let result = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            require_object_permission(&tx, &principal, &bucket, &name, "storage.objects.create")?;
            let old: Option<(i64, String)> = tx
                .query_row("SELECT generation, file FROM objects WHERE bucket = ?1 AND name = ?2", [&bucket, &name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(sql)?;
            let current = old.as_ref().map(|(g, _)| *g).unwrap_or(0);
            if pre.if_generation_match.is_some_and(|g| g != current) || pre.if_generation_not_match.is_some_and(|g| g == current) {
                return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
            }
            if old.is_some()
                && !crate::storage::bucket_allows(&tx, &principal, &bucket, Some(&name), "storage.objects.delete")?
            {
                return Err(denied_object(&principal, "storage.objects.delete", &bucket, &name));
            }
            // Generations are microsecond timestamps, strictly increasing per object.
            let generation = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000) as i64;
            let generation = generation.max(current + 1);
            let now = now_rfc3339();
            let enc = crate::server::encode_segment(&name);
            let mut res = json!({
                "kind": "storage#object",
                "id": format!("{bucket}/{name}/{generation}"),
                "selfLink": format!("https://www.googleapis.com/storage/v1/b/{bucket}/o/{enc}"),
                "mediaLink": format!("https://storage.googleapis.com/download/storage/v1/b/{bucket}/o/{enc}?generation={generation}&alt=media"),
                "name": name,
                "bucket": bucket,
                "generation": generation.to_string(),
                "metageneration": "1",
                "contentType": meta["contentType"].as_str().unwrap_or("application/octet-stream"),
                "storageClass": "STANDARD",
                "size": size.to_string(),
                "crc32c": crc,
                "etag": crate::iam::etag(generation),
                "timeCreated": now,
                "updated": now,
            });
            if let Some(m) = meta.get("metadata").filter(|m| m.is_object()) {
                res["metadata"] = m.clone();
            }
            tx.execute(
                "INSERT OR REPLACE INTO objects (bucket, name, generation, resource, file) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![bucket, name, generation, res.to_string(), file],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok((res, old.map(|(_, f)| f)))
        })
        .await;
    match result {
        Ok((res, old)) => {
            if let Some(old) = old {
                let _ = std::fs::remove_file(store.object_path(&old));
            }
            Ok(json_response(res))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&dest);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_google() {
        assert!(validate_bucket_name("dcr-local-patients").is_ok());
        assert!(validate_bucket_name("ab").is_err());
        assert!(validate_bucket_name("Upper").is_err());
        assert!(validate_bucket_name("has.dot").is_err());
        assert!(validate_bucket_name("-x-").is_err());
        assert!(validate_bucket_name("googlebucket").is_err());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-262143/*"),
            Some(ContentRange { range: Some((0, 262143)), total: None })
        );
        assert_eq!(parse_content_range("bytes 5-9/10"), Some(ContentRange { range: Some((5, 9)), total: Some(10) }));
        assert_eq!(parse_content_range("bytes */10"), Some(ContentRange { range: None, total: Some(10) }));
        assert_eq!(parse_content_range("bytes */*"), Some(ContentRange { range: None, total: None }));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("junk"), None);
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut c = Crc32c::new();
        c.update(b"123456789");
        use base64::Engine;
        assert_eq!(c.finish_b64(), base64::engine::general_purpose::STANDARD.encode(0xE306_9283u32.to_be_bytes()));
    }
}
