//! Cloud Resource Manager v1: a project's number, which workload identity names and principal
//! identifiers need (`projects/NUMBER/...`) while everything else takes the project id.

use std::sync::Arc;

use serde::Deserialize;

use crate::error::GcpError;
use crate::retry::Idempotency::Idempotent;
use crate::transport::Transport;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub project_id: String,
    pub project_number: String,
    #[serde(default)]
    pub lifecycle_state: String,
}

#[derive(Clone)]
pub struct ResourceManagerClient {
    t: Arc<Transport>,
    base: String,
}

impl ResourceManagerClient {
    pub fn new(t: Arc<Transport>, base: &str) -> ResourceManagerClient {
        ResourceManagerClient { t, base: base.to_string() }
    }

    pub async fn get_project(&self, project_id: &str) -> Result<Project, GcpError> {
        let url = format!("{}projects/{}", self.base, crate::transport::segment(project_id));
        self.t.json(&format!("read project {project_id}"), Idempotent, |c| c.get(&url)).await
    }
}
