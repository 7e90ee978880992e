//! Cloud Resource Manager v1, `projects.get`: what a client needs to learn a project's number.

use axum::response::Response;
use serde_json::json;

use crate::api::{ApiError, ApiResult, json_response};
use crate::api::{Req, segments};
use crate::app::App;

pub async fn handle(app: &App, r: &Req) -> ApiResult<Response> {
    let segs = segments(&r.raw_path);
    let s: Vec<&str> = segs.iter().skip(2).map(String::as_str).collect(); // after cloudresourcemanager/v1
    let ["projects", id] = s.as_slice() else {
        return Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Resource Manager"));
    };
    if r.method != axum::http::Method::GET {
        return Err(ApiError::unimplemented(r.method.as_str(), &r.raw_path, "Resource Manager"));
    }
    let (id, who) = (id.to_string(), r.principal.clone());
    let v = app
        .store
        .call(move |c| {
            let denied = || {
                ApiError::forbidden(format!(
                    "The caller does not have permission: resourcemanager.projects.get on project {id} (or it may not exist)."
                ))
            };
            let policy = crate::resource_manager::project_policy(c, &id)?.ok_or_else(denied)?;
            if !crate::iam::allows(&policy, &who, "resourcemanager.projects.get") {
                return Err(denied());
            }
            let number: String =
                c.query_row("SELECT number FROM projects WHERE id = ?1", [&id], |r| r.get(0)).map_err(crate::store::sql)?;
            Ok(json!({"projectId": id, "projectNumber": number, "name": id, "lifecycleState": "ACTIVE"}))
        })
        .await?;
    Ok(json_response(v))
}

/// The IAM policy of `project`, as the projects table stores it (none for an unknown project).
pub fn project_policy(c: &rusqlite::Connection, project: &str) -> ApiResult<Option<serde_json::Value>> {
    crate::store::load_policy(c, "SELECT policy FROM projects WHERE id = ?1", project)
}
