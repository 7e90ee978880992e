//! Compute Engine v1, the part that runs Confidential Space VMs: `instances.insert/get/list/delete/
//! stop/getSerialPortOutput` and zone operations, following compute.v1's discovery document and
//! error shape. Insert checks what Google checks for the fields dcr sends (names, machine types
//! against the confidential type, maintenance policy, one boot disk, metadata keys) and accepts only
//! Confidential Space boot images; the VM itself is simulated by [`crate::vm`], which runs the
//! workload container with runc.
//!
//! Operations follow Google's shape (`status` PENDING → RUNNING → DONE); as with the other
//! services here, a mutation answers "RUNNING" and its operation reads DONE when polled, so clients'
//! polling runs on every call. `requestId` de-duplicates retried mutations.

use axum::response::Response;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields, json_response, now_rfc3339};
use crate::api::{Req, segments};
use crate::app::App;
use crate::iam::Identity;
use crate::store::sql;

/// Where selfLinks point, as Google writes them.
const BASE: &str = "https://www.googleapis.com/compute/v1/";
/// The Confidential Space images the simulated VM stands in for.
const CS_IMAGE_PROJECT: &str = "projects/confidential-space-images/global/images/";

const INSTANCE_FIELDS: &[&str] = &[
    "name",
    "description",
    "machineType",
    "confidentialInstanceConfig",
    "shieldedInstanceConfig",
    "scheduling",
    "disks",
    "networkInterfaces",
    "serviceAccounts",
    "metadata",
    "labels",
    "tags",
    "minCpuPlatform",
];

pub fn instance_url(project: &str, zone: &str, name: &str) -> String {
    format!("{BASE}projects/{project}/zones/{zone}/instances/{name}")
}

/// `[a-z]([-a-z0-9]*[a-z0-9])?`, 1–63 characters: Compute's resource names.
pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !n.ends_with('-')
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError { status: 400, message: format!("Invalid value for field '{field}': {message}"), reason: "invalid" }
}

/// The last path segment of a URL or partial URL (`zones/Z/machineTypes/T` → `T`).
fn last(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

/// The machine families each confidential type runs on (Confidential VM supported configurations).
fn family_supports(machine_type: &str, confidential: &str) -> bool {
    let family = machine_type.split('-').next().unwrap_or("");
    match confidential {
        "SEV" => ["n2d", "c2d", "c3d", "c4d"].contains(&family),
        "SEV_SNP" => family == "n2d",
        "TDX" => ["c3", "a3"].contains(&family),
        _ => false,
    }
}

/// Checks an insert body as Compute does for the fields dcr uses, plus the local cloud's own limit:
/// only Confidential Space VMs can be simulated.
pub fn check_instance(body: &Value, project: &str, zone: &str) -> ApiResult<()> {
    check_fields(body, INSTANCE_FIELDS, "Instance")?;
    let name = body["name"].as_str().unwrap_or("");
    if !valid_name(name) {
        return Err(invalid(
            "resource.name",
            format!("'{name}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"),
        ));
    }
    let mt = body["machineType"].as_str().unwrap_or("");
    if mt.is_empty() {
        return Err(invalid("resource.machineType", "the machine type is required"));
    }
    if mt.contains("/zones/") || mt.starts_with("zones/") {
        let mt_zone = mt.split("zones/").nth(1).and_then(|r| r.split('/').next()).unwrap_or("");
        if mt_zone != zone {
            return Err(invalid("resource.machineType", format!("'{mt}'. The machine type must be in zone {zone}")));
        }
    }
    let machine = last(mt);
    let cic = &body["confidentialInstanceConfig"];
    let confidential = match (cic["confidentialInstanceType"].as_str(), cic["enableConfidentialCompute"].as_bool()) {
        (Some(t), _) => t.to_string(),
        (None, Some(true)) => "SEV".to_string(),
        _ => String::new(),
    };
    if !["SEV", "SEV_SNP", "TDX"].contains(&confidential.as_str()) {
        return Err(invalid(
            "resource.confidentialInstanceConfig",
            "the local cloud simulates Confidential Space VMs only: set confidentialInstanceType to SEV or TDX",
        ));
    }
    if !family_supports(machine, &confidential) {
        return Err(invalid(
            "resource.machineType",
            format!("Confidential instance type {confidential} is not supported on machine type '{machine}'"),
        ));
    }
    let maintenance = body["scheduling"]["onHostMaintenance"].as_str().unwrap_or("MIGRATE");
    if maintenance != "TERMINATE" && !(confidential == "SEV" && machine.starts_with("n2d-")) {
        return Err(invalid(
            "resource.scheduling.onHostMaintenance",
            format!("'{maintenance}'. Confidential {confidential} instances must set onHostMaintenance to TERMINATE"),
        ));
    }
    let disks = body["disks"].as_array().cloned().unwrap_or_default();
    let boot: Vec<&Value> = disks.iter().filter(|d| d["boot"].as_bool() == Some(true)).collect();
    if boot.len() != 1 {
        return Err(invalid("resource.disks", "exactly one boot disk is required"));
    }
    if let Some(t) = boot[0]["initializeParams"]["diskType"].as_str() {
        check_disk_type(t, project, zone, machine)?;
    }
    check_network_interfaces(body, project, zone)?;
    let image = boot[0]["initializeParams"]["sourceImage"].as_str().unwrap_or("");
    let image_path = image.trim_start_matches(BASE);
    let cs = image_path
        .strip_prefix(CS_IMAGE_PROJECT)
        .is_some_and(|i| i.starts_with("family/confidential-space") || i.starts_with("confidential-space"));
    if !cs {
        return Err(invalid(
            "resource.disks[0].initializeParams.sourceImage",
            format!(
                "'{image}'. The local cloud runs Confidential Space images only \
                 ({CS_IMAGE_PROJECT}family/confidential-space or confidential-space-debug)"
            ),
        ));
    }
    if body["serviceAccounts"].as_array().is_some_and(|a| a.len() > 1) {
        return Err(invalid("resource.serviceAccounts", "at most one service account is allowed"));
    }
    let items = body["metadata"]["items"].as_array().cloned().unwrap_or_default();
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0usize;
    for item in &items {
        let key = item["key"].as_str().unwrap_or("");
        let value = item["value"].as_str().unwrap_or("");
        if key.is_empty() || key.len() >= 128 || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("resource.metadata.items.key", format!("'{key}'. Keys match [a-zA-Z0-9-_]{{1,127}}")));
        }
        if !seen.insert(key.to_string()) {
            return Err(invalid("resource.metadata", format!("duplicate key '{key}'")));
        }
        if value.len() > 256 * 1024 {
            return Err(invalid("resource.metadata.items.value", format!("the value of '{key}' exceeds 256 KiB")));
        }
        total += key.len() + value.len();
    }
    if total >= 512 * 1024 {
        return Err(invalid("resource.metadata", "all metadata together must be under 512 KB"));
    }
    Ok(())
}

/// The region of a zone (`us-central1-a` → `us-central1`, `local-a` → `local`).
pub fn region_of(zone: &str) -> &str {
    zone.rsplit_once('-').map(|(r, _)| r).unwrap_or(zone)
}

/// Strips `https://www.googleapis.com/compute/v1/` and `projects/P/` from a full or partial URL;
/// returns the project it names (or `default_project`) and the rest.
fn partial_url<'a>(url: &'a str, default_project: &'a str) -> (&'a str, &'a str) {
    let rest = url.strip_prefix(BASE).unwrap_or(url);
    match rest.strip_prefix("projects/").and_then(|r| r.split_once('/')) {
        Some((p, r)) => (p, r),
        None => (default_project, rest),
    }
}

/// The Persistent Disk and Hyperdisk types each machine family accepts, for the families
/// Confidential VMs run on ("Machine series support",
/// https://cloud.google.com/compute/docs/disks/persistent-disks#machine-series-support and
/// https://cloud.google.com/compute/docs/disks/hyperdisks#machine-type-support): C3 and the
/// fourth generation take no Standard PD.
fn disk_types_of(machine: &str) -> &'static [&'static str] {
    match machine.split('-').next().unwrap_or("") {
        "n2d" | "c2d" => &["pd-standard", "pd-balanced", "pd-ssd"],
        "c3" | "c3d" => &["pd-balanced", "pd-ssd", "hyperdisk-balanced", "hyperdisk-extreme", "hyperdisk-throughput"],
        _ => &["hyperdisk-balanced"],
    }
}

/// `initializeParams.diskType`: a full or partial URL `zones/ZONE/diskTypes/TYPE` in the instance's
/// zone (compute.v1 `AttachedDiskInitializeParams.diskType`), of a type the machine series supports.
fn check_disk_type(url: &str, project: &str, zone: &str, machine: &str) -> ApiResult<()> {
    let field = "resource.disks[0].initializeParams.diskType";
    let (_, rest) = partial_url(url, project);
    let parts: Vec<&str> = rest.split('/').collect();
    let ["zones", z, "diskTypes", t] = parts.as_slice() else {
        return Err(invalid(field, format!("'{url}'. Expected zones/ZONE/diskTypes/TYPE (a full or partial URL)")));
    };
    if *z != zone {
        return Err(invalid(field, format!("'{url}'. The disk type must be in the instance's zone {zone}")));
    }
    if !disk_types_of(machine).contains(t) {
        return Err(invalid(field, format!("'{url}'. [{t}] disk type cannot be used by [{machine}] machine type")));
    }
    Ok(())
}

/// Network interfaces as Compute checks them for the fields dcr sends (compute.v1
/// `NetworkInterface`): `network` and `subnetwork` as full or partial URLs, the subnetwork in the
/// instance's region, at most one access config, of type ONE_TO_ONE_NAT ("Currently, only one
/// access config, ONE_TO_ONE_NAT, is supported"). The local cloud has one network, `default`, in
/// auto subnet mode: a subnetwork `default` in every region, as a new project's default network.
fn check_network_interfaces(body: &Value, project: &str, zone: &str) -> ApiResult<()> {
    let nics = match &body["networkInterfaces"] {
        Value::Null => return Ok(()),
        Value::Array(a) => a.clone(),
        _ => return Err(invalid("resource.networkInterfaces", "must be a list")),
    };
    if nics.len() > 8 {
        return Err(invalid("resource.networkInterfaces", "an instance has at most 8 network interfaces"));
    }
    // Compute names a missing referenced resource by its path.
    let not_found = |p: &str, rest: &str| {
        ApiError::new(404, "notFound", format!("The resource 'projects/{p}/{rest}' was not found"))
    };
    for (i, nic) in nics.iter().enumerate() {
        let at = |f: &str| format!("resource.networkInterfaces[{i}].{f}");
        check_fields(
            nic,
            &["network", "subnetwork", "accessConfigs", "networkIP", "stackType", "nicType", "kind", "name"],
            "NetworkInterface",
        )?;
        if let Some(n) = nic["network"].as_str() {
            let (p, rest) = partial_url(n, project);
            let parts: Vec<&str> = rest.split('/').collect();
            let ["global", "networks", name] = parts.as_slice() else {
                return Err(invalid(&at("network"), format!("'{n}'. The URL is malformed.")));
            };
            if p != project || *name != "default" {
                return Err(not_found(p, rest));
            }
        }
        if let Some(sn) = nic["subnetwork"].as_str() {
            let (p, rest) = partial_url(sn, project);
            let parts: Vec<&str> = rest.split('/').collect();
            let ["regions", region, "subnetworks", name] = parts.as_slice() else {
                return Err(invalid(&at("subnetwork"), format!("'{sn}'. The URL is malformed.")));
            };
            if *region != region_of(zone) {
                return Err(invalid(
                    &at("subnetwork"),
                    format!("'{sn}'. The subnetwork must be in the instance's region {}", region_of(zone)),
                ));
            }
            if p != project || *name != "default" {
                return Err(not_found(p, rest));
            }
        }
        let configs = match &nic["accessConfigs"] {
            Value::Null => Vec::new(),
            Value::Array(a) => a.clone(),
            _ => return Err(invalid(&at("accessConfigs"), "must be a list")),
        };
        if configs.len() > 1 {
            return Err(invalid(&at("accessConfigs"), "only one access config per network interface is supported"));
        }
        for c in &configs {
            check_fields(c, &["type", "name", "natIP", "networkTier", "kind"], "AccessConfig")?;
            let t = c["type"].as_str().unwrap_or("ONE_TO_ONE_NAT");
            if t != "ONE_TO_ONE_NAT" {
                return Err(invalid(
                    &at("accessConfigs[0].type"),
                    format!("'{t}'. The only access config type for IPv4 is ONE_TO_ONE_NAT"),
                ));
            }
        }
    }
    Ok(())
}

/// The value of metadata item `key`.
pub fn metadata(instance: &Value, key: &str) -> Option<String> {
    instance["metadata"]["items"]
        .as_array()?
        .iter()
        .find(|i| i["key"] == key)
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

fn require(c: &Connection, who: &Identity, project: &str, perm: &str, resource: &str) -> ApiResult<()> {
    let allowed =
        crate::resource_manager::project_policy(c, project)?.is_some_and(|p| crate::iam::allows(&p, who, perm));
    if allowed { Ok(()) } else { Err(ApiError::forbidden(format!("Required '{perm}' permission for '{resource}'"))) }
}

fn not_found(what: &str, path: &str) -> ApiError {
    ApiError::not_found(format!("The resource '{path}' was not found ({what})"))
}

pub fn load_instance(c: &Connection, project: &str, zone: &str, name: &str) -> ApiResult<Option<(Value, String)>> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT resource, supervisor FROM instances WHERE project = ?1 AND zone = ?2 AND name = ?3",
            params![project, zone, name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql)?;
    Ok(row.map(|(r, s)| (serde_json::from_str(&r).unwrap_or(Value::Null), s)))
}

pub fn save_instance(c: &Connection, project: &str, zone: &str, v: &Value) -> ApiResult<()> {
    c.execute(
        "UPDATE instances SET resource = ?4 WHERE project = ?1 AND zone = ?2 AND name = ?3",
        params![project, zone, v["name"].as_str().unwrap_or(""), v.to_string()],
    )
    .map_err(sql)?;
    Ok(())
}

/// A finished operation is stored; the caller is told it is still running.
fn start_operation(
    c: &Connection,
    project: &str,
    zone: &str,
    kind: &str,
    target: &Value,
    who: &Identity,
    request_id: Option<&str>,
) -> ApiResult<Value> {
    let id: u64 = rand_id();
    let name = format!("operation-{}-{}", crate::api::unix_now() * 1000, uuid::Uuid::new_v4().simple());
    let now = now_rfc3339();
    let zone_url = format!("{BASE}projects/{project}/zones/{zone}");
    let done = json!({
        "kind": "compute#operation",
        "id": id.to_string(),
        "name": name,
        "zone": zone_url,
        "operationType": kind,
        "targetLink": instance_url(project, zone, target["name"].as_str().unwrap_or("")),
        "targetId": target["id"],
        "status": "DONE",
        "user": who.principal.split_once(':').map(|p| p.1).unwrap_or(&who.principal),
        "progress": 100,
        "insertTime": now,
        "startTime": now,
        "endTime": now,
        "selfLink": format!("{zone_url}/operations/{name}"),
    });
    c.execute(
        "INSERT INTO compute_operations (project, zone, name, request_id, resource) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![project, zone, name, request_id, done.to_string()],
    )
    .map_err(sql)?;
    let mut running = done.clone();
    running["status"] = json!("RUNNING");
    running["progress"] = json!(0);
    if let Some(o) = running.as_object_mut() {
        o.remove("endTime");
    }
    Ok(running)
}

fn rand_id() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).expect("system randomness");
    u64::from_be_bytes(b) % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000
}

/// An operation already started for `request_id`, if any: a retried mutation gets it back.
fn replayed(c: &Connection, project: &str, zone: &str, request_id: Option<&str>) -> ApiResult<Option<Value>> {
    let Some(rid) = request_id else { return Ok(None) };
    let row: Option<String> = c
        .query_row(
            "SELECT resource FROM compute_operations WHERE project = ?1 AND zone = ?2 AND request_id = ?3",
            params![project, zone, rid],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?;
    Ok(row.and_then(|r| serde_json::from_str(&r).ok()))
}

fn check_request_id(rid: Option<&str>) -> ApiResult<()> {
    match rid {
        Some(r) if uuid::Uuid::parse_str(r).map(|u| u.is_nil()).unwrap_or(true) => {
            Err(invalid("requestId", format!("'{r}'. The request id must be a valid UUID that is not all zeros")))
        }
        _ => Ok(()),
    }
}

/// What a handler decided beyond its JSON answer: a VM to boot or stop.
enum Effect {
    None,
    Boot { project: String, zone: String, instance: Value },
    Halt { id: String, deleting: bool },
}

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let segs = segments(&r.raw_path);
    let s: Vec<String> = segs.into_iter().skip(2).collect(); // after compute/v1
    if s.len() < 5 || s[0] != "projects" || s[2] != "zones" {
        return Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Compute"));
    }
    let (project, zone) = (s[1].clone(), s[3].clone());
    let rest: Vec<String> = s[4..].to_vec();
    let method = r.method.as_str().to_string();
    let who = r.principal.clone();
    let request_id = r.query("requestId").map(str::to_string);
    let serial_start = r.query_i64("start")?;
    let body = body.unwrap_or(Value::Null);
    let vm = app.vm.clone();
    let unserved = ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Compute");
    let (answer, effect) = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            let rid = request_id.as_deref();
            let out = match (method.as_str(), rest.as_slice()) {
                ("POST", ["instances"]) => {
                    check_request_id(rid)?;
                    require(&tx, &who, &project, "compute.instances.create", &format!("projects/{project}"))?;
                    if let Some(op) = replayed(&tx, &project, &zone, rid)? {
                        (op, Effect::None)
                    } else {
                        check_instance(&body, &project, &zone)?;
                        let name = body["name"].as_str().unwrap_or("").to_string();
                        if load_instance(&tx, &project, &zone, &name)?.is_some() {
                            return Err(ApiError {
                                status: 409,
                                message: format!("The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists"),
                                reason: "alreadyExists",
                            });
                        }
                        let instance = new_instance(&body, &project, &zone);
                        tx.execute(
                            "INSERT INTO instances (project, zone, name, id, resource, supervisor) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                            params![project, zone, name, instance["id"].as_str().unwrap_or(""), instance.to_string(), vm.me()],
                        )
                        .map_err(sql)?;
                        let op = start_operation(&tx, &project, &zone, "insert", &instance, &who, rid)?;
                        (op, Effect::Boot { project: project.clone(), zone: zone.clone(), instance })
                    }
                }
                ("GET", ["instances"]) => {
                    require(&tx, &who, &project, "compute.instances.list", &format!("projects/{project}"))?;
                    let mut stmt = tx
                        .prepare("SELECT name FROM instances WHERE project = ?1 AND zone = ?2 ORDER BY name")
                        .map_err(sql)?;
                    let names: Vec<String> =
                        stmt.query_map(params![project, zone], |r| r.get(0)).map_err(sql)?.filter_map(Result::ok).collect();
                    let mut items = Vec::new();
                    for n in names {
                        if let Some(i) = vm.refreshed(&tx, &project, &zone, &n)? {
                            items.push(i);
                        }
                    }
                    let mut list = json!({"kind": "compute#instanceList", "id": format!("projects/{project}/zones/{zone}/instances"),
                                          "selfLink": format!("{BASE}projects/{project}/zones/{zone}/instances")});
                    if !items.is_empty() {
                        list["items"] = json!(items);
                    }
                    (list, Effect::None)
                }
                ("GET", ["instances", name]) => {
                    let path = format!("projects/{project}/zones/{zone}/instances/{name}");
                    require(&tx, &who, &project, "compute.instances.get", &path)?;
                    let i = vm.refreshed(&tx, &project, &zone, name)?.ok_or_else(|| not_found("instance", &path))?;
                    (i, Effect::None)
                }
                ("GET", ["instances", name, "serialPort"]) => {
                    let path = format!("projects/{project}/zones/{zone}/instances/{name}");
                    require(&tx, &who, &project, "compute.instances.getSerialPortOutput", &path)?;
                    let (i, _) = load_instance(&tx, &project, &zone, name)?.ok_or_else(|| not_found("instance", &path))?;
                    let out = vm.serial_output(i["id"].as_str().unwrap_or(""), serial_start.unwrap_or(0))?;
                    (json!({"kind": "compute#serialPortOutput", "contents": out.contents, "start": out.start.to_string(),
                            "next": out.next.to_string(), "selfLink": format!("{BASE}{path}/serialPort")}), Effect::None)
                }
                ("DELETE", ["instances", name]) | ("POST", ["instances", name, "stop"]) => {
                    check_request_id(rid)?;
                    let deleting = method == "DELETE";
                    let path = format!("projects/{project}/zones/{zone}/instances/{name}");
                    let perm = if deleting { "compute.instances.delete" } else { "compute.instances.stop" };
                    require(&tx, &who, &project, perm, &path)?;
                    if let Some(op) = replayed(&tx, &project, &zone, rid)? {
                        (op, Effect::None)
                    } else {
                        let mut i = vm.refreshed(&tx, &project, &zone, name)?.ok_or_else(|| not_found("instance", &path))?;
                        let id = i["id"].as_str().unwrap_or("").to_string();
                        if deleting {
                            tx.execute(
                                "DELETE FROM instances WHERE project = ?1 AND zone = ?2 AND name = ?3",
                                params![project, zone, name],
                            )
                            .map_err(sql)?;
                        } else if i["status"] != "TERMINATED" {
                            i["status"] = json!("TERMINATED");
                            i["statusMessage"] = json!("Instance stopped through the API.");
                            save_instance(&tx, &project, &zone, &i)?;
                        }
                        let op = start_operation(&tx, &project, &zone, if deleting { "delete" } else { "stop" }, &i, &who, rid)?;
                        (op, Effect::Halt { id, deleting })
                    }
                }
                ("GET", ["operations", op]) | ("POST", ["operations", op, "wait"]) => {
                    require(&tx, &who, &project, "compute.zoneOperations.get", &format!("projects/{project}"))?;
                    let row: Option<String> = tx
                        .query_row(
                            "SELECT resource FROM compute_operations WHERE project = ?1 AND zone = ?2 AND name = ?3",
                            params![project, zone, op],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(sql)?;
                    let path = format!("projects/{project}/zones/{zone}/operations/{op}");
                    let v = row.and_then(|r| serde_json::from_str(&r).ok()).ok_or_else(|| not_found("operation", &path))?;
                    (v, Effect::None)
                }
                _ => return Err(unserved),
            };
            tx.commit().map_err(sql)?;
            Ok(out)
        })
        .await?;
    match effect {
        Effect::None => {}
        Effect::Boot { project, zone, instance } => app.vm.boot(project, zone, instance),
        Effect::Halt { id, deleting } => app.vm.halt(&id, deleting).await,
    }
    Ok(json_response(answer))
}

fn new_instance(body: &Value, project: &str, zone: &str) -> Value {
    let mut i = body.clone();
    let name = body["name"].as_str().unwrap_or("");
    let zone_url = format!("{BASE}projects/{project}/zones/{zone}");
    i["kind"] = json!("compute#instance");
    i["id"] = json!(rand_id().to_string());
    i["creationTimestamp"] = json!(now_rfc3339());
    i["zone"] = json!(zone_url);
    i["machineType"] = json!(format!("{zone_url}/machineTypes/{}", last(body["machineType"].as_str().unwrap_or(""))));
    i["status"] = json!("PROVISIONING");
    i["selfLink"] = json!(instance_url(project, zone, name));
    i["cpuPlatform"] = json!("Simulated Confidential Space (dcr local cloud)");
    i["fingerprint"] = json!(crate::iam::etag(1));
    i["metadata"]["kind"] = json!("compute#metadata");
    i["metadata"]["fingerprint"] = json!(crate::iam::etag(1));
    if let Some(nics) = i["networkInterfaces"].as_array_mut() {
        let region = region_of(zone);
        for (n, nic) in nics.iter_mut().enumerate() {
            nic["kind"] = json!("compute#networkInterface");
            nic["name"] = json!(format!("nic{n}"));
            nic["networkIP"] = json!("127.0.0.1");
            // Compute answers with full URLs, the inferred network and subnetwork filled in.
            nic["network"] = json!(format!("{BASE}projects/{project}/global/networks/default"));
            nic["subnetwork"] = json!(format!("{BASE}projects/{project}/regions/{region}/subnetworks/default"));
            if let Some(configs) = nic["accessConfigs"].as_array_mut() {
                for c in configs {
                    c["kind"] = json!("compute#accessConfig");
                    c["type"] = json!("ONE_TO_ONE_NAT");
                    c["natIP"] = json!("127.0.0.1");
                }
            }
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> Value {
        json!({
            "name": "dcr-study",
            "machineType": "zones/local-a/machineTypes/n2d-standard-2",
            "confidentialInstanceConfig": {"confidentialInstanceType": "SEV"},
            "scheduling": {"onHostMaintenance": "TERMINATE"},
            "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
                "sourceImage": "projects/confidential-space-images/global/images/family/confidential-space-debug"}}],
            "metadata": {"items": [{"key": "tee-image-reference", "value": "r@sha256:00"}]},
        })
    }

    #[test]
    fn insert_bodies_are_checked_like_compute_does() {
        assert!(check_instance(&body(), "p", "local-a").is_ok());
        type Edit = fn(&mut Value);
        let cases: Vec<(Edit, &str)> = vec![
            (|b| b["name"] = json!("Bad_Name"), "resource.name"),
            (|b| b["machineType"] = json!("zones/other/machineTypes/n2d-standard-2"), "must be in zone"),
            (
                |b| b["confidentialInstanceConfig"] = json!({"confidentialInstanceType": "TDX"}),
                "not supported on machine type 'n2d-standard-2'",
            ),
            (|b| b["confidentialInstanceConfig"] = json!({}), "Confidential Space VMs only"),
            (
                |b| {
                    b["disks"][0]["initializeParams"]["sourceImage"] =
                        json!("projects/debian-cloud/global/images/family/debian-12")
                },
                "Confidential Space images only",
            ),
            (|b| b["metadata"]["items"] = json!([{"key": "a b", "value": ""}]), "metadata.items.key"),
            (
                |b| b["metadata"]["items"] = json!([{"key": "k", "value": ""}, {"key": "k", "value": ""}]),
                "duplicate key",
            ),
            (|b| b["unknownField"] = json!(1), "Unknown name \"unknownField\""),
            (|b| b["disks"] = json!([]), "exactly one boot disk"),
            (|b| b["disks"][0]["initializeParams"]["diskType"] = json!("pd-balanced"), "zones/ZONE/diskTypes/TYPE"),
            (
                |b| b["disks"][0]["initializeParams"]["diskType"] = json!("zones/other-b/diskTypes/pd-balanced"),
                "in the instance's zone",
            ),
            (|b| b["networkInterfaces"] = json!([{"network": "networks/default"}]), "The URL is malformed"),
            (
                |b| b["networkInterfaces"] = json!([{"subnetwork": "regions/us-east1/subnetworks/default"}]),
                "instance's region local",
            ),
            (
                |b| b["networkInterfaces"] = json!([{"accessConfigs": [{"type": "DIRECT_IPV6"}]}]),
                "only access config type for IPv4 is ONE_TO_ONE_NAT",
            ),
            (
                |b| {
                    b["networkInterfaces"] =
                        json!([{"accessConfigs": [{"type": "ONE_TO_ONE_NAT"}, {"type": "ONE_TO_ONE_NAT"}]}])
                },
                "only one access config",
            ),
            (|b| b["networkInterfaces"] = json!([{"accessConfig": []}]), "Unknown name \"accessConfig\""),
        ];
        for (edit, says) in cases {
            let mut b = body();
            edit(&mut b);
            let e = check_instance(&b, "p", "local-a").unwrap_err();
            assert!(e.message.contains(says), "{}", e.message);
            assert_eq!(e.status, 400);
        }
        let mut tdx = body();
        tdx["machineType"] = json!("zones/local-a/machineTypes/c3-standard-4");
        tdx["confidentialInstanceConfig"] = json!({"confidentialInstanceType": "TDX"});
        assert!(check_instance(&tdx, "p", "local-a").is_ok());
        tdx["scheduling"] = json!({"onHostMaintenance": "MIGRATE"});
        assert!(check_instance(&tdx, "p", "local-a").unwrap_err().message.contains("TERMINATE"));
        tdx["scheduling"] = json!({"onHostMaintenance": "TERMINATE"});
        tdx["disks"][0]["initializeParams"]["diskType"] = json!("zones/local-a/diskTypes/pd-standard");
        assert!(
            check_instance(&tdx, "p", "local-a")
                .unwrap_err()
                .message
                .contains("[pd-standard] disk type cannot be used")
        );
        tdx["disks"][0]["initializeParams"]["diskType"] = json!("projects/p/zones/local-a/diskTypes/pd-balanced");
        assert!(check_instance(&tdx, "p", "local-a").is_ok());
    }

    #[test]
    fn networks_are_the_default_network_and_its_subnetworks_given_as_full_or_partial_urls() {
        let accepted = [
            json!([{"network": "global/networks/default", "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}]),
            json!([{"network": "projects/p/global/networks/default"}]),
            json!([{"network": "https://www.googleapis.com/compute/v1/projects/p/global/networks/default"}]),
            json!([{"subnetwork": "regions/local/subnetworks/default"}]),
            json!([{}]),
        ];
        for nics in accepted {
            let mut b = body();
            b["networkInterfaces"] = nics.clone();
            assert!(check_instance(&b, "p", "local-a").is_ok(), "{nics}");
        }
        for (nics, says) in [
            (json!([{"network": "global/networks/corp-vpc"}]), "'projects/p/global/networks/corp-vpc' was not found"),
            (json!([{"network": "projects/host/global/networks/default"}]), "'projects/host/global/networks/default'"),
            (
                json!([{"subnetwork": "regions/local/subnetworks/private"}]),
                "'projects/p/regions/local/subnetworks/private'",
            ),
        ] {
            let mut b = body();
            b["networkInterfaces"] = nics;
            let e = check_instance(&b, "p", "local-a").unwrap_err();
            assert_eq!(e.status, 404, "{}", e.message);
            assert!(e.message.contains(says), "{}", e.message);
        }
    }

    #[test]
    fn names_follow_compute_rules() {
        assert!(valid_name("dcr-study-1"));
        for bad in ["", "1abc", "abc-", "ABC", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
