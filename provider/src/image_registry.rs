//! The registry a `dcr_workload` image goes to on Google Cloud. An Artifact Registry Docker
//! repository (`LOCATION-docker.pkg.dev/PROJECT/REPO`) is created when it does not exist (as
//! `gcloud artifacts repositories create --repository-format=docker` would), and the VM's service
//! account is made a reader of it: Confidential Space's launcher pulls the image with that
//! account's token (go-tpm-tools `launcher/registryauth`). Pushes to Google-hosted registries use
//! the provider's own credentials as `oauth2accesstoken`; other registries use the Docker config.

use dcr_gcp::artifact_registry::{DockerRepository, Repository};
use dcr_image::credentials::RegistryAuth;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use crate::clients::Clients;
use crate::resources::common::{gcp_diag, grant};

/// The role the VM's service account needs on the repository to pull.
pub const READER_ROLE: &str = "roles/artifactregistry.reader";

/// Makes the Artifact Registry repository `registry` names exist and lets `service_account` read
/// it. Registries that are not Artifact Registry Docker repositories are left as they are: their
/// owners grant pull access themselves.
pub async fn prepare(c: &Clients, registry: &str, service_account: &str) -> Result<(), Diagnostics> {
    let Some(repo) = DockerRepository::from_registry(registry) else {
        tracing::info!(registry, "not an Artifact Registry repository: pull access is the registry owner's to grant");
        return Ok(());
    };
    let name = repo.name();
    let existing =
        c.artifact_registry.get_repository(&name).await.map_err(|e| gcp_diag(&format!("Cannot read {name}"), e))?;
    if existing.is_none() {
        let want = Repository {
            format: Some("DOCKER".into()),
            description: Some("dcr workload images (created by terraform-provider-dcr)".into()),
            ..Default::default()
        };
        c.artifact_registry.create_repository(&repo, &want).await.map_err(|e| {
            Diagnostics::from(Diagnostic::attribute_error(
                AttributePath::root("registry"),
                format!("Cannot create the Artifact Registry repository {name}"),
                format!(
                    "{e}. Create it yourself (gcloud artifacts repositories create {} --repository-format=docker \
                     --location={} --project={}) or let the applier create repositories \
                     (roles/artifactregistry.admin).",
                    repo.repository, repo.location, repo.project
                ),
            ))
        })?;
    }
    grant(&c.artifact_registry.iam(&name), READER_ROLE, &format!("serviceAccount:{service_account}"), true).await
}

/// The credentials to push to `host` with: the provider's own Google token for Google-hosted
/// registries on the gcp backend, the Docker config otherwise.
pub async fn push_auth(c: &Clients, host: &str) -> Result<RegistryAuth, Diagnostics> {
    let token = if !c.is_local && dcr_image::credentials::is_google_registry(host) {
        Some(c.access_token().await.map_err(|e| gcp_diag("Cannot get an access token for the registry", e))?)
    } else {
        None
    };
    dcr_image::credentials::registry_auth(host, token.as_deref()).map_err(|e| {
        Diagnostics::from(Diagnostic::attribute_error(
            AttributePath::root("registry"),
            format!("Cannot find credentials for {host}"),
            e.to_string(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use dcr_gcp::iam::IamResource;

    use super::*;
    use crate::config::{Backend, LocalConfig};

    #[tokio::test(flavor = "multi_thread")]
    async fn a_missing_repository_is_created_and_the_vms_account_may_read_it() {
        let dir = std::env::temp_dir().join(format!("dcr-image-registry-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = Backend::Local(LocalConfig { state_dir: dir.clone(), project: "dcr-local".into() });
        let c = Clients::connect(&backend).await.expect("local cloud");
        let sa = "dcr-vm@dcr-local.iam.gserviceaccount.com";
        let name = "projects/dcr-local/locations/europe-west4/repositories/clean-room";
        assert!(c.artifact_registry.get_repository(name).await.unwrap().is_none());
        for _ in 0..2 {
            // The second time the repository exists and the grant is there: nothing changes.
            prepare(&c, "europe-west4-docker.pkg.dev/dcr-local/clean-room", sa).await.expect("prepared");
            let repo = c.artifact_registry.get_repository(name).await.unwrap().expect("created");
            assert_eq!(repo.format.as_deref(), Some("DOCKER"));
            let policy = c.artifact_registry.iam(name).get_policy().await.unwrap();
            assert_eq!(policy.members(READER_ROLE), vec![format!("serviceAccount:{sa}")]);
        }
        // Other registries are their owners' to manage.
        prepare(&c, "127.0.0.1:5000/dcr", sa).await.expect("left alone");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
