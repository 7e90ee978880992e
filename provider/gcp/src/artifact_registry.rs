//! Artifact Registry v1: the Docker repositories workload images are pushed to, and their IAM (the
//! VM's service account must read the image). Repository mutations are long-running operations;
//! the repository is read back once the operation is done rather than taken from its `response`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::GcpError;
use crate::iam::AipIam;
use crate::operation::{Operation, wait};
use crate::retry::Idempotency::NotIdempotent;
use crate::transport::Transport;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    #[serde(skip_serializing)]
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<std::collections::BTreeMap<String, String>>,
}

/// A Docker repository in Artifact Registry, as named by its pushable host path
/// `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY` (https://cloud.google.com/artifact-registry/docs/docker/names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerRepository {
    pub location: String,
    pub project: String,
    pub repository: String,
}

impl DockerRepository {
    /// Parses `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY[/...]`; `None` for other registries
    /// (gcr.io, which Artifact Registry serves from repositories it names itself, or any other host).
    pub fn from_registry(registry: &str) -> Option<DockerRepository> {
        let mut parts = registry.split('/');
        let host = parts.next()?;
        let location = host.strip_suffix("-docker.pkg.dev")?;
        let (project, repository) = (parts.next()?, parts.next()?);
        let ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        (ok(location) && ok(project) && ok(repository)).then(|| DockerRepository {
            location: location.to_string(),
            project: project.to_string(),
            repository: repository.to_string(),
        })
    }

    pub fn parent(&self) -> String {
        format!("projects/{}/locations/{}", self.project, self.location)
    }

    /// `projects/P/locations/L/repositories/R`.
    pub fn name(&self) -> String {
        format!("{}/repositories/{}", self.parent(), self.repository)
    }
}

#[derive(Clone)]
pub struct ArtifactRegistryClient {
    t: Arc<Transport>,
    base: String,
}

impl ArtifactRegistryClient {
    pub fn new(t: Arc<Transport>, base: &str) -> ArtifactRegistryClient {
        ArtifactRegistryClient { t, base: base.to_string() }
    }

    pub async fn get_repository(&self, name: &str) -> Result<Option<Repository>, GcpError> {
        let url = format!("{}{name}", self.base);
        self.t.json_opt(&format!("read repository {name}"), |c| c.get(&url)).await
    }

    /// Creates the repository, waits for the operation, and reads it back. A repository that
    /// already exists (409) is read and returned: another apply got there first.
    pub async fn create_repository(&self, repo: &DockerRepository, want: &Repository) -> Result<Repository, GcpError> {
        let name = repo.name();
        let what = format!("create repository {name}");
        let url = format!("{}{}/repositories", self.base, repo.parent());
        let sent = self
            .t
            .json::<Operation>(&what, NotIdempotent, |c| {
                c.post(&url).query(&[("repositoryId", repo.repository.as_str())]).json(want)
            })
            .await;
        match sent {
            Ok(op) => {
                wait(&self.t, &self.base, &what, op).await?;
            }
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        self.get_repository(&name).await?.ok_or_else(|| GcpError::Decode {
            operation: what,
            detail: "the operation finished but the repository cannot be read back (404)".into(),
        })
    }

    /// The repository's IAM policy (Artifact Registry's `SetIamPolicyRequest` has no `updateMask`).
    pub fn iam(&self, name: &str) -> AipIam {
        AipIam::new(self.t.clone(), &self.base, name, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_repositories_are_recognised_by_their_host() {
        let r = DockerRepository::from_registry("europe-west4-docker.pkg.dev/my-proj/clean-room").unwrap();
        assert_eq!(r.name(), "projects/my-proj/locations/europe-west4/repositories/clean-room");
        let r = DockerRepository::from_registry("us-docker.pkg.dev/example.com:proj/repo/sub").unwrap();
        assert_eq!(
            (r.location.as_str(), r.project.as_str(), r.repository.as_str()),
            ("us", "example.com:proj", "repo")
        );
        for other in
            ["gcr.io/p/r", "127.0.0.1:5000/dcr", "us-docker.pkg.dev/p", "docker.pkg.dev/p/r", "-docker.pkg.dev/p/r"]
        {
            assert_eq!(DockerRepository::from_registry(other), None, "{other}");
        }
    }
}
