//! `dcr_policy`: who may read a data owner's datasets. A workload identity pool and an OIDC
//! provider trusting the attestation issuer, whose attribute condition — generated from the
//! policy's rules and shown in the plan — admits only approved image digests on the required
//! hardware; grants for the pool's principals (decrypt on each dataset's key, read on its bucket);
//! and the policy document, stored where an attested workload can read it.
//!
//! Like `dcr_dataset`, apply converges: each step checks what exists and does what is missing, so
//! a failed apply is finished by the next one, and a pool or provider deleted outside Terraform
//! (soft-deleted, on Google Cloud) is brought back by undeleting it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER, STS_AUDIENCE, is_sha256_digest};
use dcr_attestation::condition::{PolicyRules, attribute_condition, attribute_mapping};
use dcr_attestation::names::{self, PolicyLocation};
use dcr_attestation::policy::{AttestationRules, DatasetRef, FORMAT, OBJECT, OutputRules, PolicyDocument};
use dcr_gcp::iam::IamResource;
use dcr_gcp::storage::Object;
use dcr_gcp::workload_identity::{
    Oidc, WorkloadIdentityPool, WorkloadIdentityPoolProvider, audience, is_deleted, pool_name, pool_principal_set,
};
use tfplugin6::plan;
use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{
    ApplyRequest, ApplyResponse, AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, ReadResponse,
    Resource, Severity, Type, Value,
};

use crate::clients::Clients;
use crate::provider::ProviderState;
use crate::resources::common::{
    self, apply_converging, empty_and_delete_bucket, ensure_bucket, gcp_diag, grant, private_bucket, read_object,
    read_response, settle,
};
use crate::resources::dataset::{LocatedDataset, locate, parse_id};
use crate::{timeouts, validate};

pub const TYPE_NAME: &str = "dcr_policy";
const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Every dcr pool has one provider, trusting the attestation issuer.
pub const PROVIDER_ID: &str = "attestation";
/// Pool ids are `dcr-NAME`; Google allows 32 characters.
const MAX_NAME: usize = names::MAX_POLICY_NAME;
const DECRYPTER: &str = "roles/cloudkms.cryptoKeyDecrypter";
const OBJECT_VIEWER: &str = "roles/storage.objectViewer";
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_OUTPUT_EXTENSIONS: [&str; 3] = ["csv", "json", "txt"];
const MAX_OUTPUT_BYTES: u64 = 5 << 40;
/// The inputs the attribute condition is generated from.
const RULE_INPUTS: [&str; 5] = [
    "allowed_image_digests",
    "require_confidential_hardware",
    "allowed_hardware",
    "allow_debug",
    "require_stable_image",
];

pub struct PolicyResource {
    state: Arc<ProviderState>,
}

impl PolicyResource {
    pub fn new(state: Arc<ProviderState>) -> PolicyResource {
        PolicyResource { state }
    }
}

pub fn schema() -> Schema {
    let output = Block::new(
        "What may leave the TEE when a workload read these datasets. The launcher checks every output file \
         against the rules of every input's policy and releases nothing if one fails. Without this block the \
         defaults below apply.",
    )
    .attr(
        Attribute::optional_computed("max_bytes", Type::Number, "Largest total size of the released files, in bytes.")
            .default(Value::int(DEFAULT_MAX_OUTPUT_BYTES as i64)),
    )
    .attr(
        Attribute::optional_computed(
            "allowed_extensions",
            Type::set(Type::String),
            "File extensions that may be released, without the dot (`csv`).",
        )
        .default(string_set(&DEFAULT_OUTPUT_EXTENSIONS.map(str::to_string))),
    )
    .attr(Attribute::optional(
        "readers",
        Type::set(Type::String),
        "IAM members who may read released output, besides the consumer who ran the workload.",
    ));
    Schema::new(
        0,
        Block::new(
            "An attestation-gated access policy over one data owner's datasets: only workloads whose image digest is \
             listed, attested by the issuer on the required hardware, can exchange their attestation token for \
             access (Storage read on each dataset's bucket, KMS decrypt on its key). Approving a notebook is adding \
             its image digest to `allowed_image_digests`; the generated `attribute_condition` shows in the plan.",
        )
        .attr(Attribute::computed("id", Type::String, "The policy name; also the import id."))
        .attr(
            Attribute::required(
                "name",
                Type::String,
                "Policy name: 4 to 28 lowercase letters, digits and `-`, starting with a letter. It names the \
                 workload identity pool (`dcr-NAME`).",
            )
            .requires_replace(),
        )
        .attr(Attribute::required(
            "datasets",
            Type::set(Type::String),
            "Ids of the `dcr_dataset`s the policy covers (`dcr_dataset.x.id`), at least one.",
        ))
        .attr(Attribute::required(
            "allowed_image_digests",
            Type::set(Type::String),
            "Image digests (`sha256:` and 64 hex digits) of the workloads allowed to read the datasets. Empty means \
             nothing may read yet. Removing a digest revokes it for new token exchanges.",
        ))
        .attr(
            Attribute::optional_computed(
                "require_confidential_hardware",
                Type::Bool,
                "Require Confidential Space on confidential hardware (`swname` CONFIDENTIAL_SPACE, `hwmodel` in \
                 `allowed_hardware`).",
            )
            .default_described(
                "`true` on `gcp`, where it cannot be turned off, and `false` on `local`, whose simulated TEE is not \
                 confidential hardware",
            ),
        )
        .attr(
            Attribute::optional_computed(
                "allowed_hardware",
                Type::set(Type::String),
                &format!(
                    "Hardware accepted when confidential hardware is required: any of {}.",
                    CONFIDENTIAL_HARDWARE.map(|h| format!("`{h}`")).join(", ")
                ),
            )
            .default_described("all of them when `require_confidential_hardware` is `true`, else none"),
        )
        .attr(
            Attribute::optional_computed(
                "allow_debug",
                Type::Bool,
                "Accept debug images (`dbgstat` other than `disabled-since-boot`), whose operators can inspect the \
                 workload; `true` is refused on `gcp`. The local simulated TEE reports a debug status, so local \
                 policies that should accept local workloads set `true`.",
            )
            .default(Value::Bool(false)),
        )
        .attr(
            Attribute::optional_computed(
                "require_stable_image",
                Type::Bool,
                "Require a Confidential Space image Google still supports (`STABLE` in `support_attributes`).",
            )
            .default_described("`true` on `gcp` and `false` on `local`"),
        )
        .attr(
            Attribute::optional_computed("issuer", Type::String, "The attestation token issuer the provider trusts.")
                .default_described(&format!(
                    "Google's Confidential Space issuer (`{GOOGLE_ISSUER}`) on `gcp` and dcr's simulated issuer \
                     (`{LOCAL_ISSUER}`) on `local`"
                )),
        )
        .attr(
            Attribute::optional_computed("bucket", Type::String, "Bucket holding the policy document.")
                .default_described("`PROJECT-policy-NAME`")
                .requires_replace(),
        )
        .attr(
            Attribute::optional_computed("location", Type::String, "Location of the policy bucket.")
                .default(Value::string("US"))
                .requires_replace(),
        )
        .attr(Attribute::computed("project_number", Type::String, "Number of the project holding the pool."))
        .attr(Attribute::computed(
            "pool",
            Type::String,
            "Full name of the workload identity pool (`projects/NUMBER/locations/global/workloadIdentityPools/dcr-NAME`).",
        ))
        .attr(Attribute::computed(
            "workload_identity_provider",
            Type::String,
            "Full name of the pool's OIDC provider (`.../providers/attestation`).",
        ))
        .attr(Attribute::computed(
            "audience",
            Type::String,
            "Where a workload exchanges its attestation token at STS: `//iam.googleapis.com/` and the provider's name.",
        ))
        .attr(Attribute::computed(
            "principal_set",
            Type::String,
            "The IAM member standing for every workload the pool admits (`principalSet://.../*`).",
        ))
        .attr(Attribute::computed(
            "attribute_condition",
            Type::String,
            "The CEL condition the provider enforces on every token, generated from the rules above.",
        ))
        .attr(Attribute::computed(
            "attribute_mapping",
            Type::map(Type::String),
            "How token claims map to the federated identity (`google.subject`, `attribute.image_digest`, ...).",
        ))
        .attr(Attribute::computed(
            "dataset_keys",
            Type::map(Type::String),
            "For each dataset id, the KMS key the policy grants decrypt on.",
        ))
        .attr(Attribute::computed("policy_uri", Type::String, "`gs://` URI of the policy document."))
        .attr(Attribute::computed(
            "policy_version",
            Type::Number,
            "Version of the policy document; it increases whenever the document changes.",
        ))
        .attr(Attribute::computed("policy_sha256", Type::String, "SHA-256 of the policy document (hex)."))
        .block(NestedBlock::single("output", output))
        .block(timeouts::block("10m")),
    )
}

// ---------------------------------------------------------------------------------------------
// configuration checks (pure)

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v.elements().iter().filter_map(|e| e.as_str().map(str::to_string)).collect();
    out.sort();
    out.dedup();
    out
}

fn string_set(items: &[String]) -> Value {
    Value::Set(items.iter().map(Value::string).collect())
}

pub fn policy_name(name: &str) -> Result<(), String> {
    let ok = (4..=MAX_NAME).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 4 to {MAX_NAME} characters of lowercase letters, digits and '-', starting with a letter \
             and not ending with '-'"
        ))
    }
}

fn extension(e: &str) -> Result<(), String> {
    if let Some(rest) = e.strip_prefix('.') {
        return Err(format!("{e:?}: write extensions without the dot, e.g. {rest:?}"));
    }
    if e.is_empty() || e.len() > 16 || !e.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!("{e:?} is not a file extension: 1 to 16 lowercase letters or digits"));
    }
    Ok(())
}

/// Everything about the configuration that holds whatever the backend. Unknown values are skipped.
pub fn validate_config(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    let at = AttributePath::root;
    if let Some(n) = config.get("name").as_str()
        && let Err(e) = policy_name(n)
    {
        d.push(Diagnostic::attribute_error(at("name"), e, "The pool is named dcr-NAME, at most 32 characters."));
    }
    let datasets = config.get("datasets");
    if matches!(datasets, Value::Set(v) | Value::List(v) if v.is_empty()) {
        d.push(Diagnostic::attribute_error(
            at("datasets"),
            "a policy must cover at least one dataset",
            "List the ids of the dcr_datasets the policy governs, e.g. [dcr_dataset.patients.id].",
        ));
    }
    for id in datasets.elements().iter().filter_map(Value::as_str) {
        if let Err(e) = parse_id(id) {
            d.push(Diagnostic::attribute_error(at("datasets"), e, ""));
        }
    }
    for digest in config.get("allowed_image_digests").elements().iter().filter_map(Value::as_str) {
        if !is_sha256_digest(digest) {
            d.push(Diagnostic::attribute_error(
                at("allowed_image_digests"),
                format!("{digest:?} is not an image digest"),
                "An image digest is \"sha256:\" followed by 64 lowercase hex digits, as `data.dcr_image_digest` or \
                 `crane digest` print it. Tags are not accepted: they can be moved to other images.",
            ));
        }
    }
    let hardware = config.get("allowed_hardware");
    for h in hardware.elements().iter().filter_map(Value::as_str) {
        if !CONFIDENTIAL_HARDWARE.contains(&h) {
            d.push(Diagnostic::attribute_error(
                at("allowed_hardware"),
                format!("unknown hardware {h:?}"),
                format!("Confidential Space reports one of: {}.", CONFIDENTIAL_HARDWARE.join(", ")),
            ));
        }
    }
    if matches!(hardware, Value::Set(v) if v.is_empty()) {
        d.push(Diagnostic::attribute_error(
            at("allowed_hardware"),
            "no hardware allowed",
            "An empty list would refuse every workload; leave allowed_hardware out to accept all confidential hardware.",
        ));
    }
    if !hardware.is_null()
        && !hardware.is_unknown()
        && config.get("require_confidential_hardware").as_bool() == Some(false)
    {
        d.push(Diagnostic::attribute_error(
            at("allowed_hardware"),
            "allowed_hardware applies only when require_confidential_hardware = true",
            "",
        ));
    }
    if let Some(i) = config.get("issuer").as_str()
        && !(i.starts_with("https://") && i.len() > "https://".len() && !i.contains(char::is_whitespace))
    {
        d.push(Diagnostic::attribute_error(
            at("issuer"),
            format!("{i:?} is not an https URL"),
            format!("An OIDC issuer is an https URL, e.g. {GOOGLE_ISSUER:?}."),
        ));
    }
    if let Some(b) = config.get("bucket").as_str()
        && let Err(e) = validate::bucket_name(b)
    {
        d.push(Diagnostic::attribute_error(at("bucket"), e, ""));
    }
    let output = config.get("output");
    let out = |a: &str| at("output").attr(a);
    if let Some(n) = output.get("max_bytes").as_f64()
        && (n < 1.0 || n.fract() != 0.0 || n > MAX_OUTPUT_BYTES as f64)
    {
        d.push(Diagnostic::attribute_error(
            out("max_bytes"),
            format!("{n} is not a whole number of bytes between 1 and {MAX_OUTPUT_BYTES}"),
            "",
        ));
    }
    let exts = output.get("allowed_extensions");
    if matches!(exts, Value::Set(v) if v.is_empty()) {
        d.push(Diagnostic::attribute_error(
            out("allowed_extensions"),
            "no extension allowed",
            "Nothing could be released.",
        ));
    }
    for e in exts.elements().iter().filter_map(Value::as_str) {
        if let Err(e) = extension(e) {
            d.push(Diagnostic::attribute_error(out("allowed_extensions"), e, ""));
        }
    }
    for r in output.get("readers").elements().iter().filter_map(Value::as_str) {
        if let Err(e) = validate::reader_member(r) {
            d.push(Diagnostic::attribute_error(out("readers"), e, ""));
        }
    }
    d.extend(timeouts::validate(config));
    d
}

/// The rules in force, with the backend's defaults filled in; and what the backend refuses.
pub fn effective_rules(config: &Value, is_local: bool) -> Result<(PolicyRules, String, Diagnostics), Diagnostics> {
    let mut d = Diagnostics::new();
    let at = AttributePath::root;
    let require_hw = config.get("require_confidential_hardware").as_bool().unwrap_or(!is_local);
    let allow_debug = config.get("allow_debug").as_bool().unwrap_or(false);
    if !is_local && !require_hw {
        d.push(Diagnostic::attribute_error(
            at("require_confidential_hardware"),
            "confidential hardware cannot be turned off on gcp",
            "Without it any VM in any project could present a valid Google-signed token. `false` is for the local \
             backend, whose simulated TEE is not confidential hardware.",
        ));
    }
    if !is_local && require_hw && allow_debug {
        d.push(Diagnostic::attribute_error(
            at("allow_debug"),
            "debug images cannot be allowed when confidential hardware is required on gcp",
            "An operator can log in to a debug Confidential Space VM and read the data in the clear. Remove \
             allow_debug (or set it to false).",
        ));
    }
    if is_local && !require_hw && !allow_debug {
        d.push(
            Diagnostic::warning(
                "This policy refuses every workload the local cloud runs",
                "The local backend's simulated TEE reports dbgstat = \"enabled\" (it is not confidential hardware and \
                 hides nothing from this machine). Set allow_debug = true to accept local workloads.",
            )
            .at(at("allow_debug")),
        );
    }
    if d.has_errors() {
        return Err(d);
    }
    let hardware = match config.get("allowed_hardware") {
        v @ Value::Set(_) => strings(v),
        _ if require_hw => CONFIDENTIAL_HARDWARE.iter().map(|s| s.to_string()).collect(),
        _ => Vec::new(),
    };
    let rules = PolicyRules {
        allowed_image_digests: strings(config.get("allowed_image_digests")),
        require_confidential_hardware: require_hw,
        allowed_hardware: hardware,
        allow_debug,
        require_stable_image: config.get("require_stable_image").as_bool().unwrap_or(!is_local),
    };
    let issuer = config
        .get("issuer")
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| if is_local { LOCAL_ISSUER } else { GOOGLE_ISSUER }.to_string());
    Ok((rules, issuer, d))
}

/// The generated condition, checked as the cloud will check it (CEL syntax, Google's length limit).
pub fn checked_condition(rules: &PolicyRules) -> Result<String, Diagnostics> {
    let condition = attribute_condition(rules);
    dcr_attestation::cel::check_condition(&condition).map_err(|e| {
        Diagnostics::from(Diagnostic::attribute_error(
            AttributePath::root("allowed_image_digests"),
            "the generated attribute condition is too long or invalid",
            format!(
                "{e} With {} digests the condition exceeds what Google accepts: remove digests that are no longer \
                 approved, or split the datasets over several policies.",
                rules.allowed_image_digests.len()
            ),
        ))
    })?;
    Ok(condition)
}

// ---------------------------------------------------------------------------------------------
// planning (pure)

/// What plan learned from the cloud.
#[derive(Clone, Debug, Default)]
pub struct PlanFacts {
    pub project: String,
    pub project_number: String,
    pub is_local: bool,
    /// Every dataset of the config, located; `None` while some id is unknown.
    pub datasets: Option<Vec<LocatedDataset>>,
}

fn output_rules(config: &Value) -> OutputRules {
    let output = config.get("output");
    OutputRules {
        max_bytes: output.get("max_bytes").as_i64().map(|n| n as u64).unwrap_or(DEFAULT_MAX_OUTPUT_BYTES),
        allowed_extensions: match output.get("allowed_extensions") {
            v @ Value::Set(_) => strings(v),
            _ => DEFAULT_OUTPUT_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        },
        readers: strings(output.get("readers")),
    }
}

/// The policy document a state describes (its `version` as given).
pub fn document(state: &Value, rules: &PolicyRules, datasets: &[LocatedDataset], version: u64) -> PolicyDocument {
    let s = |a: &str| state.get(a).as_str().unwrap_or_default().to_string();
    PolicyDocument {
        format: FORMAT.to_string(),
        name: s("name"),
        version,
        issuer: s("issuer"),
        audience: s("audience"),
        workload_identity_provider: s("workload_identity_provider"),
        attribute_condition: s("attribute_condition"),
        datasets: datasets
            .iter()
            .map(|l| DatasetRef {
                id: l.location.id(),
                object_uri: l.location.object_uri(),
                crypto_key: l.crypto_key.clone(),
            })
            .collect(),
        rules: AttestationRules {
            allowed_image_digests: rules.allowed_image_digests.clone(),
            require_confidential_hardware: rules.require_confidential_hardware,
            allowed_hardware: rules.allowed_hardware.clone(),
            allow_debug: rules.allow_debug,
            require_stable_image: rules.require_stable_image,
        },
        output: output_rules(state),
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

/// The planned state: configuration, defaults, names derived from the project number, the
/// generated condition, and the policy document's version and hash (a new version when its content
/// differs from what the prior state recorded).
pub fn plan_state(
    prior: &Value,
    config: &Value,
    rules: &PolicyRules,
    issuer: &str,
    condition: Option<&str>,
    facts: &PlanFacts,
) -> (Value, Vec<AttributePath>) {
    let schema = schema();
    let mut planned = config.clone();
    plan::fill_defaults(&schema.block, &mut planned);
    // Optional attributes the configuration left out take the backend's defaults; set ones
    // (known or not yet known) stay as configured.
    let mut default = |attr: &str, v: Value| {
        if config.get(attr).is_null() {
            planned.set(attr, v);
        }
    };
    let require_hw = config.get("require_confidential_hardware");
    default("require_confidential_hardware", Value::Bool(rules.require_confidential_hardware));
    default(
        "allowed_hardware",
        match require_hw {
            Value::Unknown => Value::Unknown,
            _ if rules.require_confidential_hardware => string_set(&rules.allowed_hardware),
            _ => Value::Null,
        },
    );
    default("require_stable_image", Value::Bool(rules.require_stable_image));
    default("issuer", Value::string(issuer));
    let name = config.get("name").as_str().map(str::to_string);
    default(
        "bucket",
        name.as_ref()
            .map(|n| Value::string(PolicyLocation::default_bucket(&facts.project, n)))
            .unwrap_or(Value::Unknown),
    );
    let bucket = planned.get("bucket").clone();
    planned.set("id", Value::opt_string(name.clone()));
    planned.set("project_number", Value::string(&facts.project_number));
    let (pool, provider) = match &name {
        Some(n) => {
            let pool = pool_name(&facts.project_number, &names::policy_pool_id(n));
            let provider = format!("{pool}/providers/{PROVIDER_ID}");
            (Value::string(&pool), Value::string(provider))
        }
        None => (Value::Unknown, Value::Unknown),
    };
    planned.set("audience", provider.as_str().map(|p| Value::string(audience(p))).unwrap_or(Value::Unknown));
    planned.set("principal_set", pool.as_str().map(|p| Value::string(pool_principal_set(p))).unwrap_or(Value::Unknown));
    planned.set("pool", pool);
    planned.set("workload_identity_provider", provider);
    planned.set("attribute_condition", condition.map(Value::string).unwrap_or(Value::Unknown));
    planned.set(
        "attribute_mapping",
        Value::Map(attribute_mapping().into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
    );
    planned.set(
        "policy_uri",
        bucket.as_str().map(|b| Value::string(PolicyLocation::new(b).document_uri())).unwrap_or(Value::Unknown),
    );

    let requires_replace = plan::replacements(&schema.block, prior, &planned);
    let fresh = prior.is_null() || !requires_replace.is_empty();
    match &facts.datasets {
        Some(located) if known_except(&planned, &["dataset_keys", "policy_version", "policy_sha256", "timeouts"]) => {
            planned.set(
                "dataset_keys",
                Value::Map(located.iter().map(|l| (l.location.id(), Value::string(&l.crypto_key))).collect()),
            );
            let prior_version = if fresh { None } else { prior.get("policy_version").as_i64().map(|v| v as u64) };
            let unchanged = |v: u64| sha256_hex(&document(&planned, rules, located, v).to_bytes());
            let (version, sha) = match prior_version {
                Some(v) if prior.get("policy_sha256").as_str() == Some(unchanged(v).as_str()) => (v, unchanged(v)),
                Some(v) => (v + 1, unchanged(v + 1)),
                None => (1, unchanged(1)),
            };
            planned.set("policy_version", Value::int(version as i64));
            planned.set("policy_sha256", Value::string(sha));
        }
        _ => {
            planned.set("dataset_keys", Value::Unknown);
            planned.set("policy_version", Value::Unknown);
            planned.set("policy_sha256", Value::Unknown);
        }
    }
    (planned, requires_replace)
}

/// Whether every attribute of `v` but `skip` is wholly known (the document depends on all of them).
fn known_except(v: &Value, skip: &[&str]) -> bool {
    v.entries().is_some_and(|m| m.iter().all(|(k, v)| skip.contains(&k.as_str()) || v.is_wholly_known()))
}

// ---------------------------------------------------------------------------------------------
// cloud steps

fn want_pool(name: &str) -> WorkloadIdentityPool {
    WorkloadIdentityPool {
        display_name: Some(format!("dcr {name}")),
        description: Some(format!("Workloads admitted by dcr_policy {name:?} (managed by Terraform)")),
        ..Default::default()
    }
}

fn want_provider(state: &Value) -> WorkloadIdentityPoolProvider {
    let s = |a: &str| state.get(a).as_str().map(str::to_string);
    WorkloadIdentityPoolProvider {
        display_name: Some("attestation".into()),
        description: Some("Confidential Space attestation tokens (managed by dcr)".into()),
        attribute_mapping: attribute_mapping(),
        attribute_condition: s("attribute_condition"),
        oidc: Some(Oidc {
            issuer_uri: s("issuer").unwrap_or_default(),
            allowed_audiences: vec![STS_AUDIENCE.to_string()],
            jwks_json: None,
        }),
        ..Default::default()
    }
}

fn str_attr(v: &Value, a: &str) -> Result<String, Diagnostics> {
    common::str_attr(TYPE_NAME, v, a)
}

/// The error for a dataset id that names no dataset.
fn missing_dataset(id: &str) -> Diagnostics {
    Diagnostic::attribute_error(
        AttributePath::root("datasets"),
        format!("dataset {id:?} does not exist"),
        "Name an existing dcr_dataset by its id (`dcr_dataset.NAME.id`); a dataset created in the same apply is \
         found once it exists.",
    )
    .into()
}

/// The datasets of `planned`, located in the cloud; a missing one is an error naming it.
async fn locate_all(c: &Clients, ids: &[String]) -> Result<Vec<LocatedDataset>, Diagnostics> {
    let mut out = Vec::new();
    for id in ids {
        out.push(locate(c, id).await?.ok_or_else(|| missing_dataset(id))?);
    }
    Ok(out)
}

/// About a null element of allowed_image_digests: a warning at plan, an error at apply.
fn null_digest_diagnostic(severity: Severity) -> Diagnostic {
    let at = AttributePath::root("allowed_image_digests");
    Diagnostic {
        severity,
        summary: format!("Invalid {at}: an element is null; applying this policy would fail"),
        detail: "Every element must be an image digest. A `data.dcr_image_digest` whose notebook file is missing \
                 reads as null: put the notebook back. (Destroy works without it.)"
            .into(),
        attribute: Some(at),
    }
}

/// What plan knows of a policy's datasets.
enum Located {
    All(Vec<LocatedDataset>),
    /// Some dataset's bucket is there but its encrypted object is not — deleted outside Terraform,
    /// which the dataset's own plan restores in this apply. Planning the policy as "known after
    /// apply" lets that apply run; failing here would leave no way to converge (the re-upload
    /// could never be applied). Apply still refuses a dataset that is missing by then.
    Restoring(Diagnostics),
}

async fn locate_for_plan(c: &Clients, ids: &[String]) -> Result<Located, Diagnostics> {
    let mut restoring = Diagnostics::new();
    let mut out = Vec::new();
    for id in ids {
        match locate(c, id).await? {
            Some(l) => out.push(l),
            None => {
                let bucket = parse_id(id).map(|l| l.bucket).unwrap_or_default();
                let bucket_there =
                    c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?;
                if bucket_there.is_none() {
                    return Err(missing_dataset(id)); // not one being restored
                }
                restoring.push(
                    Diagnostic::warning(
                        format!("dataset {id:?} has no encrypted object yet"),
                        "Its bucket exists, so its dcr_dataset is expected to upload it in this apply; the policy's \
                         document follows once it does.",
                    )
                    .at(AttributePath::root("datasets")),
                );
            }
        }
    }
    Ok(if restoring.is_empty() { Located::All(out) } else { Located::Restoring(restoring) })
}

async fn set_dataset_access(c: &Clients, l: &LocatedDataset, member: &str, present: bool) -> Result<(), Diagnostics> {
    grant(&c.kms.iam(&l.crypto_key), DECRYPTER, member, present).await?;
    grant(&c.storage.bucket_iam(&l.location.bucket), OBJECT_VIEWER, member, present).await
}

/// Whether `member` holds `role` on `r` (a resource that is gone grants nothing).
async fn holds(r: &dyn IamResource, role: &str, member: &str) -> Result<bool, Diagnostics> {
    match r.get_policy().await {
        Ok(p) => Ok(p.members(role).iter().any(|m| m == member)),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(gcp_diag(&format!("Cannot read the IAM policy of {}", r.describe()), e)),
    }
}

/// Whether the pool's principals hold decrypt on the key and read on the bucket.
async fn has_dataset_access(c: &Clients, l: &LocatedDataset, member: &str) -> Result<bool, Diagnostics> {
    Ok(holds(&c.kms.iam(&l.crypto_key), DECRYPTER, member).await?
        && holds(&c.storage.bucket_iam(&l.location.bucket), OBJECT_VIEWER, member).await?)
}

fn key_map(v: &Value) -> BTreeMap<String, String> {
    v.get("dataset_keys")
        .entries()
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}

/// Reads the policy document: its bytes, or `None` when it is missing.
async fn read_document(c: &Clients, bucket: &str) -> Result<Option<Vec<u8>>, Diagnostics> {
    read_object(c, bucket, OBJECT).await
}

impl PolicyResource {
    async fn converge(&self, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
        // What is not done yet is recorded as it was before (null on create), so a failure leaves
        // a state the next plan turns into the missing work.
        let mut state = planned.clone();
        for attr in ["pool", "workload_identity_provider", "dataset_keys", "policy_sha256", "policy_version"] {
            state.set(attr, prior.get(attr).clone());
        }
        let result: Result<(), Diagnostics> = async {
            let c = self.state.clients()?;
            let name = str_attr(planned, "name")?;
            let number = str_attr(planned, "project_number")?;
            if planned.get("allowed_image_digests").elements().iter().any(Value::is_null) {
                return Err(null_digest_diagnostic(Severity::Error).into());
            }
            let (rules, _, _) = effective_rules(planned, c.is_local)?;
            let condition = checked_condition(&rules)?;
            if planned.get("attribute_condition").as_str() != Some(condition.as_str()) {
                return Err(Diagnostic::error(
                    "dcr_policy: the planned attribute condition is stale",
                    "This is a bug in the provider.",
                )
                .into());
            }
            let parent = format!("projects/{number}/locations/global");
            let pool = c
                .iam
                .ensure(&parent, &names::policy_pool_id(&name), &want_pool(&name))
                .await
                .map_err(|e| gcp_diag("Cannot create the workload identity pool", e))?;
            state.set("pool", Value::string(&pool.name));
            let provider = c
                .iam
                .ensure(&pool.name, PROVIDER_ID, &want_provider(planned))
                .await
                .map_err(|e| gcp_diag("Cannot create the workload identity provider", e))?;
            state.set("workload_identity_provider", Value::string(&provider.name));
            let member = pool_principal_set(&pool.name);

            // Grants follow the datasets: new ones (or new keys of re-created datasets) granted,
            // dropped ones revoked.
            let located = locate_all(&c, &strings(planned.get("datasets"))).await?;
            let before = key_map(prior);
            for l in &located {
                set_dataset_access(&c, l, &member, true).await?;
            }
            for (id, key) in &before {
                if located.iter().any(|l| l.location.id() == *id && &l.crypto_key == key) {
                    continue;
                }
                grant(&c.kms.iam(key), DECRYPTER, &member, false).await?;
                let bucket =
                    parse_id(id).map_err(|e| Diagnostics::from(Diagnostic::error("Invalid dataset id", e)))?.bucket;
                if !located.iter().any(|l| l.location.bucket == bucket) {
                    grant(&c.storage.bucket_iam(&bucket), OBJECT_VIEWER, &member, false).await?;
                }
            }
            state.set(
                "dataset_keys",
                Value::Map(located.iter().map(|l| (l.location.id(), Value::string(&l.crypto_key))).collect()),
            );

            let bucket = str_attr(planned, "bucket")?;
            ensure_bucket(&c, &private_bucket(&bucket, &str_attr(planned, "location")?, &BTreeMap::new())).await?;
            grant(&c.storage.bucket_iam(&bucket), OBJECT_VIEWER, &member, true).await?;
            let version = planned.get("policy_version").as_i64().unwrap_or(1) as u64;
            let bytes = document(&state, &rules, &located, version).to_bytes();
            let sha = sha256_hex(&bytes);
            if let Some(want) = planned.get("policy_sha256").as_str()
                && want != sha
            {
                return Err(Diagnostic::error(
                    "The policy changed between plan and apply",
                    format!(
                        "A dataset's key changed after the plan was made (document sha256 {sha}, plan saw {want}). \
                         Run terraform apply again."
                    ),
                )
                .into());
            }
            // Refresh recorded the hash of the document that is there (null when it is not).
            if prior.get("policy_sha256").as_str() != Some(sha.as_str()) {
                let meta = Object {
                    name: OBJECT.to_string(),
                    content_type: Some("application/json".into()),
                    ..Object::default()
                };
                c.storage.upload_object(&bucket, &meta, std::io::Cursor::new(bytes), None).await.map_err(|e| {
                    let at = PolicyLocation::new(&bucket).document_uri();
                    gcp_diag(&format!("Cannot write the policy document to {at}"), e)
                })?;
            }
            state.set("policy_version", Value::int(version as i64));
            state.set("policy_sha256", Value::string(sha));
            Ok(())
        }
        .await;
        match result {
            Ok(()) => (state, Diagnostics::new()),
            Err(d) => (settle(&state), d),
        }
    }

    async fn delete(&self, prior: &Value) -> Result<(), Diagnostics> {
        let c = self.state.clients()?;
        if let Some(pool) = prior.get("pool").as_str() {
            let member = pool_principal_set(pool);
            for (id, key) in key_map(prior) {
                if let Ok(location) = parse_id(&id) {
                    let l = LocatedDataset { location, crypto_key: key };
                    set_dataset_access(&c, &l, &member, false).await?;
                }
            }
        }
        if let Some(b) = prior.get("bucket").as_str() {
            empty_and_delete_bucket(&c, b).await?;
        }
        if let Some(p) = prior.get("workload_identity_provider").as_str() {
            c.iam
                .delete_if_present::<WorkloadIdentityPoolProvider>(p)
                .await
                .map_err(|e| gcp_diag("Cannot delete the workload identity provider", e))?;
        }
        if let Some(p) = prior.get("pool").as_str() {
            c.iam
                .delete_if_present::<WorkloadIdentityPool>(p)
                .await
                .map_err(|e| gcp_diag("Cannot delete the workload identity pool", e))?;
        }
        Ok(())
    }

    /// Records drift: a pool, provider or grant that is gone becomes null (or leaves the map), a
    /// condition edited outside Terraform shows as it is; the next plan turns either into work.
    async fn refresh(&self, mut state: Value) -> Result<Value, Diagnostics> {
        let c = self.state.clients()?;
        let name = str_attr(&state, "name")?;
        let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
        let pool = pool_name(&number, &names::policy_pool_id(&name));
        let provider_name = format!("{pool}/providers/{PROVIDER_ID}");
        let live_pool: Option<WorkloadIdentityPool> =
            c.iam.get(&pool).await.map_err(|e| gcp_diag("Cannot read the workload identity pool", e))?;
        let pool_ok = live_pool.as_ref().is_some_and(|p| !is_deleted(p) && !p.disabled);
        state.set("pool", if pool_ok { Value::string(&pool) } else { Value::Null });
        let live: Option<WorkloadIdentityPoolProvider> =
            c.iam.get(&provider_name).await.map_err(|e| gcp_diag("Cannot read the workload identity provider", e))?;
        match live.filter(|p| pool_ok && !is_deleted(p) && !p.disabled) {
            None => state.set("workload_identity_provider", Value::Null),
            Some(p) => {
                state.set("workload_identity_provider", Value::string(&provider_name));
                state.set("attribute_condition", Value::opt_string(p.attribute_condition));
                state.set(
                    "attribute_mapping",
                    Value::Map(p.attribute_mapping.into_iter().map(|(k, v)| (k, Value::String(v))).collect()),
                );
                if let Some(oidc) = p.oidc {
                    state.set("issuer", Value::string(oidc.issuer_uri));
                }
            }
        }
        let member = pool_principal_set(&pool);
        let mut keys = BTreeMap::new();
        for (id, key) in key_map(&state) {
            if let Some(l) = locate(&c, &id).await?
                && l.crypto_key == key
                && has_dataset_access(&c, &l, &member).await?
            {
                keys.insert(id, Value::string(key));
            }
        }
        state.set("dataset_keys", Value::Map(keys));
        if let Some(bucket) = state.get("bucket").as_str().map(str::to_string) {
            let readable = holds(&c.storage.bucket_iam(&bucket), OBJECT_VIEWER, &member).await?;
            match read_document(&c, &bucket).await? {
                // The document is only as good as the workloads' access to it.
                Some(bytes) if readable => {
                    state.set("policy_sha256", Value::string(sha256_hex(&bytes)));
                    if let Ok(doc) = PolicyDocument::from_bytes(&bytes) {
                        state.set("policy_version", Value::int(doc.version as i64));
                    }
                }
                _ => state.set("policy_sha256", Value::Null),
            }
        }
        Ok(state)
    }
}

#[async_trait]
impl Resource for PolicyResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        validate_config(config)
    }

    async fn read(&self, state: Value, private: Vec<u8>) -> ReadResponse {
        let refreshed = self.refresh(state.clone()).await;
        read_response(state, private, refreshed)
    }

    async fn plan(&self, req: PlanRequest) -> PlanResponse {
        if req.proposed_new_state.is_null() {
            return PlanResponse::default();
        }
        let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
        let mut d = validate_config(&req.config);
        // A null digest is what a `dcr_image_digest` reads when its notebook is missing. Terraform
        // plans every resource in its pre-destroy refresh too (a normal-mode plan with
        // `PreDestroyRefresh`, hashicorp/terraform internal/terraform/context_plan.go), so an
        // error here would make `terraform destroy` need the notebook: plan warns and leaves the
        // condition unknown, and apply refuses (see `converge`).
        let null_digest = req.config.get("allowed_image_digests").elements().iter().any(Value::is_null);
        if null_digest {
            d.push(null_digest_diagnostic(Severity::Warning));
        }
        if d.has_errors() {
            return fail(d);
        }
        let c = match self.state.clients() {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        if let (Value::Null, Some(name)) = (req.config.get("bucket"), req.config.get("name").as_str())
            && let Some(e) = crate::validate::default_bucket_diagnostic(
                AttributePath::root("bucket"),
                &PolicyLocation::default_bucket(&c.project, name),
                "PROJECT-policy-NAME",
            )
        {
            return fail(e.into());
        }
        let (rules, issuer, warnings) = match effective_rules(&req.config, c.is_local) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        d.extend(warnings);
        let condition = if !null_digest && RULE_INPUTS.iter().all(|a| req.config.get(a).is_wholly_known()) {
            match checked_condition(&rules) {
                Ok(cond) => Some(cond),
                Err(e) => return fail(e),
            }
        } else {
            None
        };
        let project_number = match c.project_number().await {
            Ok(n) => n,
            Err(e) => return fail(gcp_diag("Cannot read the project number", e)),
        };
        let ids = req.config.get("datasets");
        let datasets = if ids.is_wholly_known() {
            match locate_for_plan(&c, &strings(ids)).await {
                Ok(Located::All(l)) => Some(l),
                Ok(Located::Restoring(warnings)) => {
                    d.extend(warnings);
                    None
                }
                Err(e) => return fail(e),
            }
        } else {
            None
        };
        let facts = PlanFacts { project: c.project.clone(), project_number, is_local: c.is_local, datasets };
        let (planned_state, requires_replace) =
            plan_state(&req.prior_state, &req.config, &rules, &issuer, condition.as_deref(), &facts);
        PlanResponse { planned_state, requires_replace, planned_private: Vec::new(), diagnostics: d }
    }

    async fn apply(&self, req: ApplyRequest) -> ApplyResponse {
        let delete = self.delete(&req.prior_state);
        let converge = self.converge(&req.prior_state, &req.planned_state);
        let (state, diagnostics) = apply_converging(TYPE_NAME, &req, DEFAULT_TIMEOUT, delete, converge).await;
        // A create that failed before the pool existed leaves nothing to track.
        let nothing_created = req.prior_state.is_null() && diagnostics.has_errors() && state.get("pool").is_null();
        ApplyResponse { new_state: if nothing_created { Value::Null } else { state }, private: Vec::new(), diagnostics }
    }

    async fn import(&self, id: &str) -> Result<Value, Diagnostics> {
        let c = self.state.clients()?;
        let (bucket, name) = match id.split_once('/') {
            Some((b, n)) => (b.to_string(), n.to_string()),
            None => (PolicyLocation::default_bucket(&c.project, id), id.to_string()),
        };
        let cannot =
            |why: String| Diagnostics::from(Diagnostic::error(format!("Cannot import {TYPE_NAME} {id:?}"), why));
        policy_name(&name).map_err(|e| cannot(format!("{e}. The import id is the policy name, or BUCKET/NAME.")))?;
        let document = PolicyLocation::new(&bucket).document_uri();
        let bytes = read_document(&c, &bucket).await?.ok_or_else(|| cannot(format!("{document} does not exist.")))?;
        let doc = PolicyDocument::from_bytes(&bytes).map_err(|e| cannot(format!("{document}: {e}")))?;
        if doc.name != name {
            return Err(cannot(format!("{document} is the document of policy {:?}.", doc.name)));
        }
        let b = c.storage.get_bucket(&bucket).await.map_err(|e| gcp_diag("Cannot read bucket", e))?;
        let mut state = Value::null_object(&schema().implied_type());
        state.set("id", Value::string(&name));
        state.set("name", Value::string(&name));
        state.set("datasets", string_set(&doc.datasets.iter().map(|d| d.id.clone()).collect::<Vec<_>>()));
        state.set("allowed_image_digests", string_set(&doc.rules.allowed_image_digests));
        state.set("require_confidential_hardware", Value::Bool(doc.rules.require_confidential_hardware));
        if doc.rules.require_confidential_hardware {
            state.set("allowed_hardware", string_set(&doc.rules.allowed_hardware));
        }
        state.set("allow_debug", Value::Bool(doc.rules.allow_debug));
        state.set("require_stable_image", Value::Bool(doc.rules.require_stable_image));
        state.set("issuer", Value::string(&doc.issuer));
        state.set("bucket", Value::string(&bucket));
        state.set("location", Value::opt_string(b.and_then(|b| b.location)));
        // A config without an output block means the defaults; import cannot tell the two apart
        // and picks the shorter config.
        if doc.output != output_rules(&Value::Null) {
            state.set(
                "output",
                Value::object([
                    ("max_bytes", Value::int(doc.output.max_bytes as i64)),
                    ("allowed_extensions", string_set(&doc.output.allowed_extensions)),
                    (
                        "readers",
                        if doc.output.readers.is_empty() { Value::Null } else { string_set(&doc.output.readers) },
                    ),
                ]),
            );
        }
        state.set("attribute_condition", Value::string(&doc.attribute_condition));
        state.set(
            "dataset_keys",
            Value::Map(doc.datasets.iter().map(|d| (d.id.clone(), Value::string(&d.crypto_key))).collect()),
        );
        state.set("policy_uri", Value::string(document));
        state.set("policy_version", Value::int(doc.version as i64));
        let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
        let pool = pool_name(&number, &names::policy_pool_id(&name));
        let provider = format!("{pool}/providers/{PROVIDER_ID}");
        state.set("project_number", Value::string(&number));
        state.set("audience", Value::string(audience(&provider)));
        state.set("principal_set", Value::string(pool_principal_set(&pool)));
        state.set("pool", Value::string(pool));
        state.set("workload_identity_provider", Value::string(provider));
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn digest(i: usize) -> String {
        format!("sha256:{i:064x}")
    }

    fn config(extra: &[(&str, Value)]) -> Value {
        let mut cfg = Value::null_object(&schema().implied_type());
        cfg.set("name", Value::string("study"));
        cfg.set("datasets", Value::Set(vec![Value::string("dcr-local-patients/patients")]));
        cfg.set("allowed_image_digests", Value::Set(vec![Value::string(D1)]));
        for (k, v) in extra {
            cfg.set(k, v.clone());
        }
        cfg
    }

    fn output(pairs: &[(&str, Value)]) -> Value {
        let mut o =
            Value::object([("max_bytes", Value::Null), ("allowed_extensions", Value::Null), ("readers", Value::Null)]);
        for (k, v) in pairs {
            o.set(k, v.clone());
        }
        o
    }

    fn summaries(d: &Diagnostics) -> Vec<String> {
        d.iter().map(|x| x.summary.clone()).collect()
    }

    #[test]
    fn bad_inputs_name_their_attribute() {
        let set = |items: &[&str]| Value::Set(items.iter().map(|s| Value::string(*s)).collect());
        let cases: Vec<(Value, &str)> = vec![
            (config(&[("name", Value::string("x"))]), "name"),
            (config(&[("name", Value::string("Bad_Name"))]), "name"),
            (config(&[("datasets", set(&[]))]), "datasets"),
            (config(&[("datasets", set(&["no-slash"]))]), "datasets"),
            (config(&[("allowed_image_digests", set(&["sha256:abc"]))]), "allowed_image_digests"),
            (config(&[("allowed_image_digests", set(&["latest"]))]), "allowed_image_digests"),
            (config(&[("allowed_hardware", set(&["GCP_QUANTUM"]))]), "allowed_hardware"),
            (
                config(&[
                    ("allowed_hardware", set(&["GCP_INTEL_TDX"])),
                    ("require_confidential_hardware", Value::Bool(false)),
                ]),
                "allowed_hardware",
            ),
            (config(&[("issuer", Value::string("http://issuer.example"))]), "issuer"),
            (config(&[("bucket", Value::string("Bad Bucket"))]), "bucket"),
            (config(&[("output", output(&[("max_bytes", Value::int(0))]))]), "output.max_bytes"),
            (config(&[("output", output(&[("allowed_extensions", set(&[".csv"]))]))]), "output.allowed_extensions"),
            (config(&[("output", output(&[("readers", set(&["allUsers"]))]))]), "output.readers"),
        ];
        for (cfg, attr) in cases {
            let d = validate_config(&cfg);
            assert!(d.has_errors(), "{attr}: expected an error");
            assert!(summaries(&d).iter().any(|s| s.contains(attr)), "{attr}: {:?}", summaries(&d));
        }
        assert!(validate_config(&config(&[])).is_empty());
    }

    #[test]
    fn the_backend_decides_defaults_and_refusals() {
        let (rules, issuer, warnings) = effective_rules(&config(&[]), false).unwrap();
        assert!(rules.require_confidential_hardware && rules.require_stable_image && !rules.allow_debug);
        assert_eq!(rules.allowed_hardware.len(), CONFIDENTIAL_HARDWARE.len());
        assert_eq!(issuer, GOOGLE_ISSUER);
        assert!(warnings.is_empty());

        let on_gcp = |extra: &[(&str, Value)]| effective_rules(&config(extra), false).err().map(|d| summaries(&d));
        let e = on_gcp(&[("require_confidential_hardware", Value::Bool(false))]).unwrap();
        assert!(e[0].contains("require_confidential_hardware"), "{e:?}");
        let e = on_gcp(&[("allow_debug", Value::Bool(true))]).unwrap();
        assert!(e[0].contains("allow_debug"), "{e:?}");

        let (rules, issuer, warnings) = effective_rules(&config(&[]), true).unwrap();
        assert!(!rules.require_confidential_hardware && !rules.require_stable_image);
        assert_eq!(issuer, LOCAL_ISSUER);
        assert!(
            !warnings.has_errors() && !warnings.is_empty(),
            "a local policy refusing the simulator is warned about"
        );
        let (_, _, warnings) = effective_rules(&config(&[("allow_debug", Value::Bool(true))]), true).unwrap();
        assert!(warnings.is_empty());
    }

    #[test]
    fn a_condition_over_googles_limit_is_refused_naming_the_digests() {
        let many = Value::Set((0..60).map(|i| Value::string(digest(i))).collect());
        let (rules, _, _) = effective_rules(&config(&[("allowed_image_digests", many)]), false).unwrap();
        let d = checked_condition(&rules).unwrap_err();
        assert!(summaries(&d)[0].contains("allowed_image_digests"), "{:?}", summaries(&d));
        let few = Value::Set((0..10).map(|i| Value::string(digest(i))).collect());
        let (rules, _, _) = effective_rules(&config(&[("allowed_image_digests", few)]), false).unwrap();
        assert!(checked_condition(&rules).unwrap().len() <= dcr_attestation::cel::MAX_CONDITION_CHARS);
    }

    fn facts(known: bool) -> PlanFacts {
        PlanFacts {
            project: "dcr-local".into(),
            project_number: "123".into(),
            is_local: true,
            datasets: known.then(|| {
                vec![LocatedDataset {
                    location: dcr_attestation::names::DatasetLocation::new("dcr-local-patients", "patients"),
                    crypto_key: "projects/dcr-local/locations/global/keyRings/dcr-patients/cryptoKeys/data-1".into(),
                }]
            }),
        }
    }

    fn plan(prior: &Value, cfg: &Value, known: bool) -> (Value, Vec<AttributePath>) {
        let (rules, issuer, _) = effective_rules(cfg, true).unwrap();
        let cond = checked_condition(&rules).unwrap();
        plan_state(prior, cfg, &rules, &issuer, Some(&cond), &facts(known))
    }

    #[test]
    fn plans_name_everything_and_version_the_document_by_content() {
        let cfg = config(&[("allow_debug", Value::Bool(true))]);
        let (p, rr) = plan(&Value::Null, &cfg, true);
        assert!(rr.is_empty());
        assert_eq!(p.get("pool").as_str(), Some("projects/123/locations/global/workloadIdentityPools/dcr-study"));
        assert_eq!(
            p.get("audience").as_str(),
            Some(
                "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dcr-study/providers/attestation"
            )
        );
        assert_eq!(
            p.get("attribute_condition").as_str(),
            Some(format!("assertion.submods.container.image_digest in ['{D1}']").as_str())
        );
        assert_eq!(p.get("bucket").as_str(), Some("dcr-local-policy-study"));
        assert_eq!(p.get("policy_version").as_i64(), Some(1));
        assert!(p.get("policy_sha256").as_str().is_some());

        // Unchanged: the same plan.
        let (again, _) = plan(&p, &cfg, true);
        assert_eq!(again, p);
        // A new digest: a new condition and document version.
        let cfg2 = config(&[
            ("allow_debug", Value::Bool(true)),
            ("allowed_image_digests", Value::Set(vec![Value::string(D1), Value::string(digest(2))])),
        ]);
        let (p2, rr) = plan(&p, &cfg2, true);
        assert!(rr.is_empty());
        assert_eq!(p2.get("policy_version").as_i64(), Some(2));
        assert_ne!(p2.get("policy_sha256"), p.get("policy_sha256"));
        // The document gone (refresh recorded a null hash): rewritten as the next version.
        let mut gone = p.clone();
        gone.set("policy_sha256", Value::Null);
        assert_eq!(plan(&gone, &cfg, true).0.get("policy_version").as_i64(), Some(2));
        // A renamed policy is a new pool: replaced.
        let (_, rr) = plan(&p, &config(&[("allow_debug", Value::Bool(true)), ("name", Value::string("other"))]), true);
        assert_eq!(rr, vec![AttributePath::root("name"), AttributePath::root("bucket")]);
        // Datasets not yet created: the document waits for apply.
        let (p, _) = plan(&Value::Null, &cfg, false);
        assert!(p.get("policy_sha256").is_unknown() && p.get("dataset_keys").is_unknown());
    }

    #[test]
    fn configured_values_are_kept_even_when_unknown() {
        let cfg = config(&[
            ("allow_debug", Value::Unknown),
            ("output", output(&[("readers", Value::Set(vec![Value::string("user:a@b.co")]))])),
        ]);
        let (rules, issuer, _) = effective_rules(&cfg, true).unwrap();
        let (p, _) = plan_state(&Value::Null, &cfg, &rules, &issuer, None, &facts(true));
        assert!(p.get("allow_debug").is_unknown());
        assert!(p.get("attribute_condition").is_unknown());
        assert!(p.get("policy_sha256").is_unknown());
        assert_eq!(p.get("output").get("max_bytes").as_i64(), Some(DEFAULT_MAX_OUTPUT_BYTES as i64));
    }
}
