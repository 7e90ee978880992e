//! Cloud KMS v1 subset: key rings, symmetric crypto keys and their versions, encrypt/decrypt with
//! real AES-256-GCM, version destruction, and IAM on key rings and keys.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields, json_response, now_rfc3339};
use crate::server::{App, Req, segments};
use crate::store::sql;

/// Default destroy-scheduled duration: 30 days, as Google's default.
pub const DEFAULT_DESTROY_SCHEDULED: &str = "2592000s";
const MAX_PLAINTEXT: usize = 64 * 1024;
/// Local ciphertexts: magic, version number, nonce, then AES-256-GCM output.
const CIPHERTEXT_MAGIC: &[u8; 4] = b"DLK1";

pub fn valid_id(id: &str) -> bool {
    (1..=63).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub fn valid_location(l: &str) -> bool {
    !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Splits `name:verb` in the last path segment.
fn split_verb(seg: &str) -> (&str, Option<&str>) {
    match seg.split_once(':') {
        Some((a, v)) => (a, Some(v)),
        None => (seg, None),
    }
}

fn parse_b64(field: &str, v: &Value) -> ApiResult<Vec<u8>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => {
            B64.decode(s).map_err(|_| ApiError::bad_request(format!("Invalid value at '{field}': not base64.")))
        }
        _ => Err(ApiError::bad_request(format!("Invalid value at '{field}'."))),
    }
}

/// A CRC32C as KMS writes it: a `google.protobuf.Int64Value`, which JSON carries as a string.
fn crc32c_value(data: &[u8]) -> String {
    crc32c::crc32c(data).to_string()
}

/// KMS's end-to-end integrity check (https://cloud.google.com/kms/docs/data-integrity-guidelines):
/// when the request carries `<field>Crc32c`, the data must match it, and the answer says it was
/// verified (`verifiedPlaintextCrc32c`), which Google's samples require before trusting a result.
fn check_crc32c(body: &Value, field: &str, data: &[u8]) -> ApiResult<bool> {
    let key = format!("{field}Crc32c");
    let given = match &body[&key] {
        Value::Null => return Ok(false),
        Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    }
    .ok_or_else(|| ApiError::bad_request(format!("Invalid value at '{key}': expected an unsigned 32-bit CRC32C.")))?;
    if given != u64::from(crc32c::crc32c(data)) {
        return Err(ApiError::bad_request(format!(
            "The checksum in field {} did not match the data in field {}.",
            snake(&key),
            snake(field)
        )));
    }
    Ok(true)
}

fn snake(camel: &str) -> String {
    camel
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
        .collect()
}

/// The enum fields of the KMS messages the local cloud serves, with the numbers of the values it
/// serves (google/cloud/kms/v1/resources.proto; google-cloud-kms's `CryptoKey.CryptoKeyPurpose`,
/// `ProtectionLevel`, `CryptoKeyVersion.CryptoKeyVersionAlgorithm` and `CryptoKeyVersionState`
/// carry the same numbers). Google's REST front end reads an enum given as its number (proto3's
/// JSON mapping), and google-cloud-kms's REST transport writes them so
/// (`$alt=json;enum-encoding=int`).
const ENUMS: &[(&str, &[(&str, i64)])] = &[
    ("purpose", &[("CRYPTO_KEY_PURPOSE_UNSPECIFIED", 0), ("ENCRYPT_DECRYPT", 1)]),
    ("protectionLevel", &[("PROTECTION_LEVEL_UNSPECIFIED", 0), ("SOFTWARE", 1)]),
    ("algorithm", &[("CRYPTO_KEY_VERSION_ALGORITHM_UNSPECIFIED", 0), ("GOOGLE_SYMMETRIC_ENCRYPTION", 1)]),
    (
        "state",
        &[
            ("CRYPTO_KEY_VERSION_STATE_UNSPECIFIED", 0),
            ("ENABLED", 1),
            ("DISABLED", 2),
            ("DESTROYED", 3),
            ("DESTROY_SCHEDULED", 4),
        ],
    ),
];

fn enum_values(field: &str) -> Option<&'static [(&'static str, i64)]> {
    ENUMS.iter().find(|(f, _)| *f == field).map(|(_, values)| *values)
}

/// Rewrites enums a request gave as numbers to their names; a number the local cloud does not
/// serve is refused by name of its field. Label maps hold user strings and are left alone.
pub fn enums_from_numbers(v: &mut Value) -> ApiResult<()> {
    let Some(fields) = v.as_object_mut() else {
        if let Some(items) = v.as_array_mut() {
            items.iter_mut().try_for_each(enums_from_numbers)?;
        }
        return Ok(());
    };
    for (key, field) in fields.iter_mut() {
        if key == "labels" {
            continue;
        }
        match (enum_values(key), field.as_i64()) {
            (Some(values), Some(n)) => {
                let name = values.iter().find(|(_, num)| *num == n).map(|(name, _)| *name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid value at '{key}': enum number {n} is not served by the local cloud (it serves {}).",
                        values.iter().map(|(name, num)| format!("{name} = {num}")).collect::<Vec<_>>().join(", ")
                    ))
                })?;
                *field = json!(name);
            }
            _ => enums_from_numbers(field)?,
        }
    }
    Ok(())
}

/// An answer with its enums as numbers, for a client that asked for `enum-encoding=int`.
pub fn enums_to_numbers(v: Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.into_iter().map(enums_to_numbers).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(key, field)| {
                    let number = enum_values(&key)
                        .zip(field.as_str())
                        .and_then(|(values, name)| values.iter().find(|(n, _)| *n == name))
                        .map(|(_, num)| json!(num));
                    let field = match number {
                        Some(n) => n,
                        None if key == "labels" => field,
                        None => enums_to_numbers(field),
                    };
                    (key, field)
                })
                .collect(),
        ),
        other => other,
    }
}

fn denied(permission: &str, resource: &str) -> ApiError {
    ApiError::forbidden(format!("Permission '{permission}' denied on resource '{resource}' (or it may not exist)."))
}

/// Whether `principal` holds `permission` on `resource` through the project's, the key ring's or
/// (for keys) the key's policy.
fn allows(
    c: &Connection,
    principal: &crate::iam::Identity,
    project: &str,
    key_ring: &str,
    key: Option<&str>,
    permission: &str,
) -> ApiResult<bool> {
    let proj = crate::storage::project_policy(c, project)?.unwrap_or(Value::Null);
    if crate::iam::allows(&proj, principal, permission) {
        return Ok(true);
    }
    let kr: Option<String> = c
        .query_row("SELECT policy FROM key_rings WHERE name = ?1", [key_ring], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    if kr
        .and_then(|p| serde_json::from_str::<Value>(&p).ok())
        .is_some_and(|p| crate::iam::allows(&p, principal, permission))
    {
        return Ok(true);
    }
    if let Some(k) = key {
        let kp: Option<String> =
            c.query_row("SELECT policy FROM crypto_keys WHERE name = ?1", [k], |r| r.get(0)).optional().map_err(sql)?;
        if kp
            .and_then(|p| serde_json::from_str::<Value>(&p).ok())
            .is_some_and(|p| crate::iam::allows(&p, principal, permission))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

fn require(c: &Connection, r: &Ctx, key: Option<&str>, permission: &str, resource: &str) -> ApiResult<()> {
    if allows(c, &r.principal, &r.project, &r.key_ring, key, permission)? {
        Ok(())
    } else {
        Err(denied(permission, resource))
    }
}

struct Ctx {
    principal: crate::iam::Identity,
    project: String,
    key_ring: String,
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

fn load_version(c: &Connection, name: &str) -> ApiResult<Option<(Value, Vec<u8>, String)>> {
    let row: Option<(String, Vec<u8>, String, Option<String>)> = c
        .query_row("SELECT state, material, create_time, destroy_time FROM key_versions WHERE name = ?1", [name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()
        .map_err(sql)?;
    Ok(row.map(|(state, material, ct, dt)| (version_json(name, &state, &ct, dt.as_deref()), material, state)))
}

fn key_json(c: &Connection, name: &str) -> ApiResult<Option<Value>> {
    let res: Option<String> = c
        .query_row("SELECT resource FROM crypto_keys WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    let Some(res) = res else { return Ok(None) };
    let mut v: Value = serde_json::from_str(&res).unwrap_or(json!({}));
    if let Some((pv, _, _)) = load_version(c, &format!("{name}/cryptoKeyVersions/1"))? {
        v["primary"] = pv;
    }
    Ok(Some(v))
}

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let unserved = || ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Cloud KMS");
    let segs = segments(&r.raw_path);
    let segs: Vec<String> = segs.into_iter().skip(2).collect(); // after cloudkms/v1
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    if s.len() < 5 || s[0] != "projects" || s[2] != "locations" || s[4].split(':').next() != Some("keyRings") {
        return Err(unserved());
    }
    let (project, location) = (s[1].to_string(), s[3].to_string());
    if !valid_location(&location) {
        return Err(ApiError::bad_request(format!("Invalid location '{location}'.")));
    }
    let parent = format!("projects/{project}/locations/{location}");
    let method = r.method.as_str();
    let body = body.unwrap_or(json!({}));
    let principal = r.principal.clone();
    let store = app.store.clone();
    let q = |n: &str| r.query(n).map(str::to_string);

    // keyRings collection
    if s.len() == 5 {
        let ctx = Ctx { principal, project: project.clone(), key_ring: String::new() };
        return match method {
            "POST" => {
                check_fields(&body, &[], "KeyRing")?;
                let id = q("keyRingId").ok_or_else(|| ApiError::bad_request("keyRingId is required."))?;
                if !valid_id(&id) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid key ring id '{id}': must match [a-zA-Z0-9_-]{{1,63}}."
                    )));
                }
                let name = format!("{parent}/keyRings/{id}");
                let v = store
                    .call(move |c| {
                        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
                        require(&tx, &ctx, None, "cloudkms.keyRings.create", &parent)?;
                        let n: i64 = tx.query_row("SELECT COUNT(*) FROM key_rings WHERE name = ?1", [&name], |r| r.get(0)).map_err(sql)?;
                        if n > 0 {
                            return Err(ApiError::conflict(format!("KeyRing {name} already exists.")));
                        }
                        let res = json!({"name": name, "createTime": now_rfc3339()});
                        tx.execute(
                            "INSERT INTO key_rings (name, project, resource, policy, policy_etag) VALUES (?1, ?2, ?3, '{}', 1)",
                            params![name, ctx.project, res.to_string()],
                        )
                        .map_err(sql)?;
                        tx.commit().map_err(sql)?;
                        Ok(res)
                    })
                    .await?;
                Ok(json_response(v))
            }
            "GET" => {
                let v = store
                    .call(move |c| {
                        require(c, &ctx, None, "cloudkms.keyRings.list", &parent)?;
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
                    .await?;
                Ok(json_response(v))
            }
            _ => Err(unserved()),
        };
    }

    let (ring_id, ring_verb) = split_verb(s[5]);
    let key_ring = format!("{parent}/keyRings/{ring_id}");
    let ctx = Ctx { principal, project, key_ring: key_ring.clone() };
    let kr_for_check = key_ring.clone();
    let ring_exists = move |c: &Connection| -> ApiResult<bool> {
        Ok(c.query_row("SELECT COUNT(*) FROM key_rings WHERE name = ?1", [&kr_for_check], |r| r.get::<_, i64>(0))
            .map_err(sql)?
            > 0)
    };

    if s.len() == 6 {
        let kr = key_ring.clone();
        return match (method, ring_verb) {
            ("GET", None) => {
                let v = store
                    .call(move |c| {
                        require(c, &ctx, None, "cloudkms.keyRings.get", &kr)?;
                        let res: Option<String> = c
                            .query_row("SELECT resource FROM key_rings WHERE name = ?1", [&kr], |r| r.get(0))
                            .optional()
                            .map_err(sql)?;
                        res.and_then(|s| serde_json::from_str(&s).ok())
                            .ok_or_else(|| ApiError::not_found(format!("KeyRing {kr} not found.")))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("GET" | "POST", Some("getIamPolicy")) => {
                let v = store.call(move |c| get_policy(c, &ctx, "key_rings", &kr, None, ring_exists(c)?)).await?;
                Ok(json_response(v))
            }
            ("POST", Some("setIamPolicy")) => {
                let v = store.call(move |c| set_policy(c, &ctx, "key_rings", &kr, None, body, ring_exists(c)?)).await?;
                Ok(json_response(v))
            }
            _ => Err(unserved()),
        };
    }

    if s[6].split(':').next() != Some("cryptoKeys") {
        return Err(unserved());
    }

    // cryptoKeys collection
    if s.len() == 7 {
        let kr = key_ring.clone();
        return match method {
            "POST" => {
                let id = q("cryptoKeyId").ok_or_else(|| ApiError::bad_request("cryptoKeyId is required."))?;
                if !valid_id(&id) {
                    return Err(ApiError::bad_request(format!(
                        "Invalid crypto key id '{id}': must match [a-zA-Z0-9_-]{{1,63}}."
                    )));
                }
                let skip_version = q("skipInitialVersionCreation").as_deref() == Some("true");
                check_fields(
                    &body,
                    &[
                        "purpose",
                        "versionTemplate",
                        "labels",
                        "rotationPeriod",
                        "nextRotationTime",
                        "destroyScheduledDuration",
                        "importOnly",
                        "cryptoKeyBackend",
                        "keyAccessJustificationsPolicy",
                    ],
                    "CryptoKey",
                )?;
                let purpose = body["purpose"].as_str().unwrap_or("");
                if purpose != "ENCRYPT_DECRYPT" {
                    return Err(ApiError::bad_request(format!(
                        "Unsupported purpose {purpose:?}: the local cloud supports ENCRYPT_DECRYPT keys (GOOGLE_SYMMETRIC_ENCRYPTION)."
                    )));
                }
                if let Some(a) = body.pointer("/versionTemplate/algorithm").and_then(Value::as_str)
                    && a != "GOOGLE_SYMMETRIC_ENCRYPTION"
                {
                    return Err(ApiError::bad_request(format!(
                        "Algorithm {a} is not valid for purpose ENCRYPT_DECRYPT."
                    )));
                }
                if body.get("rotationPeriod").is_some() && body.get("nextRotationTime").is_none() {
                    return Err(ApiError::bad_request("nextRotationTime must be set when rotationPeriod is set."));
                }
                let name = format!("{kr}/cryptoKeys/{id}");
                let v = store
                    .call(move |c| {
                        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
                        require(&tx, &ctx, None, "cloudkms.cryptoKeys.create", &kr)?;
                        if !ring_exists(&tx)? {
                            return Err(ApiError::not_found(format!("KeyRing {kr} not found.")));
                        }
                        let n: i64 = tx.query_row("SELECT COUNT(*) FROM crypto_keys WHERE name = ?1", [&name], |r| r.get(0)).map_err(sql)?;
                        if n > 0 {
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
                                "INSERT INTO key_versions (name, crypto_key, number, material, state, create_time) VALUES (?1, ?2, 1, ?3, 'ENABLED', ?4)",
                                params![format!("{name}/cryptoKeyVersions/1"), name, material.to_vec(), now],
                            )
                            .map_err(sql)?;
                        }
                        tx.commit().map_err(sql)?;
                        key_json(c, &name)?.ok_or_else(|| ApiError::internal("key vanished"))
                    })
                    .await?;
                Ok(json_response(v))
            }
            "GET" => {
                let v = store
                    .call(move |c| {
                        require(c, &ctx, None, "cloudkms.cryptoKeys.list", &kr)?;
                        let names: Vec<String> = {
                            let mut st = c
                                .prepare("SELECT name FROM crypto_keys WHERE key_ring = ?1 ORDER BY name")
                                .map_err(sql)?;
                            st.query_map([&kr], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect()
                        };
                        let mut items = Vec::new();
                        for n in names {
                            items.extend(key_json(c, &n)?);
                        }
                        let n = items.len();
                        Ok(json!({"cryptoKeys": items, "totalSize": n}))
                    })
                    .await?;
                Ok(json_response(v))
            }
            _ => Err(unserved()),
        };
    }

    let (key_id, key_verb) = split_verb(s[7]);
    let key = format!("{key_ring}/cryptoKeys/{key_id}");

    if s.len() == 8 {
        let k = key.clone();
        return match (method, key_verb) {
            ("GET", None) => {
                let v = store
                    .call(move |c| {
                        require(c, &ctx, Some(&k), "cloudkms.cryptoKeys.get", &k)?;
                        key_json(c, &k)?.ok_or_else(|| ApiError::not_found(format!("CryptoKey {k} not found.")))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("PATCH", None) => {
                let mask = q("updateMask").ok_or_else(|| ApiError::bad_request("updateMask is required."))?;
                for m in mask.split(',') {
                    if !["labels"].contains(&m) {
                        return Err(ApiError::bad_request(format!(
                            "The local cloud cannot update '{m}'; supported: labels."
                        )));
                    }
                }
                let v = store
                    .call(move |c| {
                        require(c, &ctx, Some(&k), "cloudkms.cryptoKeys.update", &k)?;
                        let mut res =
                            key_json(c, &k)?.ok_or_else(|| ApiError::not_found(format!("CryptoKey {k} not found.")))?;
                        res["labels"] = body.get("labels").cloned().unwrap_or(json!({}));
                        if let Some(o) = res.as_object_mut() {
                            o.remove("primary");
                        }
                        c.execute("UPDATE crypto_keys SET resource = ?1 WHERE name = ?2", params![res.to_string(), k])
                            .map_err(sql)?;
                        key_json(c, &k)?.ok_or_else(|| ApiError::internal("key vanished"))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("POST", Some("encrypt")) => {
                check_fields(
                    &body,
                    &[
                        "plaintext",
                        "additionalAuthenticatedData",
                        "plaintextCrc32c",
                        "additionalAuthenticatedDataCrc32c",
                    ],
                    "EncryptRequest",
                )?;
                let plaintext = parse_b64("plaintext", &body["plaintext"])?;
                let aad = parse_b64("additionalAuthenticatedData", &body["additionalAuthenticatedData"])?;
                let verified_plaintext = check_crc32c(&body, "plaintext", &plaintext)?;
                let verified_aad = check_crc32c(&body, "additionalAuthenticatedData", &aad)?;
                if plaintext.len() > MAX_PLAINTEXT {
                    return Err(ApiError::bad_request("The plaintext exceeds the 64 KiB limit."));
                }
                let v = store
                    .call(move |c| {
                        require(c, &ctx, Some(&k), "cloudkms.cryptoKeyVersions.useToEncrypt", &k)?;
                        let vname = format!("{k}/cryptoKeyVersions/1");
                        let (_, material, state) = load_version(c, &vname)?.ok_or_else(|| {
                            if key_json(c, &k).ok().flatten().is_some() {
                                ApiError::failed_precondition(format!("{k} has no primary version."))
                            } else {
                                ApiError::not_found(format!("CryptoKey {k} not found."))
                            }
                        })?;
                        if state != "ENABLED" {
                            return Err(ApiError::failed_precondition(format!(
                                "{vname} is not enabled, current state is: {state}."
                            )));
                        }
                        let ct = seal(&material, 1, &plaintext, &aad)?;
                        Ok(json!({"name": vname, "ciphertext": B64.encode(&ct), "ciphertextCrc32c": crc32c_value(&ct),
                                  "protectionLevel": "SOFTWARE", "verifiedPlaintextCrc32c": verified_plaintext,
                                  "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad}))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("POST", Some("decrypt")) => {
                check_fields(
                    &body,
                    &[
                        "ciphertext",
                        "additionalAuthenticatedData",
                        "ciphertextCrc32c",
                        "additionalAuthenticatedDataCrc32c",
                    ],
                    "DecryptRequest",
                )?;
                let ct = parse_b64("ciphertext", &body["ciphertext"])?;
                let aad = parse_b64("additionalAuthenticatedData", &body["additionalAuthenticatedData"])?;
                check_crc32c(&body, "ciphertext", &ct)?;
                check_crc32c(&body, "additionalAuthenticatedData", &aad)?;
                let v = store
                    .call(move |c| {
                        require(c, &ctx, Some(&k), "cloudkms.cryptoKeyVersions.useToDecrypt", &k)?;
                        let bad = || ApiError::bad_request("Decryption failed: the ciphertext is invalid.");
                        if ct.len() < 4 + 4 + 12 + 16 || &ct[..4] != CIPHERTEXT_MAGIC {
                            return Err(bad());
                        }
                        let number = u32::from_be_bytes(ct[4..8].try_into().map_err(|_| bad())?);
                        let vname = format!("{k}/cryptoKeyVersions/{number}");
                        let (_, material, state) = load_version(c, &vname)?.ok_or_else(bad)?;
                        if state != "ENABLED" {
                            return Err(ApiError::failed_precondition(format!(
                                "The request cannot be fulfilled: {vname} is not enabled, current state is: {state}."
                            )));
                        }
                        let plain = open(&material, number, &ct, &aad).ok_or_else(bad)?;
                        Ok(json!({"plaintext": B64.encode(&plain), "plaintextCrc32c": crc32c_value(&plain),
                                  "usedPrimary": number == 1, "protectionLevel": "SOFTWARE"}))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("GET" | "POST", Some("getIamPolicy")) => {
                let v = store
                    .call(move |c| {
                        let exists = key_json(c, &k)?.is_some();
                        get_policy(c, &ctx, "crypto_keys", &k, Some(&k), exists)
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("POST", Some("setIamPolicy")) => {
                let v = store
                    .call(move |c| {
                        let exists = key_json(c, &k)?.is_some();
                        set_policy(c, &ctx, "crypto_keys", &k, Some(&k), body, exists)
                    })
                    .await?;
                Ok(json_response(v))
            }
            _ => Err(unserved()),
        };
    }

    if s[8].split(':').next() != Some("cryptoKeyVersions") {
        return Err(unserved());
    }
    if s.len() == 9 && method == "GET" {
        let k = key.clone();
        let v = store
            .call(move |c| {
                require(c, &ctx, Some(&k), "cloudkms.cryptoKeyVersions.list", &k)?;
                if key_json(c, &k)?.is_none() {
                    return Err(ApiError::not_found(format!("CryptoKey {k} not found.")));
                }
                let names: Vec<String> = {
                    let mut st = c
                        .prepare("SELECT name FROM key_versions WHERE crypto_key = ?1 ORDER BY number")
                        .map_err(sql)?;
                    st.query_map([&k], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect()
                };
                let mut items = Vec::new();
                for n in names {
                    items.extend(load_version(c, &n)?.map(|(v, _, _)| v));
                }
                let n = items.len();
                Ok(json!({"cryptoKeyVersions": items, "totalSize": n}))
            })
            .await?;
        return Ok(json_response(v));
    }
    if s.len() == 10 {
        let (vid, verb) = split_verb(s[9]);
        let vname = format!("{key}/cryptoKeyVersions/{vid}");
        let k = key.clone();
        return match (method, verb) {
            ("GET", None) => {
                let v = store
                    .call(move |c| {
                        require(c, &ctx, Some(&k), "cloudkms.cryptoKeyVersions.get", &vname)?;
                        load_version(c, &vname)?
                            .map(|(v, _, _)| v)
                            .ok_or_else(|| ApiError::not_found(format!("CryptoKeyVersion {vname} not found.")))
                    })
                    .await?;
                Ok(json_response(v))
            }
            ("POST", Some(v @ ("destroy" | "restore"))) => {
                let destroy = v == "destroy";
                let v = store
                    .call(move |c| {
                        let perm = if destroy {
                            "cloudkms.cryptoKeyVersions.destroy"
                        } else {
                            "cloudkms.cryptoKeyVersions.restore"
                        };
                        require(c, &ctx, Some(&k), perm, &vname)?;
                        let (_, _, state) = load_version(c, &vname)?
                            .ok_or_else(|| ApiError::not_found(format!("CryptoKeyVersion {vname} not found.")))?;
                        let key = key_json(c, &k)?.unwrap_or(json!({}));
                        let (new_state, destroy_time) = if destroy {
                            if !["ENABLED", "DISABLED"].contains(&state.as_str()) {
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
                            ("DESTROY_SCHEDULED", Some(at))
                        } else {
                            if state != "DESTROY_SCHEDULED" {
                                return Err(ApiError::failed_precondition(format!(
                                    "{vname} is not scheduled for destruction (it is {state})."
                                )));
                            }
                            ("DISABLED", None)
                        };
                        c.execute(
                            "UPDATE key_versions SET state = ?1, destroy_time = ?2 WHERE name = ?3",
                            params![new_state, destroy_time, vname],
                        )
                        .map_err(sql)?;
                        load_version(c, &vname)?
                            .map(|(v, _, _)| v)
                            .ok_or_else(|| ApiError::internal("version vanished"))
                    })
                    .await?;
                Ok(json_response(v))
            }
            _ => Err(unserved()),
        };
    }
    Err(unserved())
}

fn get_policy(c: &Connection, ctx: &Ctx, table: &str, name: &str, key: Option<&str>, exists: bool) -> ApiResult<Value> {
    require(
        c,
        ctx,
        key,
        if key.is_some() { "cloudkms.cryptoKeys.getIamPolicy" } else { "cloudkms.keyRings.getIamPolicy" },
        name,
    )?;
    if !exists {
        return Err(ApiError::not_found(format!("{name} not found.")));
    }
    crate::aip_iam::read(c, table, name)
}

fn set_policy(
    c: &mut Connection,
    ctx: &Ctx,
    table: &str,
    name: &str,
    key: Option<&str>,
    body: Value,
    exists: bool,
) -> ApiResult<Value> {
    let policy = crate::aip_iam::requested_policy(&body, &["policy", "updateMask"])?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
    require(
        &tx,
        ctx,
        key,
        if key.is_some() { "cloudkms.cryptoKeys.setIamPolicy" } else { "cloudkms.keyRings.setIamPolicy" },
        name,
    )?;
    if !exists {
        return Err(ApiError::not_found(format!("{name} not found.")));
    }
    // KMS reports a stale etag as ABORTED (409): the caller should re-read and retry.
    let stale = ApiError::new(
        409,
        "aborted",
        "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff.",
    );
    let stored = crate::aip_iam::write(&tx, table, name, &policy, stale)?;
    tx.commit().map_err(sql)?;
    Ok(stored)
}

fn gcm(material: &[u8]) -> ApiResult<LessSafeKey> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).map_err(|_| ApiError::internal("bad key material"))?))
}

pub fn seal(material: &[u8], number: u32, plaintext: &[u8], aad: &[u8]) -> ApiResult<Vec<u8>> {
    let mut nonce = [0u8; 12];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| ApiError::internal("no randomness"))?;
    let mut out = Vec::with_capacity(4 + 4 + 12 + plaintext.len() + 16);
    out.extend_from_slice(CIPHERTEXT_MAGIC);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&nonce);
    let mut buf = plaintext.to_vec();
    gcm(material)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf)
        .map_err(|_| ApiError::internal("seal failed"))?;
    out.extend_from_slice(&buf);
    Ok(out)
}

pub fn open(material: &[u8], number: u32, ct: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if ct.len() < 20 + 16 || ct[4..8] != number.to_be_bytes() {
        return None;
    }
    let nonce: [u8; 12] = ct[8..20].try_into().ok()?;
    let mut buf = ct[20..].to_vec();
    let key = gcm(material).ok()?;
    let plain = key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buf).ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphertexts_round_trip_and_bind_the_aad() {
        let m = [7u8; 32];
        let ct = seal(&m, 1, b"data key", b"aad").unwrap();
        assert_eq!(open(&m, 1, &ct, b"aad").unwrap(), b"data key");
        assert!(open(&m, 1, &ct, b"other").is_none());
        assert!(open(&[8u8; 32], 1, &ct, b"aad").is_none());
    }

    #[test]
    fn enums_travel_as_numbers_both_ways() {
        let mut req = json!({"purpose": 1, "versionTemplate": {"algorithm": 1, "protectionLevel": 1},
                             "labels": {"purpose": "x"}});
        enums_from_numbers(&mut req).unwrap();
        assert_eq!(
            req,
            json!({"purpose": "ENCRYPT_DECRYPT", "labels": {"purpose": "x"},
                   "versionTemplate": {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "protectionLevel": "SOFTWARE"}})
        );
        let mut named = json!({"purpose": "ENCRYPT_DECRYPT"});
        enums_from_numbers(&mut named).unwrap();
        assert_eq!(named, json!({"purpose": "ENCRYPT_DECRYPT"}));
        let e = enums_from_numbers(&mut json!({"purpose": 5})).unwrap_err();
        assert!(e.message.contains("'purpose'") && e.message.contains("ENCRYPT_DECRYPT = 1"), "{}", e.message);

        let answer = json!({"cryptoKeyVersions": [{"state": "DESTROY_SCHEDULED", "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
                                                   "name": "n"}], "labels": {"state": "ENABLED"}});
        assert_eq!(
            enums_to_numbers(answer),
            json!({"cryptoKeyVersions": [{"state": 4, "algorithm": 1, "name": "n"}], "labels": {"state": "ENABLED"}})
        );
    }

    #[test]
    fn crc32c_fields_are_checked_when_given() {
        assert!(!check_crc32c(&json!({}), "plaintext", b"x").unwrap());
        let crc = crc32c::crc32c(b"data");
        assert!(check_crc32c(&json!({"plaintextCrc32c": crc.to_string()}), "plaintext", b"data").unwrap());
        assert!(check_crc32c(&json!({"plaintextCrc32c": crc}), "plaintext", b"data").unwrap());
        let e = check_crc32c(&json!({"ciphertextCrc32c": "1"}), "ciphertext", b"data").unwrap_err();
        assert_eq!(e.message, "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.");
        assert!(check_crc32c(&json!({"plaintextCrc32c": "x"}), "plaintext", b"data").is_err());
    }

    #[test]
    fn ids_and_locations() {
        assert!(valid_id("dcr-patients_1"));
        assert!(!valid_id("has space"));
        assert!(!valid_id(&"a".repeat(64)));
        assert!(valid_location("europe-west1"));
        assert!(!valid_location("Global"));
    }
}
