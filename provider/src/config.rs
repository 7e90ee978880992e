//! The provider block: which cloud to talk to. No block means the embedded local cloud; a `gcp`
//! block means Google Cloud, with credentials and defaults from the usual environment.

use std::path::PathBuf;

use tfplugin6::model::{self, Attr, Model};
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
            ))
            .attr(Attribute::optional(
                "logging_endpoint",
                Type::String,
                "Override of the Cloud Logging API base URL (where `dcr_runs` reads the audit logs of key \
                     accesses), e.g. `https://logging.googleapis.com/v2/`.",
            )),
        )),
    )
}

#[derive(Clone, Debug, PartialEq)]
pub enum Backend {
    Local(LocalConfig),
    /// Boxed: its endpoint overrides make it several times the local variant's size.
    Gcp(Box<GcpConfig>),
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
    pub logging_endpoint: Option<String>,
}

/// The provider block as Terraform sends it.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ProviderBlock {
    pub local: Attr<LocalBlock>,
    pub gcp: Attr<GcpBlock>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct LocalBlock {
    pub state_dir: Attr<String>,
    pub project: Attr<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct GcpBlock {
    pub project: Attr<String>,
    pub region: Attr<String>,
    pub zone: Attr<String>,
    pub storage_endpoint: Attr<String>,
    pub kms_endpoint: Attr<String>,
    pub iam_endpoint: Attr<String>,
    pub sts_endpoint: Attr<String>,
    pub resource_manager_endpoint: Attr<String>,
    pub compute_endpoint: Attr<String>,
    pub artifact_registry_endpoint: Attr<String>,
    pub logging_endpoint: Attr<String>,
}

impl GcpBlock {
    /// The endpoint overrides, with their attribute names (for diagnostics).
    fn endpoints(&self) -> [(&'static str, &Attr<String>); 8] {
        [
            ("storage_endpoint", &self.storage_endpoint),
            ("kms_endpoint", &self.kms_endpoint),
            ("iam_endpoint", &self.iam_endpoint),
            ("sts_endpoint", &self.sts_endpoint),
            ("resource_manager_endpoint", &self.resource_manager_endpoint),
            ("compute_endpoint", &self.compute_endpoint),
            ("artifact_registry_endpoint", &self.artifact_registry_endpoint),
            ("logging_endpoint", &self.logging_endpoint),
        ]
    }
}

fn first_env(names: &[&str], env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    names.iter().find_map(|n| env(n).filter(|v| !v.is_empty()))
}

fn owned(a: &Attr<String>) -> Option<String> {
    a.known().cloned()
}

/// Checks that hold whatever the environment: one backend at most, well-formed endpoints.
pub fn validate(config: &Value) -> Diagnostics {
    match model::read::<ProviderBlock>(config, "provider configuration") {
        Ok(block) => validate_block(&block),
        Err(d) => d,
    }
}

fn validate_block(block: &ProviderBlock) -> Diagnostics {
    let mut d = Diagnostics::new();
    if !block.local.is_null() && !block.gcp.is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("gcp"),
            "both `local` and `gcp` are configured",
            "A provider configuration talks to one cloud: remove the `local` block to use Google Cloud, or the \
             `gcp` block to use the embedded local cloud. Use two provider aliases for both.",
        ));
    }
    for (ep, url) in block.gcp.known().map(GcpBlock::endpoints).into_iter().flatten() {
        if let Some(url) = url.as_deref()
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
    let block: ProviderBlock = model::read(config, "provider configuration")?;
    let d = validate_block(&block);
    if d.has_errors() {
        return Err(d);
    }
    if let Some(gcp) = block.gcp.known() {
        let project = owned(&gcp.project)
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
        return Ok(Backend::Gcp(Box::new(GcpConfig {
            project,
            region: owned(&gcp.region).or_else(|| first_env(&["GOOGLE_REGION", "CLOUDSDK_COMPUTE_REGION"], env)),
            zone: owned(&gcp.zone).or_else(|| first_env(&["GOOGLE_ZONE", "CLOUDSDK_COMPUTE_ZONE"], env)),
            storage_endpoint: owned(&gcp.storage_endpoint),
            kms_endpoint: owned(&gcp.kms_endpoint),
            iam_endpoint: owned(&gcp.iam_endpoint),
            sts_endpoint: owned(&gcp.sts_endpoint),
            resource_manager_endpoint: owned(&gcp.resource_manager_endpoint),
            compute_endpoint: owned(&gcp.compute_endpoint),
            artifact_registry_endpoint: owned(&gcp.artifact_registry_endpoint),
            logging_endpoint: owned(&gcp.logging_endpoint),
        })));
    }
    let local = block.local.known().cloned().unwrap_or_default();
    Ok(Backend::Local(LocalConfig {
        state_dir: PathBuf::from(owned(&local.state_dir).unwrap_or_else(|| DEFAULT_STATE_DIR.to_string())),
        project: owned(&local.project).unwrap_or_else(|| DEFAULT_LOCAL_PROJECT.to_string()),
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
    fn the_models_match_the_schema() {
        let block = schema().block;
        model::check_fields::<ProviderBlock>(&block).unwrap();
        let nested = |name: &str| &block.blocks.iter().find(|b| b.name == name).unwrap().block;
        model::check_fields::<LocalBlock>(nested("local")).unwrap();
        model::check_fields::<GcpBlock>(nested("gcp")).unwrap();
    }

    #[test]
    fn an_endpoint_that_is_not_a_url_is_named() {
        let gcp = Value::object([("project", Value::string("p")), ("kms_endpoint", Value::string("cloudkms"))]);
        let d = resolve(&cfg(Value::Null, gcp), &no_env).unwrap_err();
        assert_eq!(d.0[0].attribute, Some(AttributePath::root("gcp").attr("kms_endpoint")));
    }

    #[test]
    fn gcp_project_falls_back_to_environment() {
        let env = |k: &str| (k == "GOOGLE_CLOUD_PROJECT").then(|| "from-env".to_string());
        let b = resolve(&cfg(Value::Null, Value::object([("project", Value::Null)])), &env).unwrap();
        assert!(matches!(b, Backend::Gcp(g) if g.project == "from-env"));
        assert!(resolve(&cfg(Value::Null, Value::object([("project", Value::Null)])), &no_env).is_err());
    }
}
