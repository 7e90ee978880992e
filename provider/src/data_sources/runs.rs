//! `data "dcr_runs"`: the audit trail of an output location. Every run released there, each
//! verified as `dcr verify` verifies one, and the runs that released nothing, from
//! `dcr_audit::list_runs` (shared with `dcr runs`); and every use of their datasets' keys, from
//! Cloud Audit Logs (`dcr_audit::key_accesses`).

use std::sync::Arc;

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use tfplugin6::model::{Attr, IntoValue, Model};
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{AttributePath, DataSource, Diagnostic, Diagnostics, Type, Value};

use crate::clients::Clients;
use crate::provider::ProviderState;

pub const TYPE_NAME: &str = "dcr_runs";

pub struct Runs {
    state: Arc<ProviderState>,
}

impl Runs {
    pub fn new(state: Arc<ProviderState>) -> Runs {
        Runs { state }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct RunsData {
    pub location: Attr<String>,
    pub policy: Attr<String>,
    pub runs: Attr<Vec<Run>>,
    pub key_accesses: Attr<Vec<KeyAccess>>,
}

#[derive(Clone, Debug, PartialEq, Model)]
pub struct KeyAccess {
    pub time: String,
    pub key: String,
    pub datasets: Vec<String>,
    pub principal: String,
    pub granted: bool,
    pub status: String,
}

#[derive(Clone, Debug, PartialEq, Model)]
pub struct Run {
    pub uri: String,
    pub workload: String,
    pub image_digest: String,
    pub released_at: String,
    pub manifest_sha256: String,
    pub inputs: Vec<RunInput>,
    pub outputs: Vec<String>,
    pub verified: bool,
    pub failed_check: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Model)]
pub struct RunInput {
    pub name: String,
    pub dataset: String,
    pub generation: String,
    pub policy: String,
    pub policy_version: i64,
}

fn input_type() -> Type {
    Type::object([
        ("name", Type::String),
        ("dataset", Type::String),
        ("generation", Type::String),
        ("policy", Type::String),
        ("policy_version", Type::Number),
    ])
}

fn key_access_type() -> Type {
    Type::object([
        ("time", Type::String),
        ("key", Type::String),
        ("datasets", Type::list(Type::String)),
        ("principal", Type::String),
        ("granted", Type::Bool),
        ("status", Type::String),
    ])
}

fn run_type() -> Type {
    Type::object([
        ("uri", Type::String),
        ("workload", Type::String),
        ("image_digest", Type::String),
        ("released_at", Type::String),
        ("manifest_sha256", Type::String),
        ("inputs", Type::list(input_type())),
        ("outputs", Type::list(Type::String)),
        ("verified", Type::Bool),
        ("failed_check", Type::String),
        ("detail", Type::String),
    ])
}

pub fn schema() -> Schema {
    Schema::new(
        0,
        Block::new(
            "Lists every run released under an output location, each verified as `dcr verify` verifies one (the \
             token's signature and audience, its nonce against the output manifest, the policy documents' versions \
             and hashes, the pinned digest, the hardware, every output's hash), and the runs that released nothing.",
        )
        .attr(
            Attribute::required(
                "location",
                Type::String,
                "`gs://BUCKET/` or `gs://BUCKET/PREFIX/`: a `dcr_workload`'s output bucket or prefix.",
            )
            .check(|l| {
                dcr_attestation::workload::split_gs_uri(l)
                    .map(|_| ())
                    .ok_or_else(|| format!("{l:?} is not gs://BUCKET/ or gs://BUCKET/PREFIX/"))
            }),
        )
        .attr(Attribute::optional("policy", Type::String, "Only runs with an input under this policy (its name)."))
        .attr(Attribute::computed(
            "runs",
            Type::list(run_type()),
            "The runs, in name order: `uri` (the run's location), `workload`, `image_digest`, `released_at` (RFC 3339, \
             from the token; empty when it does not verify), `manifest_sha256`, `inputs` (`name`, `dataset`, the \
             object `generation` read, `policy`, `policy_version`), `outputs`, `verified`, and for a run that is not, \
             `failed_check` (a `dcr verify` check, or the stage a run that released nothing stopped at) and `detail`.",
        ))
        .attr(Attribute::computed(
            "key_accesses",
            Type::list(key_access_type()),
            "Every Cloud KMS decrypt with the keys of the datasets these runs read, oldest first, from Cloud Audit \
             Logs: `time` (RFC 3339), `key`, `datasets` (`BUCKET/NAME`), `principal` (a workload identity pool's \
             `principal://…` for a TEE, an email for an account), `granted`, and `status` (why a refused call was \
             refused). On Google Cloud the key's project must have Data Access audit logs of \
             `cloudkms.googleapis.com` on (`google_project_iam_audit_config`, `DATA_READ`) and the caller needs \
             `roles/logging.privateLogViewer`; without them the list is empty and a warning says why.",
        )),
    )
}

#[async_trait]
impl dcr_audit::IssuerKeys for Clients {
    async fn jwks(&self, issuer: &str) -> Result<JwkSet, String> {
        self.issuer_jwks(issuer).await
    }
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[async_trait]
impl DataSource for Runs {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, config: Value) -> Result<(Value, Diagnostics), Diagnostics> {
        let mut data: RunsData = super::read_checked(&schema().block, &config, TYPE_NAME)?;
        let location = data.location.as_deref().unwrap_or_default().to_string();
        let clients = self.state.clients()?;
        let policy = data.policy.known().cloned();
        let found = dcr_audit::list_runs(&clients.storage, &location, clients.as_ref(), policy.as_deref())
            .await
            .map_err(|e| {
                Diagnostics::from(Diagnostic::attribute_error(
                    AttributePath::root("location"),
                    format!("cannot list the runs under {location}"),
                    e.to_string(),
                ))
            })?;
        let mut diags = Diagnostics::new();
        let accesses = match dcr_audit::key_accesses(&clients.storage, &clients.logging, &found).await {
            Ok(a) => a,
            Err(e) => {
                diags.push(Diagnostic::warning("The datasets' key accesses could not be read", e.to_string()));
                Vec::new()
            }
        };
        data.key_accesses = Attr::Known(
            accesses
                .into_iter()
                .map(|a| KeyAccess {
                    time: a.time,
                    key: a.key,
                    datasets: a.datasets,
                    principal: a.principal,
                    granted: a.granted,
                    status: a.status,
                })
                .collect(),
        );
        data.runs = Attr::Known(
            found
                .into_iter()
                .map(|r| Run {
                    uri: r.uri,
                    workload: r.workload,
                    image_digest: r.image_digest,
                    released_at: r.released_at.map(rfc3339).unwrap_or_default(),
                    manifest_sha256: r.manifest_sha256,
                    inputs: r
                        .inputs
                        .into_iter()
                        .map(|i| RunInput {
                            name: i.name,
                            dataset: i.dataset,
                            generation: i.generation,
                            policy: i.policy,
                            policy_version: i.policy_version as i64,
                        })
                        .collect(),
                    outputs: r.outputs,
                    verified: r.verified,
                    failed_check: r.failed_check.unwrap_or_default(),
                    detail: r.detail,
                })
                .collect(),
        );
        Ok((data.into_value(), diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_has_the_schemas_attributes() {
        tfplugin6::model::check_fields::<RunsData>(&schema().block).unwrap();
        tfplugin6::model::check_object_fields::<Run>(&run_type()).unwrap();
        tfplugin6::model::check_object_fields::<RunInput>(&input_type()).unwrap();
        tfplugin6::model::check_object_fields::<KeyAccess>(&key_access_type()).unwrap();
        assert_eq!(rfc3339(1_795_608_000), "2026-11-25T12:00:00Z");
    }
}
