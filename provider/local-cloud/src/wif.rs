//! IAM v1 workload identity federation: pools and OIDC providers, with Google's id rules, 30-day
//! soft delete (`state: DELETED`, 409 on re-creating the id, `:undelete`), `updateMask` patches and
//! long-running operations.
//!
//! Every mutation answers with an operation that is not yet done; the result is there on the first
//! poll. The work itself is finished before the answer, so a client that polls (as it must on
//! Google Cloud) sees the same sequence, and its polling code runs on every local apply.

use axum::response::Response;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields, json_response, unix_now};
use crate::api::{Req, segments};
use crate::app::App;
use crate::iam::Identity;
use crate::store::sql;

/// How long a deleted pool or provider can be undeleted, and blocks its id (30 days).
pub const SOFT_DELETE_SECS: i64 = 30 * 86_400;
/// Fields Google sets; a body may carry them back (as read), and they are ignored.
const OUTPUT_ONLY_FIELDS: &[&str] = &["name", "state", "expireTime"];
const OIDC_FIELDS: &[&str] = &["issuerUri", "allowedAudiences", "jwksJson", "discoveryUri"];
const MAX_AUDIENCES: usize = 10;
const MAX_AUDIENCE_CHARS: usize = 256;

// ---------------------------------------------------------------------------------------------
// rules (pure)

/// Pool and provider ids: 4 to 32 characters of `[a-z0-9-]`; the prefix `gcp-` is Google's.
pub fn validate_id(kind: &str, id: &str) -> Result<(), String> {
    if !(4..=32).contains(&id.len()) || !id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
        return Err(format!("Invalid {kind} id '{id}': it must be 4 to 32 characters of [a-z0-9-]."));
    }
    if id.starts_with("gcp-") {
        return Err(format!("Invalid {kind} id '{id}': the prefix 'gcp-' is reserved for use by Google."));
    }
    Ok(())
}

fn optional_string(body: &Value, field: &str, max: usize, what: &str) -> ApiResult<Option<String>> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() <= max => Ok(Some(s.clone())),
        Value::String(_) => Err(ApiError::bad_request(format!("{what}.{field} must be at most {max} characters."))),
        _ => Err(ApiError::bad_request(format!("Invalid value at '{what}.{field}': expected a string."))),
    }
}

fn optional_bool(body: &Value, field: &str, what: &str) -> ApiResult<Option<bool>> {
    match &body[field] {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        _ => Err(ApiError::bad_request(format!("Invalid value at '{what}.{field}': expected a boolean."))),
    }
}

/// The settable fields of a pool, from a create or patch body (`fields`: the ones to take).
fn pool_settings(body: &Value, fields: &[&str], into: &mut Value) -> ApiResult<()> {
    for f in fields {
        match *f {
            "displayName" => {
                set_or_remove(into, f, optional_string(body, f, 32, "WorkloadIdentityPool")?.map(Value::from))
            }
            "description" => {
                set_or_remove(into, f, optional_string(body, f, 256, "WorkloadIdentityPool")?.map(Value::from))
            }
            "disabled" => {
                set_or_remove(into, f, optional_bool(body, f, "WorkloadIdentityPool")?.filter(|d| *d).map(Value::from))
            }
            "mode" => match body["mode"].as_str() {
                None | Some("MODE_UNSPECIFIED" | "FEDERATION_ONLY") => {}
                Some(m) => {
                    return Err(ApiError::bad_request(format!(
                        "Pool mode {m} is not supported by the local cloud; use FEDERATION_ONLY."
                    )));
                }
            },
            other => return Err(ApiError::bad_request(format!("The field '{other}' cannot be updated."))),
        }
    }
    Ok(())
}

fn set_or_remove(into: &mut Value, field: &str, v: Option<Value>) {
    match v {
        Some(v) => into[field] = v,
        None => {
            if let Some(o) = into.as_object_mut() {
                o.remove(field);
            }
        }
    }
}

fn check_oidc(oidc: &Value) -> ApiResult<()> {
    check_fields(oidc, OIDC_FIELDS, "Oidc")?;
    let issuer = oidc["issuerUri"].as_str().unwrap_or("");
    if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
        return Err(ApiError::bad_request("oidc.issuerUri is required and must be an https URL."));
    }
    if let Some(a) = oidc.get("allowedAudiences") {
        let list = a.as_array().ok_or_else(|| ApiError::bad_request("oidc.allowedAudiences must be a list."))?;
        if list.len() > MAX_AUDIENCES {
            return Err(ApiError::bad_request(format!(
                "oidc.allowedAudiences has {} entries; at most {MAX_AUDIENCES} are allowed.",
                list.len()
            )));
        }
        for aud in list {
            let s = aud.as_str().ok_or_else(|| ApiError::bad_request("oidc.allowedAudiences holds strings."))?;
            if s.is_empty() || s.chars().count() > MAX_AUDIENCE_CHARS {
                return Err(ApiError::bad_request(format!(
                    "Each of oidc.allowedAudiences must be 1 to {MAX_AUDIENCE_CHARS} characters."
                )));
            }
        }
    }
    if let Some(j) = oidc["jwksJson"].as_str() {
        serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(j)
            .map_err(|e| ApiError::bad_request(format!("oidc.jwksJson is not a JWK set: {e}")))?;
    }
    Ok(())
}

/// Checks a whole provider (after a create or a patch): OIDC only, mapping and condition within
/// Google's limits and valid CEL.
pub fn check_provider(p: &Value) -> ApiResult<()> {
    for other in ["aws", "saml", "x509"] {
        if p.get(other).is_some() {
            return Err(ApiError::bad_request(format!(
                "The local cloud supports OIDC workload identity providers only, not {other}."
            )));
        }
    }
    let oidc = p.get("oidc").ok_or_else(|| ApiError::bad_request("The provider needs an oidc block."))?;
    check_oidc(oidc)?;
    let mapping: std::collections::BTreeMap<String, String> = match p.get("attributeMapping") {
        None | Some(Value::Null) => Default::default(),
        Some(m) => serde_json::from_value(m.clone())
            .map_err(|_| ApiError::bad_request("attributeMapping must map strings to strings."))?,
    };
    dcr_attestation::cel::check_mapping(&mapping).map_err(ApiError::bad_request)?;
    if let Some(c) = p.get("attributeCondition").filter(|c| !c.is_null()) {
        let c = c.as_str().ok_or_else(|| ApiError::bad_request("attributeCondition must be a string."))?;
        dcr_attestation::cel::check_condition(c).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

fn provider_settings(body: &Value, fields: &[&str], into: &mut Value) -> ApiResult<()> {
    let what = "WorkloadIdentityPoolProvider";
    for f in fields {
        match *f {
            "displayName" => set_or_remove(into, f, optional_string(body, f, 32, what)?.map(Value::from)),
            "description" => set_or_remove(into, f, optional_string(body, f, 256, what)?.map(Value::from)),
            "disabled" => set_or_remove(into, f, optional_bool(body, f, what)?.filter(|d| *d).map(Value::from)),
            "attributeCondition" => set_or_remove(
                into,
                f,
                optional_string(body, f, usize::MAX, what)?.filter(|c| !c.is_empty()).map(Value::from),
            ),
            "attributeMapping" | "oidc" | "aws" | "saml" | "x509" => {
                set_or_remove(into, f, body.get(*f).filter(|v| !v.is_null()).cloned())
            }
            "oidc.issuerUri" | "oidc.allowedAudiences" | "oidc.jwksJson" => {
                let sub = &f["oidc.".len()..];
                if !into["oidc"].is_object() {
                    into["oidc"] = json!({});
                }
                set_or_remove(&mut into["oidc"], sub, body["oidc"].get(sub).filter(|v| !v.is_null()).cloned());
            }
            other => return Err(ApiError::bad_request(format!("The field '{other}' cannot be updated."))),
        }
    }
    Ok(())
}

/// Splits an `updateMask` and checks it names only `allowed` fields. A field mask path may be
/// written in the proto's snake_case or in JSON's lowerCamelCase (the FieldMask JSON mapping,
/// https://protobuf.dev/reference/protobuf/google.protobuf/#field-mask; terraform-provider-google
/// sends `oidc.allowed_audiences`): paths are returned in lowerCamelCase.
fn update_mask(mask: Option<&str>, allowed: &[&str]) -> ApiResult<Vec<String>> {
    let mask = mask.filter(|m| !m.is_empty()).ok_or_else(|| ApiError::bad_request("updateMask is required."))?;
    let fields: Vec<String> = mask.split(',').map(|f| crate::api::lower_camel(f.trim())).collect();
    if let Some(bad) = fields.iter().find(|f| !allowed.contains(&f.as_str())) {
        return Err(ApiError::bad_request(format!(
            "Invalid updateMask: '{bad}' cannot be updated; updatable fields: {}.",
            allowed.join(", ")
        )));
    }
    Ok(fields)
}

// ---------------------------------------------------------------------------------------------
// storage

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Forgets pools and providers whose 30 days of soft deletion are over: their ids are free again.
fn purge_expired(c: &Connection) -> ApiResult<()> {
    let now = unix_now();
    c.execute("DELETE FROM wif_providers WHERE expire IS NOT NULL AND expire < ?1", [now]).map_err(sql)?;
    c.execute("DELETE FROM wif_providers WHERE pool IN (SELECT name FROM wif_pools WHERE expire < ?1)", [now])
        .map_err(sql)?;
    c.execute("DELETE FROM wif_pools WHERE expire IS NOT NULL AND expire < ?1", [now]).map_err(sql)?;
    Ok(())
}

fn load(c: &Connection, table: &str, name: &str) -> ApiResult<Option<Value>> {
    let r: Option<String> = c
        .query_row(&format!("SELECT resource FROM {table} WHERE name = ?1"), [name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(r.and_then(|s| serde_json::from_str(&s).ok()))
}

fn save(c: &Connection, table: &str, name: &str, v: &Value) -> ApiResult<()> {
    let expire = (v["state"] == "DELETED").then(|| unix_now() + SOFT_DELETE_SECS);
    c.execute(
        &format!("UPDATE {table} SET resource = ?1, expire = ?2 WHERE name = ?3"),
        params![v.to_string(), expire, name],
    )
    .map_err(sql)?;
    Ok(())
}

fn is_deleted(v: &Value) -> bool {
    v["state"] == "DELETED"
}

fn mark_deleted(v: &mut Value) {
    v["state"] = json!("DELETED");
    v["expireTime"] = json!(rfc3339(unix_now() + SOFT_DELETE_SECS));
}

fn mark_active(v: &mut Value) {
    v["state"] = json!("ACTIVE");
    if let Some(o) = v.as_object_mut() {
        o.remove("expireTime");
    }
}

/// Records a finished operation on `resource` and returns what the mutation answers: the
/// operation, not yet marked done. Once done it carries no `response`: Google's identity pool
/// operations leave it empty (gcloud, `command_lib/iam/identity_pool_waiter.py`: "Identity Pools
/// GetOperation does not return anything in the Operation.response field"), so clients read the
/// resource back by the operation's name without its last two segments, as gcloud does.
fn start_operation(c: &Connection, resource: &str) -> ApiResult<Value> {
    let name = format!("{resource}/operations/{}", uuid::Uuid::new_v4().simple());
    let done = json!({"name": name, "done": true});
    c.execute("INSERT INTO operations (name, result) VALUES (?1, ?2)", params![name, done.to_string()]).map_err(sql)?;
    Ok(json!({"name": name, "done": false}))
}

/// Whether the pool exists, is active and enabled: federated tokens it issued work only then.
pub fn pool_usable(c: &Connection, project_number: &str, pool: &str) -> ApiResult<bool> {
    let name = format!("projects/{project_number}/locations/global/workloadIdentityPools/{pool}");
    Ok(load(c, "wif_pools", &name)?.is_some_and(|p| !is_deleted(&p) && p["disabled"] != json!(true)))
}

/// A pool and one of its providers, as STS needs them: `None` unless both exist.
pub fn pool_and_provider(c: &Connection, provider_name: &str) -> ApiResult<Option<(Value, Value)>> {
    purge_expired(c)?;
    let Some(pool_name) = provider_name.split("/providers/").next() else { return Ok(None) };
    match (load(c, "wif_pools", pool_name)?, load(c, "wif_providers", provider_name)?) {
        (Some(pool), Some(provider)) => Ok(Some((pool, provider))),
        _ => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The project a request path names, by id or number: `(id, number)`.
fn resolve_project(c: &Connection, p: &str) -> ApiResult<Option<(String, String)>> {
    c.query_row("SELECT id, number FROM projects WHERE id = ?1 OR number = ?1", [p], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(sql)
}

fn require(
    c: &Connection,
    who: &Identity,
    project: Option<&(String, String)>,
    perm: &str,
    resource: &str,
) -> ApiResult<()> {
    let allowed = match project {
        Some((id, _)) => {
            crate::resource_manager::project_policy(c, id)?.is_some_and(|p| crate::iam::allows(&p, who, perm))
        }
        None => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("Permission '{perm}' denied on resource '{resource}' (or it may not exist).")))
    }
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::not_found(format!("Requested entity was not found: {what} {name}."))
}

/// What differs between pools and providers; their lifecycle is the same.
struct Kind {
    /// For messages: `pool`, `provider`.
    what: &'static str,
    table: &'static str,
    /// The column holding the parent's name.
    parent_column: &'static str,
    /// The permission prefix (`iam.workloadIdentityPools`).
    permission: &'static str,
    /// The message type, as error messages name it.
    type_name: &'static str,
    collection: &'static str,
    id_param: &'static str,
    create_fields: &'static [&'static str],
    update_fields: &'static [&'static str],
    settings: fn(&Value, &[&str], &mut Value) -> ApiResult<()>,
    check: fn(&Value) -> ApiResult<()>,
    /// Providers live in pools, which must be active for their providers to change.
    parent_table: Option<&'static str>,
}

static POOL: Kind = Kind {
    what: "pool",
    table: "wif_pools",
    parent_column: "parent",
    permission: "iam.workloadIdentityPools",
    type_name: "WorkloadIdentityPool",
    collection: "workloadIdentityPools",
    id_param: "workloadIdentityPoolId",
    create_fields: &["displayName", "description", "disabled", "mode"],
    update_fields: &["displayName", "description", "disabled"],
    settings: pool_settings,
    check: |_| Ok(()),
    parent_table: None,
};

static PROVIDER: Kind = Kind {
    what: "provider",
    table: "wif_providers",
    parent_column: "pool",
    permission: "iam.workloadIdentityPoolProviders",
    type_name: "WorkloadIdentityPoolProvider",
    collection: "providers",
    id_param: "workloadIdentityPoolProviderId",
    create_fields: &[
        "displayName",
        "description",
        "disabled",
        "attributeMapping",
        "attributeCondition",
        "oidc",
        "aws",
        "saml",
        "x509",
    ],
    update_fields: &[
        "displayName",
        "description",
        "disabled",
        "attributeMapping",
        "attributeCondition",
        "oidc",
        "oidc.issuerUri",
        "oidc.allowedAudiences",
        "oidc.jwksJson",
    ],
    settings: provider_settings,
    check: check_provider,
    parent_table: Some("wif_pools"),
};

impl Kind {
    fn perm(&self, verb: &str) -> String {
        format!("{}.{verb}", self.permission)
    }
}

fn split_verb(seg: &str) -> (&str, Option<&str>) {
    match seg.split_once(':') {
        Some((a, v)) => (a, Some(v)),
        None => (seg, None),
    }
}

/// What a path names, below `parent` (`projects/NUMBER/locations/global`).
#[derive(Debug, PartialEq)]
enum Target {
    Collection { kind: &'static str, parent: String },
    Resource { kind: &'static str, name: String, verb: Option<String> },
    Operation { name: String },
}

fn kind(k: &str) -> &'static Kind {
    if k == "pool" { &POOL } else { &PROVIDER }
}

fn parse_target(parent: &str, s: &[&str]) -> Option<Target> {
    if s.first() != Some(&"workloadIdentityPools") {
        return None;
    }
    let pool = |id: &str| format!("{parent}/workloadIdentityPools/{id}");
    let resource = |kind: &'static str, base: String, seg: &str| {
        let (id, verb) = split_verb(seg);
        Target::Resource { kind, name: format!("{base}/{id}"), verb: verb.map(Into::into) }
    };
    Some(match s.len() {
        1 => Target::Collection { kind: "pool", parent: parent.to_string() },
        2 => resource("pool", format!("{parent}/workloadIdentityPools"), s[1]),
        3 if s[2] == "providers" => Target::Collection { kind: "provider", parent: pool(s[1]) },
        4 if s[2] == "providers" => resource("provider", format!("{}/providers", pool(s[1])), s[3]),
        4 if s[2] == "operations" => Target::Operation { name: format!("{parent}/{}", s.join("/")) },
        6 if s[2] == "providers" && s[4] == "operations" => {
            Target::Operation { name: format!("{parent}/{}", s.join("/")) }
        }
        _ => return None,
    })
}

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let segs = segments(&r.raw_path);
    let s: Vec<String> = segs.into_iter().skip(2).collect(); // after iam/v1
    let unserved = || ApiError::unimplemented(r.method.as_str(), &r.raw_path, "IAM");
    if s.len() < 5 || s[0] != "projects" || s[2] != "locations" {
        return Err(unserved());
    }
    if s[3] != "global" {
        return Err(ApiError::bad_request(format!(
            "Location '{}' is not supported: workload identity pools live in location 'global'.",
            s[3]
        )));
    }
    let (method, who, body) = (r.method.as_str().to_string(), r.principal.clone(), body.unwrap_or(json!({})));
    let unserved = unserved();
    let query: Vec<(String, String)> = r.query.clone();
    let q = move |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let v = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            purge_expired(&tx)?;
            // Paths may name the project by id or number; names always carry the number.
            let project = resolve_project(&tx, &s[1])?;
            let number = project.as_ref().map(|p| p.1.clone()).unwrap_or_else(|| s[1].clone());
            let parent = format!("projects/{number}/locations/global");
            let rest: Vec<&str> = s[4..].iter().map(String::as_str).collect();
            let target = parse_target(&parent, &rest).ok_or_else(|| unserved.clone())?;
            let ctx = Ctx { c: &tx, who: &who, project: project.as_ref() };
            let out = match (method.as_str(), target) {
                ("POST", Target::Collection { kind: k, parent }) => {
                    let k = kind(k);
                    create(&ctx, k, &parent, q(k.id_param), &body)?
                }
                ("GET", Target::Collection { kind: k, parent }) => list(&ctx, kind(k), &parent, q("showDeleted"))?,
                ("GET", Target::Resource { kind: k, name, verb: None }) => {
                    let k = kind(k);
                    ctx.require(&k.perm("get"), &name)?;
                    load(&tx, k.table, &name)?.ok_or_else(|| not_found(k.what, &name))?
                }
                ("PATCH", Target::Resource { kind: k, name, verb: None }) => {
                    patch(&ctx, kind(k), &name, q("updateMask"), &body)?
                }
                ("DELETE", Target::Resource { kind: k, name, verb: None }) => delete(&ctx, kind(k), &name)?,
                ("POST", Target::Resource { kind: k, name, verb: Some(v) }) if v == "undelete" => {
                    check_fields(&body, &[], "UndeleteRequest")?;
                    undelete(&ctx, kind(k), &name)?
                }
                ("GET", Target::Operation { name }) => {
                    ctx.require("iam.workloadIdentityPools.get", &name)?;
                    let op: Option<String> = tx
                        .query_row("SELECT result FROM operations WHERE name = ?1", [&name], |r| r.get(0))
                        .optional()
                        .map_err(sql)?;
                    op.and_then(|o| serde_json::from_str(&o).ok()).ok_or_else(|| not_found("operation", &name))?
                }
                _ => return Err(unserved),
            };
            tx.commit().map_err(sql)?;
            Ok(out)
        })
        .await?;
    Ok(json_response(v))
}

struct Ctx<'a> {
    c: &'a Connection,
    who: &'a Identity,
    project: Option<&'a (String, String)>,
}

impl Ctx<'_> {
    fn require(&self, perm: &str, resource: &str) -> ApiResult<()> {
        require(self.c, self.who, self.project, perm, resource)
    }

    /// A provider's pool must exist and be active for the provider to be created or changed.
    fn require_active_parent(&self, k: &Kind, name: &str) -> ApiResult<()> {
        let (Some(table), Some((parent, _))) = (k.parent_table, name.rsplit_once(&format!("/{}/", k.collection)))
        else {
            return Ok(());
        };
        match load(self.c, table, parent)? {
            None => Err(not_found("pool", parent)),
            Some(p) if is_deleted(&p) => {
                Err(ApiError::failed_precondition(format!("{parent} is deleted; undelete it first.")))
            }
            Some(_) => Ok(()),
        }
    }
}

/// Refuses fields the resource does not have.
fn check_body(k: &Kind, body: &Value) -> ApiResult<()> {
    check_fields(body, &[k.create_fields, OUTPUT_ONLY_FIELDS].concat(), k.type_name)
}

fn create(ctx: &Ctx, k: &Kind, parent: &str, id: Option<String>, body: &Value) -> ApiResult<Value> {
    ctx.require(&k.perm("create"), parent)?;
    check_body(k, body)?;
    let id = id.ok_or_else(|| ApiError::bad_request(format!("{} is required.", k.id_param)))?;
    validate_id(k.what, &id).map_err(ApiError::bad_request)?;
    let name = format!("{parent}/{}/{id}", k.collection);
    ctx.require_active_parent(k, &name)?;
    let mut v = json!({"name": name, "state": "ACTIVE"});
    (k.settings)(body, k.create_fields, &mut v)?;
    (k.check)(&v)?;
    if load(ctx.c, k.table, &name)?.is_some() {
        // Also while soft-deleted: the id is blocked for 30 days (undelete it instead).
        return Err(ApiError::conflict("Requested entity already exists"));
    }
    ctx.c
        .execute(
            &format!("INSERT INTO {} (name, {}, resource) VALUES (?1, ?2, ?3)", k.table, k.parent_column),
            params![name, parent, v.to_string()],
        )
        .map_err(sql)?;
    start_operation(ctx.c, &name)
}

fn patch(ctx: &Ctx, k: &Kind, name: &str, mask: Option<String>, body: &Value) -> ApiResult<Value> {
    ctx.require(&k.perm("update"), name)?;
    check_body(k, body)?;
    let fields = update_mask(mask.as_deref(), k.update_fields)?;
    let mut v = load(ctx.c, k.table, name)?.ok_or_else(|| not_found(k.what, name))?;
    if is_deleted(&v) {
        return Err(ApiError::failed_precondition(format!("Cannot update {name}: it is deleted; undelete it first.")));
    }
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    (k.settings)(body, &fields, &mut v)?;
    (k.check)(&v)?;
    save(ctx.c, k.table, name, &v)?;
    start_operation(ctx.c, name)
}

fn list(ctx: &Ctx, k: &Kind, parent: &str, show_deleted: Option<String>) -> ApiResult<Value> {
    ctx.require(&k.perm("list"), parent)?;
    let show_deleted = show_deleted.as_deref() == Some("true");
    let mut st = ctx
        .c
        .prepare(&format!("SELECT resource FROM {} WHERE {} = ?1 ORDER BY name", k.table, k.parent_column))
        .map_err(sql)?;
    let items: Vec<Value> = st
        .query_map([parent], |r| r.get::<_, String>(0))
        .map_err(sql)?
        .filter_map(Result::ok)
        .filter_map(|s| serde_json::from_str::<Value>(&s).ok())
        .filter(|v| show_deleted || !is_deleted(v))
        .collect();
    let field = if k.collection == "providers" { "workloadIdentityPoolProviders" } else { k.collection };
    Ok(if items.is_empty() { json!({}) } else { json!({ field: items }) })
}

fn delete(ctx: &Ctx, k: &Kind, name: &str) -> ApiResult<Value> {
    ctx.require(&k.perm("delete"), name)?;
    let mut v = load(ctx.c, k.table, name)?.ok_or_else(|| not_found(k.what, name))?;
    if is_deleted(&v) {
        return Err(ApiError::failed_precondition(format!("{name} is already deleted.")));
    }
    mark_deleted(&mut v);
    save(ctx.c, k.table, name, &v)?;
    start_operation(ctx.c, name)
}

fn undelete(ctx: &Ctx, k: &Kind, name: &str) -> ApiResult<Value> {
    ctx.require(&k.perm("undelete"), name)?;
    ctx.require_active_parent(k, name)?;
    let mut v = load(ctx.c, k.table, name)?.ok_or_else(|| not_found(k.what, name))?;
    if !is_deleted(&v) {
        return Err(ApiError::failed_precondition(format!("Cannot undelete {name}: it is not deleted.")));
    }
    mark_active(&mut v);
    save(ctx.c, k.table, name, &v)?;
    start_operation(ctx.c, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_googles_rules() {
        assert!(validate_id("pool", "dcr-patients").is_ok());
        assert!(validate_id("pool", "abcd").is_ok());
        assert!(validate_id("pool", "abc").is_err());
        assert!(validate_id("pool", &"a".repeat(33)).is_err());
        assert!(validate_id("pool", "Upper-case").is_err());
        assert!(validate_id("pool", "under_score").is_err());
        assert!(validate_id("pool", "gcp-mine").unwrap_err().contains("reserved"));
    }

    #[test]
    fn paths_name_their_targets() {
        let p = "projects/1/locations/global";
        assert_eq!(
            parse_target(p, &["workloadIdentityPools"]),
            Some(Target::Collection { kind: "pool", parent: p.into() })
        );
        assert_eq!(
            parse_target(p, &["workloadIdentityPools", "p1:undelete"]),
            Some(Target::Resource {
                kind: "pool",
                name: format!("{p}/workloadIdentityPools/p1"),
                verb: Some("undelete".into())
            })
        );
        assert_eq!(
            parse_target(p, &["workloadIdentityPools", "p1", "providers", "tee"]),
            Some(Target::Resource {
                kind: "provider",
                name: format!("{p}/workloadIdentityPools/p1/providers/tee"),
                verb: None
            })
        );
        assert_eq!(
            parse_target(p, &["workloadIdentityPools", "p1", "providers", "tee", "operations", "x"]),
            Some(Target::Operation { name: format!("{p}/workloadIdentityPools/p1/providers/tee/operations/x") })
        );
        assert_eq!(parse_target(p, &["keyRings"]), None);
        assert_eq!(parse_target(p, &["workloadIdentityPools", "p1", "keys"]), None);
    }

    #[test]
    fn providers_must_be_oidc_with_a_subject_mapping_and_valid_cel() {
        let good = json!({"oidc": {"issuerUri": "https://issuer.example", "allowedAudiences": ["https://sts.googleapis.com"]},
                          "attributeMapping": {"google.subject": "assertion.sub"},
                          "attributeCondition": "assertion.swname == 'CONFIDENTIAL_SPACE'"});
        check_provider(&good).unwrap();
        let mut v = good.clone();
        v["attributeMapping"] = json!({"attribute.x": "assertion.sub"});
        assert!(check_provider(&v).unwrap_err().message.contains("google.subject"));
        let mut v = good.clone();
        v["attributeCondition"] = json!("assertion.swname ==");
        assert!(check_provider(&v).unwrap_err().message.contains("CEL"));
        let mut v = good.clone();
        v["attributeCondition"] = json!(format!("'{}' == ''", "x".repeat(4100)));
        assert!(check_provider(&v).unwrap_err().message.contains("4096"));
        let mut v = good.clone();
        v["oidc"]["issuerUri"] = json!("http://plain.example");
        assert!(check_provider(&v).unwrap_err().message.contains("https"));
        let mut v = good.clone();
        v["oidc"]["allowedAudiences"] = json!(vec!["a"; 11]);
        assert!(check_provider(&v).unwrap_err().message.contains("at most 10"));
        let mut v = good;
        v["aws"] = json!({"accountId": "1"});
        assert!(check_provider(&v).is_err());
    }

    #[test]
    fn update_masks_name_only_updatable_fields() {
        assert_eq!(update_mask(Some("displayName,disabled"), &["displayName", "disabled"]).unwrap().len(), 2);
        assert!(update_mask(None, &["displayName"]).is_err());
        assert!(update_mask(Some("name"), &["displayName"]).unwrap_err().message.contains("'name'"));
        // terraform-provider-google's snake_case paths name the same fields.
        assert_eq!(
            update_mask(Some("oidc.allowed_audiences,oidc.issuer_uri,attributeCondition"), PROVIDER.update_fields)
                .unwrap(),
            vec!["oidc.allowedAudiences", "oidc.issuerUri", "attributeCondition"]
        );
    }
}
