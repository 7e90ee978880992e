//! Artifact Registry v1, the part dcr uses: Docker repositories (`repositories.get`, `.create`,
//! `.getIamPolicy`, `.setIamPolicy`) and their operations (`operations.get`), following
//! artifactregistry.v1's discovery document. The registry itself (pushes and pulls) is not served
//! here: local workloads use the local image store or a registry on loopback.
//!
//! Creation is a long-running operation that this local cloud finishes at once but answers as
//! not done, so clients poll; unlike IAM's, Artifact Registry's operations carry the created
//! repository as their `response` (google-cloud-artifact-registry's `create_repository` returns an
//! operation whose result type is `Repository`).

use axum::response::Response;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, check_fields, json_response, now_rfc3339};
use crate::api::{Req, segments};
use crate::app::App;
use crate::iam::Identity;
use crate::store::sql;

/// The fields of `Repository` (artifactregistry.v1 discovery).
const REPOSITORY_FIELDS: &[&str] = &[
    "cleanupPolicies",
    "cleanupPolicyDryRun",
    "createTime",
    "description",
    "disallowUnspecifiedMode",
    "dockerConfig",
    "format",
    "kmsKeyName",
    "labels",
    "mavenConfig",
    "mode",
    "name",
    "platformLogsConfig",
    "registryUri",
    "remoteRepositoryConfig",
    "satisfiesPzi",
    "satisfiesPzs",
    "sizeBytes",
    "updateTime",
    "virtualRepositoryConfig",
    "vulnerabilityScanningConfig",
];
/// `Repository.format` values (artifactregistry.v1 discovery).
const FORMATS: &[&str] =
    &["DOCKER", "MAVEN", "NPM", "APT", "YUM", "GOOGET", "PYTHON", "KFP", "GO", "GENERIC", "RUBY", "CONDA"];

/// `Repository.format` and `.mode` by number, as Google's generated REST clients send enums
/// (`$alt=json;enum-encoding=int`); the numbers are the proto's, as google-cloud-artifact-registry's
/// `artifactregistry_v1/types/repository.py` lists them.
const FORMAT_NUMBERS: &[(i64, &str)] = &[
    (1, "DOCKER"),
    (2, "MAVEN"),
    (3, "NPM"),
    (5, "APT"),
    (6, "YUM"),
    (8, "PYTHON"),
    (9, "KFP"),
    (10, "GO"),
    (11, "GENERIC"),
    (12, "RUBY"),
];
const MODE_NUMBERS: &[(i64, &str)] = &[(1, "STANDARD_REPOSITORY"), (2, "VIRTUAL_REPOSITORY"), (3, "REMOTE_REPOSITORY")];

/// Replaces a numbered enum field with its name; numbers the table lacks are refused by name.
fn enum_by_name(body: &mut Value, field: &str, table: &[(i64, &str)]) -> ApiResult<()> {
    if let Some(n) = body.get(field).and_then(Value::as_i64) {
        let name = table.iter().find(|(k, _)| *k == n).map(|(_, v)| *v).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid value {n} for Repository.{field}: the local cloud does not know it."
            ))
        })?;
        body[field] = json!(name);
    }
    Ok(())
}

/// Repository ids: lowercase letters, digits and hyphens, starting with a letter and ending with a
/// letter or digit, at most 63 characters
/// (https://cloud.google.com/artifact-registry/docs/repositories/create-repos#create).
pub fn valid_repository_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
}

fn valid_location(l: &str) -> bool {
    !l.is_empty() && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn require(
    c: &Connection,
    who: &Identity,
    project: &str,
    repo: Option<&str>,
    perm: &str,
    resource: &str,
) -> ApiResult<()> {
    let by_project =
        crate::resource_manager::project_policy(c, project)?.is_some_and(|p| crate::iam::allows(&p, who, perm));
    let by_repo = match repo {
        Some(name) => load_policy(c, name)?.is_some_and(|p| crate::iam::allows(&p, who, perm)),
        None => false,
    };
    if by_project || by_repo {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("Permission '{perm}' denied on resource '{resource}' (or it may not exist).")))
    }
}

fn load(c: &Connection, name: &str) -> ApiResult<Option<Value>> {
    let r: Option<String> = c
        .query_row("SELECT resource FROM ar_repositories WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(r.and_then(|s| serde_json::from_str(&s).ok()))
}

fn load_policy(c: &Connection, name: &str) -> ApiResult<Option<Value>> {
    let r: Option<String> = c
        .query_row("SELECT policy FROM ar_repositories WHERE name = ?1", [name], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    Ok(r.and_then(|s| serde_json::from_str(&s).ok()))
}

fn project_exists(c: &Connection, project: &str) -> ApiResult<bool> {
    Ok(c.query_row("SELECT COUNT(*) FROM projects WHERE id = ?1", [project], |r| r.get::<_, i64>(0)).map_err(sql)? > 0)
}

/// What a request names after `artifactregistry/v1/projects/P/locations/L/`.
enum Target {
    Repositories,
    Repository { id: String, verb: Option<String> },
    Operation { id: String },
}

fn parse_target(rest: &[&str]) -> Option<Target> {
    Some(match rest {
        ["repositories"] => Target::Repositories,
        ["repositories", id] => {
            let (id, verb) = match id.split_once(':') {
                Some((i, v)) => (i.to_string(), Some(v.to_string())),
                None => (id.to_string(), None),
            };
            Target::Repository { id, verb }
        }
        ["operations", id] => Target::Operation { id: id.to_string() },
        _ => return None,
    })
}

pub async fn handle(app: &App, r: &Req, body: Option<Value>) -> ApiResult<Response> {
    let segs = segments(&r.raw_path);
    let s: Vec<String> = segs.into_iter().skip(2).collect(); // after artifactregistry/v1
    let unserved = || ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Artifact Registry");
    if s.len() < 5 || s[0] != "projects" || s[2] != "locations" {
        return Err(unserved());
    }
    let (project, location) = (s[1].clone(), s[3].clone());
    let rest: Vec<&str> = s[4..].iter().map(String::as_str).collect();
    let target = parse_target(&rest).ok_or_else(unserved)?;
    let unserved = unserved();
    let (method, who, body) = (r.method.as_str().to_string(), r.principal.clone(), body.unwrap_or(json!({})));
    let repository_id = r.query("repositoryId").map(str::to_string);
    let v = app
        .store
        .call(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
            if !project_exists(&tx, &project)? {
                return Err(ApiError::forbidden(format!("Permission denied on resource project {project}.")));
            }
            if !valid_location(&location) {
                return Err(ApiError::bad_request(format!("Invalid location {location:?}.")));
            }
            let parent = format!("projects/{project}/locations/{location}");
            let out = match (method.as_str(), target) {
                ("POST", Target::Repositories) => create(&tx, &who, &project, &parent, repository_id, &body)?,
                ("GET", Target::Repository { id, verb: None }) => {
                    let name = format!("{parent}/repositories/{id}");
                    require(&tx, &who, &project, Some(&name), "artifactregistry.repositories.get", &name)?;
                    load(&tx, &name)?
                        .ok_or_else(|| ApiError::not_found(format!("Requested entity was not found. ({name})")))?
                }
                ("GET", Target::Repository { id, verb: Some(v) }) if v == "getIamPolicy" => {
                    let name = format!("{parent}/repositories/{id}");
                    require(&tx, &who, &project, Some(&name), "artifactregistry.repositories.getIamPolicy", &name)?;
                    if load(&tx, &name)?.is_none() {
                        return Err(ApiError::not_found(format!("Requested entity was not found. ({name})")));
                    }
                    crate::aip_iam::read(&tx, "ar_repositories", &name)?
                }
                ("POST", Target::Repository { id, verb: Some(v) }) if v == "setIamPolicy" => {
                    let name = format!("{parent}/repositories/{id}");
                    // Artifact Registry's SetIamPolicyRequest has no updateMask.
                    let policy = crate::aip_iam::requested_policy(&body, &["policy"])?;
                    require(&tx, &who, &project, Some(&name), "artifactregistry.repositories.setIamPolicy", &name)?;
                    if load(&tx, &name)?.is_none() {
                        return Err(ApiError::not_found(format!("Requested entity was not found. ({name})")));
                    }
                    let stale =
                        ApiError::new(409, "aborted", "The policy was changed concurrently; read it and retry.");
                    crate::aip_iam::write(&tx, "ar_repositories", &name, &policy, stale)?
                }
                ("GET", Target::Operation { id }) => {
                    let name = format!("{parent}/operations/{id}");
                    require(&tx, &who, &project, None, "artifactregistry.repositories.get", &name)?;
                    let op: Option<String> = tx
                        .query_row("SELECT resource FROM ar_operations WHERE name = ?1", [&name], |r| r.get(0))
                        .optional()
                        .map_err(sql)?;
                    op.and_then(|o| serde_json::from_str(&o).ok())
                        .ok_or_else(|| ApiError::not_found(format!("Operation {name} not found.")))?
                }
                _ => return Err(unserved),
            };
            tx.commit().map_err(sql)?;
            Ok(out)
        })
        .await?;
    Ok(json_response(v))
}

fn create(
    c: &Connection,
    who: &Identity,
    project: &str,
    parent: &str,
    id: Option<String>,
    body: &Value,
) -> ApiResult<Value> {
    require(c, who, project, None, "artifactregistry.repositories.create", parent)?;
    check_fields(body, REPOSITORY_FIELDS, "Repository")?;
    let mut body = body.clone();
    enum_by_name(&mut body, "format", FORMAT_NUMBERS)?;
    enum_by_name(&mut body, "mode", MODE_NUMBERS)?;
    let id = id.ok_or_else(|| ApiError::bad_request("repositoryId is required."))?;
    if !valid_repository_id(&id) {
        return Err(ApiError::bad_request(format!(
            "Invalid repository id {id:?}: use lowercase letters, digits and hyphens, starting with a letter and \
             ending with a letter or digit, at most 63 characters."
        )));
    }
    let format = body["format"].as_str().unwrap_or("").to_string();
    let format = format.as_str();
    if !FORMATS.contains(&format) {
        return Err(ApiError::bad_request(format!(
            "Invalid format {format:?}: one of {} is required.",
            FORMATS.join(", ")
        )));
    }
    let name = format!("{parent}/repositories/{id}");
    if load(c, &name)?.is_some() {
        return Err(ApiError::conflict(format!("the repository already exists ({name})")));
    }
    let location = parent.rsplit('/').next().unwrap_or("");
    let mode = body["mode"].as_str().unwrap_or("STANDARD_REPOSITORY").to_string();
    let mut repo = body;
    let now = now_rfc3339();
    repo["name"] = json!(name);
    repo["createTime"] = json!(now);
    repo["updateTime"] = json!(now);
    repo["mode"] = json!(mode);
    if format == "DOCKER" {
        repo["registryUri"] = json!(format!("{location}-docker.pkg.dev/{project}/{id}"));
    }
    c.execute(
        "INSERT INTO ar_repositories (name, project, resource, policy, policy_etag) VALUES (?1, ?2, ?3, '{}', 0)",
        params![name, project, repo.to_string()],
    )
    .map_err(sql)?;
    let op_name = format!("{parent}/operations/{}", uuid::Uuid::new_v4());
    let mut response = repo.clone();
    response["@type"] = json!("type.googleapis.com/google.devtools.artifactregistry.v1.Repository");
    let done = json!({
        "name": op_name,
        "metadata": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"},
        "done": true,
        "response": response,
    });
    c.execute("INSERT INTO ar_operations (name, resource) VALUES (?1, ?2)", params![op_name, done.to_string()])
        .map_err(sql)?;
    Ok(json!({
        "name": op_name,
        "metadata": {"@type": "type.googleapis.com/google.devtools.artifactregistry.v1.OperationMetadata"},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_ids_follow_artifact_registrys_rules() {
        for ok in ["dcr", "clean-room-1", &"a".repeat(63)] {
            assert!(valid_repository_id(ok), "{ok}");
        }
        for bad in ["", "1dcr", "Dcr", "dcr-", "dcr_x", &"a".repeat(64)] {
            assert!(!valid_repository_id(bad), "{bad}");
        }
    }
}
