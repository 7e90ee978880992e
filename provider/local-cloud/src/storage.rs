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
use crate::api::{Req, segments};
use crate::app::App;
use crate::checksums::Hashes;
use crate::resource_manager::project_policy;
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

/// What a `Range` request header asks of an object.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No header, or one that is not a single byte range, which a server may ignore.
    Whole,
    /// First and last byte, within the object.
    Part(u64, u64),
    /// No byte of the object is in range (416) — also every range of an empty object, which is
    /// why google-resumable-media's `ChunkedDownload` reads a 416 as an empty object.
    Unsatisfiable,
}

/// A `Range` header against an object of `size` bytes (RFC 9110 §14.1.2), as Cloud Storage reads
/// it for media downloads (https://cloud.google.com/storage/docs/json_api/v1/parameters#range).
pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return ByteRange::Whole };
    let Some((a, b)) = spec.trim().split_once('-').filter(|_| !spec.contains(',')) else { return ByteRange::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        // `bytes=-N`: the last N bytes.
        return match b.parse::<u64>() {
            Ok(0) => ByteRange::Unsatisfiable,
            Ok(_) if size == 0 => ByteRange::Unsatisfiable,
            Ok(n) => ByteRange::Part(size.saturating_sub(n), size - 1),
            Err(_) => ByteRange::Whole,
        };
    }
    let Ok(first) = a.parse::<u64>() else { return ByteRange::Whole };
    let last = match b {
        "" => u64::MAX,
        b => match b.parse::<u64>() {
            Ok(last) if last >= first => last,
            _ => return ByteRange::Whole,
        },
    };
    if first >= size { ByteRange::Unsatisfiable } else { ByteRange::Part(first, last.min(size - 1)) }
}

/// The two parts of a `multipart/related` upload (`uploadType=multipart`): the object's metadata
/// (JSON) and its bytes, with the media part's own Content-Type. The layout is what
/// google-resumable-media's `construct_multipart_request` (google/cloud/storage/_media/_upload.py)
/// writes and what https://cloud.google.com/storage/docs/uploading-objects#uploading-an-object
/// (JSON API, multipart) describes: `--B CRLF headers CRLF CRLF metadata CRLF --B CRLF headers CRLF
/// CRLF media CRLF --B--`.
#[derive(Debug, PartialEq)]
pub struct Multipart<'a> {
    pub metadata: Value,
    pub media_type: Option<String>,
    pub media: &'a [u8],
}

pub fn parse_multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Multipart<'a>, String> {
    let mut params = content_type.split(';');
    let media_type = params.next().unwrap_or("").trim().to_ascii_lowercase();
    if media_type != "multipart/related" {
        return Err(format!("uploadType=multipart takes a multipart/related body, not Content-Type '{content_type}'."));
    }
    let boundary = params
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|b| !b.is_empty())
        .ok_or("The multipart/related Content-Type has no boundary.")?;
    let delimiter = format!("--{boundary}").into_bytes();
    let start = find(body, &delimiter, 0).ok_or("The multipart body has no boundary line.")?;
    let mut parts = Vec::new();
    let mut at = start + delimiter.len();
    loop {
        if body[at..].starts_with(b"--") {
            break;
        }
        at = skip_line_end(body, at).ok_or("A multipart boundary line is not followed by CRLF.")?;
        let close = [b"\r\n".as_slice(), &delimiter].concat();
        let end = find(body, &close, at).ok_or("The multipart body is not closed by its boundary.")?;
        parts.push(&body[at..end]);
        at = end + close.len();
    }
    let [meta, media] = parts.as_slice() else {
        return Err(format!(
            "Invalid multipart request with {} mime parts: it must have two, the metadata and the media.",
            parts.len()
        ));
    };
    let (meta_headers, meta_body) = split_part(meta)?;
    let meta_type = header_value(meta_headers, "content-type").unwrap_or_default();
    if !meta_type.to_ascii_lowercase().starts_with("application/json") {
        return Err(format!("The first multipart part must be the JSON metadata, not '{meta_type}'."));
    }
    let metadata = serde_json::from_slice(meta_body).map_err(|e| format!("Invalid JSON payload received. {e}"))?;
    let (media_headers, media) = split_part(media)?;
    Ok(Multipart { metadata, media_type: header_value(media_headers, "content-type"), media })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// After a boundary: optional whitespace (RFC 2046's transport padding), then CRLF.
fn skip_line_end(body: &[u8], mut at: usize) -> Option<usize> {
    while matches!(body.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    body[at..].starts_with(b"\r\n").then_some(at + 2)
}

/// A part's header block and its body.
fn split_part(part: &[u8]) -> Result<(&str, &[u8]), String> {
    if let Some(rest) = part.strip_prefix(b"\r\n") {
        return Ok(("", rest));
    }
    let end = find(part, b"\r\n\r\n", 0).ok_or("A multipart part has no blank line after its headers.")?;
    let headers = std::str::from_utf8(&part[..end]).map_err(|_| "Multipart part headers are not UTF-8.")?;
    Ok((headers, &part[end + 4..]))
}

fn header_value(headers: &str, name: &str) -> Option<String> {
    headers
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

/// Where links in Storage resources point: this local cloud, as Google's point at its own hosts
/// (`selfLink` at `https://www.googleapis.com/storage/v1/...`, `mediaLink` at
/// `https://storage.googleapis.com/download/storage/v1/...?generation=G&alt=media`). Clients follow
/// them: google-cloud-storage's `Blob._get_download_url` downloads from `mediaLink` once loaded.
/// Links are made for each answer, never stored, because the local cloud's port changes from one
/// run to the next.
pub fn with_links(mut v: Value, base: &str) -> Value {
    match v["kind"].as_str() {
        Some("storage#object") => {
            let (bucket, name) = (v["bucket"].as_str().unwrap_or(""), v["name"].as_str().unwrap_or(""));
            let path =
                format!("storage/v1/b/{}/o/{}", crate::api::encode_segment(bucket), crate::api::encode_segment(name));
            let generation = v["generation"].as_str().unwrap_or("").to_string();
            v["selfLink"] = json!(format!("{base}/{path}"));
            v["mediaLink"] = json!(format!("{base}/download/{path}?generation={generation}&alt=media"));
        }
        Some("storage#bucket") => {
            let name = crate::api::encode_segment(v["name"].as_str().unwrap_or(""));
            v["selfLink"] = json!(format!("{base}/storage/v1/b/{name}"));
        }
        Some("storage#objects" | "storage#buckets") => {
            if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
                for item in items.iter_mut() {
                    *item = with_links(std::mem::take(item), base);
                }
            }
        }
        _ => {}
    }
    v
}

/// The checksums a client said its upload has: `crc32c` and `md5Hash` in the object metadata, or
/// an `X-Goog-Hash: crc32c=...,md5=...` header (google-resumable-media sends it with the final
/// chunk of a resumable upload). Cloud Storage refuses an upload whose data does not match
/// (https://cloud.google.com/storage/docs/hashes-etags#validation).
#[derive(serde::Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
pub struct Expected {
    pub crc32c: Option<String>,
    pub md5: Option<String>,
}

impl Expected {
    pub fn from_metadata(meta: &Value) -> Expected {
        let text = |k: &str| meta[k].as_str().map(str::to_string);
        Expected { crc32c: text("crc32c"), md5: text("md5Hash") }
    }

    /// Adds what an `X-Goog-Hash` header says; a value given twice must agree.
    pub fn add_header(&mut self, header: &str) -> Result<(), String> {
        for item in header.split(',') {
            let Some((name, value)) = item.trim().split_once('=') else { continue };
            let slot = match name.trim() {
                "crc32c" => &mut self.crc32c,
                "md5" => &mut self.md5,
                _ => continue,
            };
            match slot {
                Some(v) if v != value => {
                    return Err(format!("X-Goog-Hash says {name}={value}, but the object metadata says {v}."));
                }
                _ => *slot = Some(value.to_string()),
            }
        }
        Ok(())
    }

    /// Google's wording when a supplied hash does not match the data.
    pub fn check(&self, crc32c: &str, md5: &str) -> Result<(), String> {
        if let Some(want) = self.crc32c.as_deref().filter(|w| *w != crc32c) {
            return Err(format!("Provided CRC32C \"{want}\" doesn't match calculated CRC32C \"{crc32c}\"."));
        }
        if let Some(want) = self.md5.as_deref().filter(|w| *w != md5) {
            return Err(format!("Provided MD5 hash \"{want}\" doesn't match calculated MD5 hash \"{md5}\"."));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// permissions

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
            Ok(respond(r, v))
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
            Ok(respond(r, v))
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
            Ok(respond(r, v))
        }
        ("GET", ["b", bucket, "o"]) => list_objects(app, r, bucket).await,
        ("GET", ["b", bucket, "o", object]) => {
            let (bucket, object) = (bucket.to_string(), object.to_string());
            let (want_generation, pre) = (r.query_i64("generation")?, MetaPreconditions::of(r)?);
            let objects_dir = app.store.objects_dir();
            let v = app
                .store
                .call(move |c| {
                    require_object_permission(c, &principal, &bucket, &object, "storage.objects.get")?;
                    live_object(c, &objects_dir, &bucket, &object, want_generation, &pre).map(|(_, res)| res)
                })
                .await?;
            Ok(respond(r, v))
        }
        ("DELETE", ["b", bucket, "o", object]) => delete_object(app, r, bucket, object).await,
        _ => Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Storage")),
    }
}

/// A JSON answer, its links pointing back at this local cloud.
fn respond(r: &Req, v: Value) -> Response {
    json_response(with_links(v, &r.base_url))
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
    Ok(respond(r, v))
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
    Ok(respond(r, v))
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
    Ok(respond(r, v))
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
            // Upload sessions a client abandoned (one cut off mid-upload never finishes them) go
            // with their bucket; nothing else would ever remove their files.
            let sessions: Vec<String> = tx
                .prepare("SELECT file FROM uploads WHERE bucket = ?1")
                .and_then(|mut s| s.query_map([&bucket], |r| r.get(0))?.collect())
                .map_err(sql)?;
            tx.execute("DELETE FROM uploads WHERE bucket = ?1", [&bucket]).map_err(sql)?;
            tx.execute("DELETE FROM buckets WHERE name = ?1", [&bucket]).map_err(sql)?;
            tx.commit().map_err(sql)?;
            for file in sessions {
                let _ = std::fs::remove_file(file);
            }
            Ok(())
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
    Ok(respond(r, v))
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
    Ok(respond(r, v))
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
    // `/storage/v1/b/B/o/O?alt=media` and google-cloud-storage's `/download/storage/v1/b/B/o/O?alt=media`
    // (blob.py `_DOWNLOAD_URL_TEMPLATE`, and the `mediaLink` of every object) serve the same bytes.
    let seg = segments(&r.raw_path);
    let skip = if seg.first().map(String::as_str) == Some("download") { 3 } else { 2 };
    let seg: Vec<&str> = seg.iter().skip(skip).map(String::as_str).collect();
    let ["b", bucket, "o", object] = seg.as_slice() else {
        return Err(ApiError::bad_request("alt=media is only supported on objects."));
    };
    let (bucket, object) = (bucket.to_string(), object.to_string());
    let principal = r.principal.clone();
    // Buckets here keep no noncurrent versions: any generation but the live one does not exist.
    let (want_generation, pre) = (r.query_i64("generation")?, MetaPreconditions::of(r)?);
    let objects_dir = app.store.objects_dir();
    let (file, res) = app
        .store
        .call(move |c| {
            require_object_permission(c, &principal, &bucket, &object, "storage.objects.get")?;
            live_object(c, &objects_dir, &bucket, &object, want_generation, &pre)
        })
        .await?;
    let mut f = tokio::fs::File::open(app.store.object_path(&file))
        .await
        .map_err(|e| ApiError::internal(format!("object data missing: {e}")))?;
    let size = f.metadata().await.map_err(|e| ApiError::internal(format!("object data missing: {e}")))?.len();
    let range = match parse_range(r.header("range"), size) {
        ByteRange::Whole => None,
        ByteRange::Part(a, b) => Some((a, b)),
        ByteRange::Unsatisfiable => {
            let mut resp = ApiError::new(416, "requestedRangeNotSatisfiable", "Request range not satisfiable")
                .into_response(crate::api::Shape::Storage);
            set_header(&mut resp, "content-range", &format!("bytes */{size}"));
            return Ok(resp);
        }
    };
    let (first, len) = match range {
        Some((a, b)) => (a, b - a + 1),
        None => (0, size),
    };
    if first > 0 {
        use tokio::io::AsyncSeekExt;
        f.seek(std::io::SeekFrom::Start(first)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    }
    // Stream the file in 256 KiB reads: memory stays flat whatever the object size.
    let stream = futures::stream::unfold((f, len), |(mut f, left)| async move {
        use tokio::io::AsyncReadExt;
        if left == 0 {
            return None;
        }
        let mut buf = vec![0u8; (256 * 1024).min(left) as usize];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), (f, left - n as u64)))
            }
            Err(e) => Some((Err(e), (f, 0))),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    set_header(&mut resp, "content-type", res["contentType"].as_str().unwrap_or("application/octet-stream"));
    set_header(&mut resp, "content-length", &len.to_string());
    if let Some((a, b)) = range {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        set_header(&mut resp, "content-range", &format!("bytes {a}-{b}/{size}"));
    }
    // The headers Cloud Storage sends with media (https://cloud.google.com/storage/docs/xml-api/reference-headers):
    // google-resumable-media checks the whole object's bytes against `x-goog-hash` (download.py
    // `_write_to_stream`), and sends it, the object's, with a 206 too, where clients skip the check.
    for (header, field) in [("x-goog-generation", "generation"), ("x-goog-metageneration", "metageneration")] {
        if let Some(v) = res[field].as_str() {
            set_header(&mut resp, header, v);
        }
    }
    let hashes: Vec<String> = [("crc32c", "crc32c"), ("md5", "md5Hash")]
        .iter()
        .filter_map(|(label, field)| res[*field].as_str().map(|v| format!("{label}={v}")))
        .collect();
    if !hashes.is_empty() {
        set_header(&mut resp, "x-goog-hash", &hashes.join(","));
    }
    set_header(&mut resp, "x-goog-stored-content-length", &size.to_string());
    set_header(&mut resp, "x-goog-stored-content-encoding", "identity");
    set_header(&mut resp, "x-goog-storage-class", res["storageClass"].as_str().unwrap_or("STANDARD"));
    set_header(&mut resp, "accept-ranges", "bytes");
    Ok(resp)
}

/// The live generation of an object (its data file and resource), if it is the generation asked
/// for and the preconditions hold. Buckets here keep no noncurrent versions: any generation but
/// the live one does not exist.
///
/// Google never loses an object's data while keeping its metadata, but here the data is a file
/// anyone can delete. An object whose file is gone is dropped, as if deleted: metadata reads,
/// listings and downloads then agree that it does not exist, and a client's refresh sees the loss
/// and writes the object again (where it would otherwise see the object, then fail every read).
fn live_object(
    c: &rusqlite::Connection,
    objects_dir: &std::path::Path,
    bucket: &str,
    object: &str,
    want_generation: Option<i64>,
    pre: &MetaPreconditions,
) -> ApiResult<(String, Value)> {
    let row: Option<(String, String, i64)> = c
        .query_row(
            "SELECT file, resource, generation FROM objects WHERE bucket = ?1 AND name = ?2",
            [bucket, object],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sql)?;
    match row {
        Some((file, _, _)) if !objects_dir.join(&file).exists() => {
            c.execute("DELETE FROM objects WHERE bucket = ?1 AND name = ?2", [bucket, object]).map_err(sql)?;
            Err(ApiError::not_found(format!("No such object: {bucket}/{object}")))
        }
        Some((file, res, g)) if want_generation.is_none_or(|w| w == g) => {
            let res: Value = serde_json::from_str(&res).unwrap_or(Value::Null);
            pre.check(g, &res)?;
            Ok((file, res))
        }
        Some(_) => Err(ApiError::not_found(format!(
            "No such object: {bucket}/{object}#{}",
            want_generation.unwrap_or_default()
        ))),
        None => Err(ApiError::not_found(format!("No such object: {bucket}/{object}"))),
    }
}

fn set_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = axum::http::HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
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

/// Generation and metageneration preconditions of a read (`objects.get` takes all four).
struct MetaPreconditions {
    generation: Preconditions,
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
}

impl MetaPreconditions {
    fn of(r: &Req) -> ApiResult<MetaPreconditions> {
        Ok(MetaPreconditions {
            generation: preconditions(r)?,
            if_metageneration_match: r.query_i64("ifMetagenerationMatch")?,
            if_metageneration_not_match: r.query_i64("ifMetagenerationNotMatch")?,
        })
    }

    fn check(&self, generation: i64, res: &Value) -> ApiResult<()> {
        let meta = res["metageneration"].as_str().and_then(|m| m.parse::<i64>().ok()).unwrap_or(1);
        let g = &self.generation;
        if g.if_generation_match.is_some_and(|w| w != generation)
            || g.if_generation_not_match.is_some_and(|w| w == generation)
            || self.if_metageneration_match.is_some_and(|w| w != meta)
            || self.if_metageneration_not_match.is_some_and(|w| w == meta)
        {
            return Err(ApiError::precondition("At least one of the pre-conditions you specified did not hold."));
        }
        Ok(())
    }
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

/// A multipart body is read whole; google-cloud-storage sends objects up to 8 MiB this way
/// (blob.py `_MAX_MULTIPART_SIZE`) and larger ones as resumable uploads.
const MAX_MULTIPART_BODY: usize = 64 << 20;

/// Checks an object resource sent with an upload and takes its name from it or from `?name=`.
fn upload_metadata(r: &Req, mut meta: Value) -> ApiResult<(Value, String)> {
    check_fields(&meta, OBJECT_FIELDS, "Object")?;
    if meta.get("kmsKeyName").is_some() {
        return Err(ApiError::bad_request(
            "Setting kmsKeyName in the object resource is not supported; use the kmsKeyName query parameter.",
        ));
    }
    if let Some(n) = r.query("name") {
        meta["name"] = json!(n);
    }
    let name = meta["name"].as_str().ok_or_else(|| ApiError::new(400, "required", "Required: name"))?.to_string();
    validate_object_name(&name).map_err(ApiError::bad_request)?;
    Ok((meta, name))
}

/// What an upload request says its data hashes to: the metadata's and `X-Goog-Hash`'s values.
fn expected_hashes(r: &Req, meta: &Value) -> ApiResult<Expected> {
    let mut expected = Expected::from_metadata(meta);
    if let Some(h) = r.header("x-goog-hash") {
        expected.add_header(h).map_err(ApiError::bad_request)?;
    }
    Ok(expected)
}

pub async fn upload(app: &App, r: &Req, body: Body) -> ApiResult<Response> {
    let seg = segments(&r.raw_path);
    let seg: Vec<&str> = seg.iter().skip(3).map(String::as_str).collect(); // after upload/storage/v1
    let ["b", bucket, "o"] = seg.as_slice() else {
        return Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Storage upload"));
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
            let expected = expected_hashes(r, &json!({}))?;
            let pre = preconditions(r)?;
            let principal = r.principal.clone();
            {
                let (b, n, p) = (bucket.clone(), name.clone(), principal.clone());
                app.store.call(move |c| require_object_permission(c, &p, &b, &n, "storage.objects.create")).await?;
            }
            let path = app.store.upload_path(&uuid::Uuid::new_v4().to_string());
            let mut hashes = Hashes::new();
            let size = stream_to_file(body, &path, false, Some(&mut hashes)).await?;
            finalize(app, r, &bucket, meta, pre, expected, Received { path: &path, known: Some((size, hashes)) }).await
        }
        ("POST", Some("multipart"), None) => {
            let bytes = axum::body::to_bytes(body, MAX_MULTIPART_BODY).await.map_err(|e| {
                ApiError::bad_request(format!(
                    "Cannot read the multipart body ({e}); objects over {MAX_MULTIPART_BODY} bytes take uploadType=resumable."
                ))
            })?;
            let part =
                parse_multipart(r.header("content-type").unwrap_or(""), &bytes).map_err(ApiError::bad_request)?;
            let (mut meta, name) = upload_metadata(r, part.metadata)?;
            if meta.get("contentType").is_none() {
                meta["contentType"] = json!(part.media_type.as_deref().unwrap_or("application/octet-stream"));
            }
            let expected = expected_hashes(r, &meta)?;
            let pre = preconditions(r)?;
            {
                let (b, p) = (bucket.clone(), r.principal.clone());
                app.store.call(move |c| require_object_permission(c, &p, &b, &name, "storage.objects.create")).await?;
            }
            let path = app.store.upload_path(&uuid::Uuid::new_v4().to_string());
            // The media is in memory: hash it here rather than read the file back.
            let mut hashes = Hashes::new();
            hashes.update(part.media);
            let size = part.media.len() as u64;
            std::fs::write(&path, part.media).map_err(|e| ApiError::internal(e.to_string()))?;
            finalize(app, r, &bucket, meta, pre, expected, Received { path: &path, known: Some((size, hashes)) }).await
        }
        ("POST", Some("resumable"), None) => {
            let bytes = axum::body::to_bytes(body, 1 << 20).await.map_err(|e| ApiError::bad_request(e.to_string()))?;
            let meta: Value = if bytes.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&bytes)
                    .map_err(|e| ApiError::bad_request(format!("Invalid JSON payload received. {e}")))?
            };
            let (mut meta, name) = upload_metadata(r, meta)?;
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
            // The session URI, on this local cloud as Google's is on its upload host.
            let location = format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={id}",
                r.base_url,
                crate::api::encode_segment(&bucket)
            );
            let mut resp = StatusCode::OK.into_response();
            resp.headers_mut().insert("location", location.parse().map_err(|_| ApiError::internal("bad location"))?);
            Ok(resp)
        }
        (_, Some(other), None) => {
            Err(ApiError::bad_request(format!("Invalid uploadType: {other} (one of media, multipart, resumable)")))
        }
        _ => Err(ApiError::new(400, "required", "Required parameter: uploadType")),
    }
}

/// Writes a request body to `path` as it arrives (appending when `append`), feeding it to
/// `hashes` if given; returns the bytes written.
async fn stream_to_file(
    body: Body,
    path: &std::path::Path,
    append: bool,
    mut hashes: Option<&mut Hashes>,
) -> ApiResult<u64> {
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
        // One frame (tens of KiB) written to a local file and hashed: short enough to run here
        // rather than on the blocking pool.
        f.write_all(&chunk).map_err(|e| ApiError::internal(e.to_string()))?;
        if let Some(h) = hashes.as_deref_mut() {
            h.update(&chunk);
        }
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
        // The running hashes go on only from where they stopped; otherwise the file is hashed at the end.
        let running = app.upload_hashes.lock().expect("upload hashes").remove(id);
        let mut running =
            running.filter(|(at, _)| *at == received).map(|(_, h)| h).or_else(|| (received == 0).then(Hashes::new));
        let n = stream_to_file(body, &path, true, running.as_mut()).await?;
        if n != len {
            // Drop what arrived: the session stays at its previous size.
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                let _ = f.set_len(received);
            }
            return Err(ApiError::bad_request(format!("Content-Range says {len} bytes but the body had {n}.")));
        }
        now_received = received + n;
        if let Some(h) = running {
            app.upload_hashes.lock().expect("upload hashes").insert(id.to_string(), (now_received, h));
        }
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
            let expected = expected_hashes(r, &meta)?;
            let known = app.upload_hashes.lock().expect("upload hashes").remove(id);
            let known = known.filter(|(at, _)| *at == now_received);
            let resp = finalize(app, r, bucket, meta, pre, expected, Received { path: &path, known }).await;
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

/// Size, CRC32C and MD5 of a file, in one streaming pass.
fn hash_file(path: &std::path::Path) -> std::io::Result<(u64, String, String)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hashes = Hashes::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hashes.update(&buf[..n]);
        size += n as u64;
    }
    let (crc, md5) = hashes.finish_b64();
    Ok((size, crc, md5))
}

/// An uploaded file, with its size and hashes when they were computed as it arrived (without
/// them it is read again).
struct Received<'a> {
    path: &'a std::path::Path,
    known: Option<(u64, Hashes)>,
}

/// Makes an uploaded file the new live generation of the object, checking the client's hashes
/// and the preconditions, the latter atomically with the swap.
async fn finalize(
    app: &App,
    r: &Req,
    bucket: &str,
    meta: Value,
    pre: Preconditions,
    expected: Expected,
    upload: Received<'_>,
) -> ApiResult<Response> {
    let Received { path, known } = upload;
    let (size, crc, md5) = match known {
        Some((size, hashes)) => {
            let (crc, md5) = hashes.finish_b64();
            (size, crc, md5)
        }
        None => {
            let p = path.to_path_buf();
            tokio::task::spawn_blocking(move || hash_file(&p))
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?
                .map_err(|e| ApiError::internal(e.to_string()))?
        }
    };
    if let Err(why) = expected.check(&crc, &md5) {
        let _ = std::fs::remove_file(path);
        return Err(ApiError::bad_request(why));
    }

    let file = uuid::Uuid::new_v4().simple().to_string();
    let dest = app.store.object_path(&file);
    std::fs::rename(path, &dest).map_err(|e| ApiError::internal(e.to_string()))?;
    let (bucket, principal) = (bucket.to_string(), r.principal.clone());
    let name = meta["name"].as_str().unwrap_or("").to_string();
    let store = app.store.clone();
    let result = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            require_object_permission(&tx, &principal, &bucket, &name, "storage.objects.create")?;
            let old: Option<(i64, String)> = tx
                .query_row(
                    "SELECT generation, file FROM objects WHERE bucket = ?1 AND name = ?2",
                    [&bucket, &name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let current = old.as_ref().map(|(g, _)| *g).unwrap_or(0);
            if pre.if_generation_match.is_some_and(|g| g != current)
                || pre.if_generation_not_match.is_some_and(|g| g == current)
            {
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
            let mut res = json!({
                "kind": "storage#object",
                "id": format!("{bucket}/{name}/{generation}"),
                "name": name,
                "bucket": bucket,
                "generation": generation.to_string(),
                "metageneration": "1",
                "contentType": meta["contentType"].as_str().unwrap_or("application/octet-stream"),
                "storageClass": "STANDARD",
                "size": size.to_string(),
                "md5Hash": md5,
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
            Ok(respond(r, res))
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
    fn byte_ranges_as_rfc_9110_reads_them() {
        use ByteRange::*;
        assert_eq!(parse_range(None, 10), Whole);
        assert_eq!(parse_range(Some("bytes=2-5"), 10), Part(2, 5));
        assert_eq!(parse_range(Some("bytes=2-"), 10), Part(2, 9));
        assert_eq!(parse_range(Some("bytes=4-100"), 10), Part(4, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Part(7, 9));
        assert_eq!(parse_range(Some("bytes=-30"), 10), Part(0, 9));
        for (header, size) in [("bytes=10-", 10), ("bytes=0-", 0), ("bytes=-0", 10), ("bytes=-5", 0)] {
            assert_eq!(parse_range(Some(header), size), Unsatisfiable, "{header} of {size}");
        }
        for ignored in ["bytes=5-2", "bytes=0-1,4-5", "items=0-1", "bytes=a-b", "bytes=-", "bytes=3"] {
            assert_eq!(parse_range(Some(ignored), 10), Whole, "{ignored}");
        }
    }

    /// The body google-resumable-media's `construct_multipart_request` writes.
    fn multipart_body(boundary: &str, meta: &str, media_type: &str, media: &[u8]) -> Vec<u8> {
        let mut b = format!(
            "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n{meta}\r\n--{boundary}\r\ncontent-type: {media_type}\r\n\r\n"
        )
        .into_bytes();
        b.extend_from_slice(media);
        b.extend_from_slice(format!("\r\n--{boundary}--").as_bytes());
        b
    }

    #[test]
    fn multipart_uploads_split_into_metadata_and_media() {
        let media = b"a,b\r\n--not-the-boundary\r\n1,2\r\n";
        let body = multipart_body("===1234==", r#"{"name": "x.csv", "crc32c": "AAAAAA=="}"#, "text/csv", media);
        let part = parse_multipart("multipart/related; boundary=\"===1234==\"", &body).unwrap();
        assert_eq!(part.metadata, json!({"name": "x.csv", "crc32c": "AAAAAA=="}));
        assert_eq!(part.media_type.as_deref(), Some("text/csv"));
        assert_eq!(part.media, media);
        let empty = multipart_body("b", "{}", "application/octet-stream", b"");
        assert_eq!(parse_multipart("multipart/related; boundary=b", &empty).unwrap().media, b"");

        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("application/json", body.clone(), "multipart/related"),
            ("multipart/related", body.clone(), "no boundary"),
            ("multipart/related; boundary=other", body.clone(), "no boundary line"),
            (
                "multipart/related; boundary=b",
                b"--b\r\ncontent-type: application/json\r\n\r\n{}\r\n--b--".to_vec(),
                "1 mime parts",
            ),
            ("multipart/related; boundary=b", multipart_body("b", "{}", "x", b"1")[..20].to_vec(), "not closed"),
            ("multipart/related; boundary=b", multipart_body("b", "{nope", "x", b"1"), "Invalid JSON"),
        ];
        for (content_type, body, says) in cases {
            let e = parse_multipart(content_type, &body).unwrap_err();
            assert!(e.contains(says), "{content_type}: {e}");
        }
    }

    #[test]
    fn links_point_at_the_local_cloud_that_answered() {
        let object = json!({"kind": "storage#object", "bucket": "b", "name": "runs/1/summary.csv", "generation": "7"});
        let list = with_links(json!({"kind": "storage#objects", "items": [object]}), "http://127.0.0.1:9");
        assert_eq!(list["items"][0]["selfLink"], "http://127.0.0.1:9/storage/v1/b/b/o/runs%2F1%2Fsummary.csv");
        assert_eq!(
            list["items"][0]["mediaLink"],
            "http://127.0.0.1:9/download/storage/v1/b/b/o/runs%2F1%2Fsummary.csv?generation=7&alt=media"
        );
        let bucket = with_links(json!({"kind": "storage#bucket", "name": "b"}), "http://localhost:8");
        assert_eq!(bucket["selfLink"], "http://localhost:8/storage/v1/b/b");
        assert_eq!(with_links(json!({"kind": "storage#policy"}), "http://x"), json!({"kind": "storage#policy"}));
    }

    #[test]
    fn upload_hashes_must_match_what_the_client_said() {
        let mut h = Hashes::new();
        h.update(b"hello ");
        h.update(b"world");
        let (crc, md5) = h.finish_b64();
        // `gsutil hash` of "hello world": crc32c yZRlqg==, md5 XrY7u+Ae7tCTyyK7j1rNww==.
        assert_eq!((crc.as_str(), md5.as_str()), ("yZRlqg==", "XrY7u+Ae7tCTyyK7j1rNww=="));

        assert!(Expected::default().check(&crc, &md5).is_ok());
        let mut e = Expected::from_metadata(&json!({"crc32c": crc, "md5Hash": md5}));
        assert!(e.check(&crc, &md5).is_ok());
        e.add_header(&format!("crc32c={crc},md5={md5}")).unwrap();
        assert!(e.add_header("crc32c=AAAAAA==").unwrap_err().contains("X-Goog-Hash says crc32c=AAAAAA=="));
        let bad = Expected { crc32c: Some("AAAAAA==".into()), md5: None };
        assert_eq!(
            bad.check(&crc, &md5).unwrap_err(),
            "Provided CRC32C \"AAAAAA==\" doesn't match calculated CRC32C \"yZRlqg==\"."
        );
        let bad = Expected { crc32c: None, md5: Some("x".into()) };
        assert!(bad.check(&crc, &md5).unwrap_err().starts_with("Provided MD5 hash \"x\""));
    }
}
