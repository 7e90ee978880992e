//! The provider block: which cloud to talk to. No block means the embedded local cloud; a `gcp`
//! block means Google Cloud, with credentials and defaults from the usual environment.

use std::path::PathBuf;

use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value};

pub const DEFAULT_STATE_DIR: &str = ".dcr";
pub const DEFAULT_LOCAL_PROJECT: &str = "dcr-local";

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Configures where dcr builds clean rooms. With no block, or a `local` block, dcr runs its embedded \
             Google Cloud-compatible local cloud on this machine (no account needed). With a `gcp` block it \
             talks to Google Cloud through the same code path. Setting both is an error.",
        )
        .block(NestedBlock::single(
            "local",
            Block::new("The embedded local cloud (the default).")
                .attr(Attribute::optional(
                    "state_dir",
                    Type::String,
                    "Directory holding the local cloud's state (SQLite database, objects, keys). Relative \
                         paths are taken from Terraform's working directory. Defaults to `.dcr`. Several \
                         Terraform runs may share one state directory at the same time.",
                ))
                .attr(Attribute::optional(
                    "project",
                    Type::String,
                    "Project id used inside the local cloud. Defaults to `dcr-local`.",
                )),
        ))
        .block(NestedBlock::single(
            "gcp",
            Block::new(
                "Google Cloud. Credentials come from Application Default Credentials \
                     (`GOOGLE_APPLICATION_CREDENTIALS`, `gcloud auth application-default login`, or the \
                     metadata server) or `GOOGLE_OAUTH_ACCESS_TOKEN`.",
            )
            .attr(Attribute::optional(
                "project",
                Type::String,
                "Project id. Defaults to `GOOGLE_PROJECT`, `GOOGLE_CLOUD_PROJECT`, `GCLOUD_PROJECT` or \
                     `CLOUDSDK_CORE_PROJECT`.",
            ))
            .attr(Attribute::optional(
                "region",
                Type::String,
                "Default region. Defaults to `GOOGLE_REGION` or `CLOUDSDK_COMPUTE_REGION`.",
            ))
            .attr(Attribute::optional(
                "zone",
                Type::String,
                "Default zone. Defaults to `GOOGLE_ZONE` or `CLOUDSDK_COMPUTE_ZONE`.",
            ))
            .attr(Attribute::optional(
                "storage_endpoint",
                Type::String,
                "Override of the Cloud Storage JSON API base URL, e.g. \
                     `https://storage.googleapis.com/storage/v1/`. Uploads go to the same host under \
                     `upload/`.",
            ))
            .attr(Attribute::optional(
                "kms_endpoint",
                Type::String,
                "Override of the Cloud KMS base URL, e.g. `https://cloudkms.googleapis.com/v1/`.",
            ))
            .attr(Attribute::optional(
                "iam_endpoint",
                Type::String,
                "Override of the IAM base URL (workload identity pools), e.g. `https://iam.googleapis.com/v1/`.",
            ))
            .attr(Attribute::optional(
                "sts_endpoint",
                Type::String,
                "Override of the Security Token Service base URL, e.g. `https://sts.googleapis.com/v1/`.",
            ))
            .attr(Attribute::optional(
                "resource_manager_endpoint",
                Type::String,
                "Override of the Cloud Resource Manager base URL, e.g. \
                     `https://cloudresourcemanager.googleapis.com/v1/`.",
            ))
            .attr(Attribute::optional(
                "compute_endpoint",
                Type::String,
                "Override of the Compute Engine base URL, e.g. `https://compute.googleapis.com/compute/v1/`.",
            ))
            .attr(Attribute::optional(
                "artifact_registry_endpoint",
                Type::String,
                "Override of the Artifact Registry API base URL (repositories and their IAM, not the Docker \
                     registry itself), e.g. `https://artifactregistry.googleapis.com/v1/`.",
            )),
        )),
    )
}

#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    Local(LocalConfig),
    Gcp(GcpConfig),
}

#[derive(Clone, Debug, PartialEq)]
pub struct LocalConfig {
    pub state_dir: PathBuf,
    pub project: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GcpConfig {
    pub project: String,
    pub region: Option<String>,
    pub zone: Option<String>,
    pub storage_endpoint: Option<String>,
    pub kms_endpoint: Option<String>,
    pub iam_endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    pub resource_manager_endpoint: Option<String>,
    pub compute_endpoint: Option<String>,
    pub artifact_registry_endpoint: Option<String>,
}

/// The endpoint overrides of the `gcp` block, by attribute name.
pub const ENDPOINT_ATTRIBUTES: [&str; 7] = [
    "storage_endpoint",
    "kms_endpoint",
    "iam_endpoint",
    "sts_endpoint",
    "resource_manager_endpoint",
    "compute_endpoint",
    "artifact_registry_endpoint",
];

fn first_env(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()))
}

fn opt_str(v: &Value, name: &str) -> Option<String> {
    v.get(name).as_str().map(str::to_string)
}

/// Checks that hold whatever the environment: one backend at most, well-formed endpoints.
pub fn validate(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    if !config.get("local").is_null() && !config.get("gcp").is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("gcp"),
            "both `local` and `gcp` are configured",
            "A provider configuration talks to one cloud: remove the `local` block to use Google Cloud, or the \
             `gcp` block to use the embedded local cloud. Use two provider aliases for both.",
        ));
    }
    let gcp = config.get("gcp");
    for ep in ENDPOINT_ATTRIBUTES {
        if let Some(url) = gcp.get(ep).as_str()
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            d.push(Diagnostic::attribute_error(
                AttributePath::root("gcp").attr(ep),
                "not a URL",
                format!("{url:?} must be an http(s) URL such as \"https://storage.googleapis.com/storage/v1/\"."),
            ));
        }
    }
    d
}

/// Resolves the provider block and environment into a backend.
pub fn resolve(config: &Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Backend, Diagnostics> {
    let d = validate(config);
    if d.has_errors() {
        return Err(d);
    }
    let gcp = config.get("gcp");
    if !gcp.is_null() {
        let project = opt_str(gcp, "project")
            .or_else(|| {
                first_env(&["GOOGLE_PROJECT", "GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"], env)
            })
            .ok_or_else(|| {
                Diagnostics::from(Diagnostic::attribute_error(
                    AttributePath::root("gcp").attr("project"),
                    "no project",
                    "Set `project` in the gcp block or the GOOGLE_PROJECT environment variable.",
                ))
            })?;
        return Ok(Backend::Gcp(GcpConfig {
            project,
            region: opt_str(gcp, "region").or_else(|| first_env(&["GOOGLE_REGION", "CLOUDSDK_COMPUTE_REGION"], env)),
            zone: opt_str(gcp, "zone").or_else(|| first_env(&["GOOGLE_ZONE", "CLOUDSDK_COMPUTE_ZONE"], env)),
            storage_endpoint: opt_str(gcp, "storage_endpoint"),
            kms_endpoint: opt_str(gcp, "kms_endpoint"),
            iam_endpoint: opt_str(gcp, "iam_endpoint"),
            sts_endpoint: opt_str(gcp, "sts_endpoint"),
            resource_manager_endpoint: opt_str(gcp, "resource_manager_endpoint"),
            compute_endpoint: opt_str(gcp, "compute_endpoint"),
            artifact_registry_endpoint: opt_str(gcp, "artifact_registry_endpoint"),
        }));
    }
    let local = config.get("local");
    Ok(Backend::Local(LocalConfig {
        state_dir: PathBuf::from(opt_str(local, "state_dir").unwrap_or_else(|| DEFAULT_STATE_DIR.to_string())),
        project: opt_str(local, "project").unwrap_or_else(|| DEFAULT_LOCAL_PROJECT.to_string()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(local: Value, gcp: Value) -> Value {
        Value::object([("local", local), ("gcp", gcp)])
    }
    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn no_block_means_local_with_defaults() {
        let b = resolve(&cfg(Value::Null, Value::Null), &no_env).unwrap();
        assert_eq!(b, Backend::Local(LocalConfig { state_dir: PathBuf::from(".dcr"), project: "dcr-local".into() }));
    }

    #[test]
    fn both_blocks_is_an_error_naming_the_attribute() {
        let both = cfg(Value::object([("state_dir", Value::Null)]), Value::object([("project", Value::string("p"))]));
        let d = resolve(&both, &no_env).unwrap_err();
        assert!(d.0[0].summary.contains("both `local` and `gcp`"));
        assert_eq!(d.0[0].attribute, Some(AttributePath::root("gcp")));
    }

    #[test]
    fn gcp_project_falls_back_to_environment() {
        let env = |k: &str| (k == "GOOGLE_CLOUD_PROJECT").then(|| "from-env".to_string());
        let b = resolve(&cfg(Value::Null, Value::object([("project", Value::Null)])), &env).unwrap();
        assert!(matches!(b, Backend::Gcp(g) if g.project == "from-env"));
        assert!(resolve(&cfg(Value::Null, Value::object([("project", Value::Null)])), &no_env).is_err());
    }
}
