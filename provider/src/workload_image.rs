//! The workload image, from configuration: what `dcr_workload` builds and runs and what
//! `data "dcr_image_digest"` computes for a data owner to pin. Both take the same attributes
//! ([`image_attributes`]) and go through [`plan_image`], so the digest a policy pins is the digest
//! that runs.
//!
//! The image is the base runtime image plus one layer: `/dcr/workload.json` (the
//! [`WorkloadManifest`]), `/dcr/notebook.ipynb` and `/dcr/parameters.json`. The manifest names each
//! input's policy by its audience and document location, derived from the policy's project number
//! and name, never from the `dcr_policy` resource — the policy pins this image's digest, so the
//! image cannot depend on the policy.

use dcr_attestation::names::{self, PolicyLocation, RunLocation};
use dcr_attestation::workload::{
    Backend, WORKLOAD_FORMAT, WorkloadInput, WorkloadManifest, WorkloadOutput, is_input_name,
};
use dcr_gcp::workload_identity::pool_name;
use dcr_image::{BaseImage, BuiltImage, FileEntry};
use tfplugin6::model::{Attr, FromValue, IntoValue, Model, wholly_known};
use tfplugin6::schema::{Attribute, Block, NestedBlock};
use tfplugin6::value::Number;
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value};

use crate::clients::Clients;
use crate::resources::dataset::parse_id;
use crate::resources::policy::PROVIDER_ID;

pub use dcr_image::build::{DEFAULT_BASE_TAG as BASE_TAG, default_base_image};
const DEFAULT_MAX_RUN_SECONDS: i64 = 3600;
/// Consumer pools are `dcr-out-NAME`, at most 32 characters.
const MAX_NAME: usize = names::MAX_WORKLOAD_NAME;

/// The `output` block's attributes that decide the image (the resource adds where its bucket lives).
pub fn output_block() -> Block {
    Block::new("Where released results go (the consumer's bucket).")
        .attr(Attribute::required("bucket", Type::String, "Output bucket; created if it does not exist."))
        .attr(
            Attribute::optional_computed(
                "prefix",
                Type::String,
                "Object prefix, ending in `/`. Each run writes under `PREFIX<image digest hex>/`.",
            )
            .default_described("`NAME/`")
            .check_detailed(object_prefix, "Use a relative prefix ending in '/', e.g. \"results/\"."),
        )
}

/// The attributes that decide the image, shared by the resource and the data source; `output` is
/// the output block ([`output_block`], perhaps with more).
pub fn image_attributes(b: Block, output: Block) -> Block {
    let input = Block::new("A dataset the notebook reads, under the policy that guards it.")
        .attr(Attribute::required(
            "name",
            Type::String,
            "Input name: the notebook reads the data from `$DCR_INPUTS_DIR/NAME.csv`. Letters, digits, `_` and `-`.",
        ))
        .attr(Attribute::required("dataset", Type::String, "The `dcr_dataset` id (`dcr_dataset.x.id`)."))
        .attr(Attribute::optional(
            "policy",
            Type::String,
            "Name of the `dcr_policy` covering the dataset. Use the name as a string, not `dcr_policy.x.name`: the \
             policy pins this image's digest, so the image cannot depend on the policy resource. Required unless \
             `audience` is set (the name is then read from it).",
        ))
        .attr(Attribute::optional(
            "policy_project",
            Type::String,
            "Project of the policy (the data owner's), when it is not the provider's project. dcr never reads \
             another project's metadata: set `audience` (or `policy_project_number`) too.",
        ))
        .attr(
            Attribute::optional(
                "policy_project_number",
                Type::String,
                "Number of the policy's project, when `policy_project` is set and `audience` is not.",
            )
            .check_detailed(
                project_number,
                "A project number is all digits (the console's project info card shows it).",
            ),
        )
        .attr(Attribute::optional(
            "audience",
            Type::String,
            "The policy's `audience` as its `dcr_policy` exports it (`//iam.googleapis.com/projects/NUMBER/...`): \
             the data owner hands it to consumers. Defaults to the one derived from the policy's project and name.",
        ))
        .attr(Attribute::optional(
            "policy_uri",
            Type::String,
            "The policy's `policy_uri` as its `dcr_policy` exports it (`gs://BUCKET/policy.json`). Defaults to the \
             document in the policy's default bucket (`PROJECT-policy-NAME`); set it when the policy names its own \
             `bucket`.",
        ));
    b.attr(
        Attribute::required(
            "name",
            Type::String,
            &format!("Workload name: 3 to {MAX_NAME} lowercase letters, digits and `-`, starting with a letter."),
        )
        .check(workload_name),
    )
    .attr(Attribute::required(
        "notebook",
        Type::String,
        "Path of the notebook (`.ipynb`): a regular file of at most 64 MiB. Its bytes are in the image: any \
         change gives a new digest. Without the file, a recorded run is kept (with a warning), \
         `dcr_image_digest` reads a null digest, and destroy works.",
    ))
    .attr(
        Attribute::optional_computed(
            "parameters",
            Type::String,
            "papermill parameters as a JSON object (`jsonencode({...})`), baked into the image.",
        )
        .default(Value::string("{}"))
        .check_detailed(json_object, "Write it with jsonencode({ name = value, ... })."),
    )
    .attr(
        Attribute::optional_computed(
            "max_run_seconds",
            Type::Number,
            "Time limit the launcher enforces on the notebook, in seconds.",
        )
        .default(Value::int(DEFAULT_MAX_RUN_SECONDS))
        .whole_number(1, 86_400),
    )
    .attr(
        Attribute::optional_computed("base_image", Type::String, "Base runtime image as `oci:LAYOUT_DIR:TAG`.")
            .default_described(
                "the layout `runtime-image/build.sh` writes (`~/.cache/dcr/runtime-image/layout`, tag \
                 `dcr-runtime:0.1.0`)",
            )
            .check_detailed(
                oci_layout_reference,
                "Write oci:LAYOUT_DIR:TAG, e.g. the layout runtime-image/build.sh writes.",
            ),
    )
    .block(NestedBlock::list("input", input).min_items(1))
    .block(NestedBlock::single("output", output).min_items(1).max_items(1))
}

/// One `input` block.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ImageInput {
    pub name: Attr<String>,
    pub dataset: Attr<String>,
    pub policy: Attr<String>,
    pub policy_project: Attr<String>,
    pub policy_project_number: Attr<String>,
    pub audience: Attr<String>,
    pub policy_uri: Attr<String>,
}

/// The `output` block's attributes that decide the image.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ImageOutput {
    pub bucket: Attr<String>,
    pub prefix: Attr<String>,
}

/// The attributes that decide the image, as `dcr_workload` and `data "dcr_image_digest"` both
/// hold them (`#[model(flatten)]` into each one's model); `O` is the model of the `output` block,
/// which the resource extends with where its bucket lives.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ImageAttributes<O>
where
    O: FromValue + IntoValue,
{
    pub name: Attr<String>,
    pub notebook: Attr<String>,
    pub parameters: Attr<String>,
    pub max_run_seconds: Attr<Number>,
    pub base_image: Attr<String>,
    pub input: Attr<Vec<ImageInput>>,
    pub output: Attr<O>,
}

/// What the image is built from: the attributes with the output block's bucket and prefix.
pub type ImageSpec = ImageAttributes<ImageOutput>;

impl<O: FromValue + IntoValue> ImageAttributes<O> {
    fn inputs(&self) -> &[ImageInput] {
        self.input.known().map_or(&[], Vec::as_slice)
    }
}

/// An `output` block's model: where its object prefix is.
pub trait OutputBlock: FromValue + IntoValue {
    fn prefix_mut(&mut self) -> &mut Attr<String>;
}

impl OutputBlock for ImageOutput {
    fn prefix_mut(&mut self) -> &mut Attr<String> {
        &mut self.prefix
    }
}

impl<O: OutputBlock> ImageAttributes<O> {
    /// Fills the defaults the image attributes take from elsewhere: the base image `build.sh`
    /// writes, and the output prefix `NAME/` (unknown while the name is). The fixed ones
    /// (`parameters`, `max_run_seconds`) are declared in the schema, for `tfplugin6::plan::fill_defaults`.
    pub fn fill_defaults(&mut self) {
        if self.base_image.is_null() {
            self.base_image = Attr::Known(default_base_image());
        }
        if let Attr::Known(o) = &mut self.output
            && o.prefix_mut().is_null()
        {
            *o.prefix_mut() = Attr::known_or_unknown(self.name.as_deref().map(RunLocation::default_output_prefix));
        }
    }
}

/// The configuration checks that need no cloud.
fn workload_name(name: &str) -> Result<(), String> {
    let ok = (3..=MAX_NAME).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid workload name: use 3 to {MAX_NAME} lowercase letters, digits and '-', starting \
             with a letter"
        ))
    }
}

fn json_object(p: &str) -> Result<(), String> {
    match serde_json::from_str::<serde_json::Value>(p) {
        Ok(v) if v.is_object() => Ok(()),
        _ => Err("parameters is not a JSON object".into()),
    }
}

fn oci_layout_reference(b: &str) -> Result<(), String> {
    dcr_image::build::parse_base_reference(b).map(|_| ()).ok_or_else(|| format!("{b:?} is not an OCI layout reference"))
}

fn object_prefix(p: &str) -> Result<(), String> {
    if p.starts_with('/') || !p.ends_with('/') || p.contains("//") {
        Err(format!("{p:?} is not an object prefix"))
    } else {
        Ok(())
    }
}

fn project_number(n: &str) -> Result<(), String> {
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        Err(format!("{n:?} is not a project number"))
    } else {
        Ok(())
    }
}

/// What the declared validators (see [`image_attributes`]) cannot check alone: input names
/// unique and usable, dataset ids, each input's policy reference.
pub fn validate(config: &ImageSpec) -> Diagnostics {
    let mut d = Diagnostics::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, input) in config.inputs().iter().enumerate() {
        let at = AttributePath::root("input").index(i);
        if let Some(n) = input.name.as_deref() {
            if !is_input_name(n) {
                d.push(Diagnostic::attribute_error(
                    at.clone().attr("name"),
                    format!("{n:?} is not a valid input name"),
                    "It becomes a file name inside the TEE: letters, digits, '_' and '-', at most 63.",
                ));
            } else if !seen.insert(n.to_string()) {
                d.push(Diagnostic::attribute_error(
                    at.clone().attr("name"),
                    format!("input {n:?} is listed twice"),
                    "",
                ));
            }
        }
        if let Some(ds) = input.dataset.as_deref()
            && let Err(e) = parse_id(ds)
        {
            d.push(Diagnostic::attribute_error(at.clone().attr("dataset"), "not a dcr_dataset id", e));
        }
        d.extend(validate_policy_ref(input, &at));
    }
    d
}

/// The input's policy reference, as far as it can be checked without a cloud: the name, the
/// audience's shape and its pool, the policy URI, and that a foreign policy says where it is.
fn validate_policy_ref(input: &ImageInput, at: &AttributePath) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(p) = input.policy.as_deref()
        && let Err(e) = crate::resources::policy::policy_name(p)
    {
        d.push(Diagnostic::attribute_error(at.clone().attr("policy"), format!("{p:?} is not a policy name"), e));
    }
    match input.audience.as_deref() {
        Some(a) => match policy_of_audience(a) {
            Err(e) => d.push(Diagnostic::attribute_error(at.clone().attr("audience"), "not a dcr_policy audience", e)),
            Ok((_, name)) => {
                if let Some(p) = input.policy.as_deref().filter(|p| *p != name) {
                    d.push(Diagnostic::attribute_error(
                        at.clone().attr("policy"),
                        format!("policy {p:?} does not match the audience, which names policy {name:?}"),
                        "Leave policy unset when audience is set, or make them agree.",
                    ));
                }
            }
        },
        // An audience not known yet (a variable during `terraform validate`, another resource's
        // attribute) is still an audience.
        None if input.policy.is_null() && !input.audience.is_unknown() => d.push(Diagnostic::attribute_error(
            at.clone().attr("policy"),
            "the input names no policy",
            "Set policy to the dcr_policy's name, or audience to the audience it exports.",
        )),
        None => {}
    }
    if let Some(u) = input.policy_uri.as_deref()
        && !dcr_attestation::workload::split_gs_uri(u).is_some_and(|(b, o)| !b.is_empty() && !o.is_empty())
    {
        d.push(Diagnostic::attribute_error(
            at.clone().attr("policy_uri"),
            format!("{u:?} is not a gs:// object URI"),
            "Use the policy_uri the dcr_policy exports, e.g. \"gs://BUCKET/policy.json\".",
        ));
    }
    d
}

/// The project number and policy name an audience names:
/// `//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/dcr-NAME/providers/attestation`.
pub fn policy_of_audience(audience: &str) -> Result<(String, String), String> {
    let expected = format!(
        "expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/dcr-NAME/providers/{PROVIDER_ID}, \
         as dcr_policy exports it"
    );
    let rest = audience.strip_prefix("//iam.googleapis.com/projects/").ok_or_else(|| expected.clone())?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [number, "locations", "global", "workloadIdentityPools", pool, "providers", provider]
            if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) && *provider == PROVIDER_ID =>
        {
            let name = pool
                .strip_prefix("dcr-")
                .ok_or_else(|| format!("pool {pool:?} is not a dcr_policy's pool (dcr-NAME)"))?;
            crate::resources::policy::policy_name(name)?;
            Ok((number.to_string(), name.to_string()))
        }
        _ => Err(expected),
    }
}

/// Where a workload finds one input's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRef {
    pub policy: String,
    pub audience: String,
    pub policy_uri: String,
}

/// Resolves an input's policy reference from the configuration (already validated) and the
/// provider's own project. Another project's number is never looked up: reading it needs
/// `resourcemanager.projects.get` on the data owner's project, which a consumer rarely has.
pub fn policy_ref(
    input: &ImageInput,
    own_project: &str,
    own_number: &str,
    at: &AttributePath,
) -> Result<PolicyRef, Diagnostic> {
    let project = input.policy_project.known().cloned().unwrap_or_else(|| own_project.to_string());
    let foreign = project != own_project;
    let (audience, policy) = match input.audience.known().cloned() {
        Some(a) => {
            let (_, name) = policy_of_audience(&a).map_err(|e| {
                Diagnostic::attribute_error(at.clone().attr("audience"), "not a dcr_policy audience", e)
            })?;
            (a, name)
        }
        None => {
            let policy = input.policy.known().cloned().unwrap_or_default();
            let number = match (input.policy_project_number.known().cloned(), foreign) {
                (Some(n), _) => n,
                (None, false) => own_number.to_string(),
                (None, true) => {
                    return Err(Diagnostic::attribute_error(
                        at.clone().attr("policy_project"),
                        format!("the audience of policy {policy:?} in project {project:?} is not known"),
                        "Set audience to the audience the data owner's dcr_policy exports (or policy_project_number): \
                         dcr does not read another project's number, which needs resourcemanager.projects.get there.",
                    ));
                }
            };
            let provider = format!("{}/providers/{PROVIDER_ID}", pool_name(&number, &names::policy_pool_id(&policy)));
            (dcr_gcp::workload_identity::audience(&provider), policy)
        }
    };
    let policy_uri = match input.policy_uri.known().cloned() {
        Some(u) => u,
        None => {
            let bucket = PolicyLocation::default_bucket(&project, &policy);
            if let Some(e) = crate::validate::default_bucket_diagnostic(
                at.clone().attr("policy_uri"),
                &bucket,
                "PROJECT-policy-NAME",
            ) {
                return Err(e);
            }
            PolicyLocation::new(bucket).document_uri()
        }
    };
    Ok(PolicyRef { policy, audience, policy_uri })
}

/// The manifest for `planned` (defaults applied), or `None` while something it needs is unknown.
pub async fn manifest(c: &Clients, planned: &ImageSpec) -> Result<Option<WorkloadManifest>, Diagnostics> {
    let known = wholly_known(&planned.name)
        && wholly_known(&planned.max_run_seconds)
        && wholly_known(&planned.input)
        && wholly_known(&planned.output);
    let (Some(name), Some(output), true) = (planned.name.known(), planned.output.known(), known) else {
        return Ok(None);
    };
    let own_number = c
        .project_number()
        .await
        .map_err(|e| crate::resources::common::gcp_diag("Cannot read the project number", e))?;
    let mut inputs = std::collections::BTreeMap::new();
    for (i, input) in planned.inputs().iter().enumerate() {
        let dataset_id = input.dataset.known().cloned().unwrap_or_default();
        let dataset =
            parse_id(&dataset_id).map_err(|e| Diagnostics::from(Diagnostic::error("Invalid dataset id", e)))?;
        let r = policy_ref(input, &c.project, &own_number, &AttributePath::root("input").index(i))?;
        inputs.insert(
            input.name.known().cloned().unwrap_or_default(),
            WorkloadInput {
                dataset: dataset_id,
                object_uri: dataset.object_uri(),
                policy_uri: r.policy_uri,
                audience: r.audience,
                policy: r.policy,
            },
        );
    }
    let out_provider = format!("{}/providers/{PROVIDER_ID}", pool_name(&own_number, &names::output_pool_id(name)));
    let seconds = planned.max_run_seconds.known().and_then(Number::as_i64).unwrap_or(DEFAULT_MAX_RUN_SECONDS);
    Ok(Some(WorkloadManifest {
        format: WORKLOAD_FORMAT.into(),
        backend: if c.is_local { Backend::Local } else { Backend::Gcp },
        timeout_seconds: seconds as u64,
        inputs,
        output: WorkloadOutput {
            uri: format!("gs://{}/{}", output.bucket.as_deref().unwrap_or(""), output.prefix.as_deref().unwrap_or("")),
            audience: dcr_gcp::workload_identity::audience(&out_provider),
        },
        name: name.clone(),
    }))
}

/// The largest notebook accepted. Notebooks are code and a little output; one larger than this is
/// almost surely carrying data, which has no place in an image.
pub const MAX_NOTEBOOK_BYTES: u64 = 64 << 20;

/// The base image `planned` names.
pub fn base_image(planned: &ImageSpec) -> Result<BaseImage, Diagnostics> {
    let spec = planned.base_image.known().cloned().unwrap_or_else(default_base_image);
    let (dir, tag) = dcr_image::build::parse_base_reference(&spec).ok_or_else(|| {
        Diagnostics::from(Diagnostic::attribute_error(AttributePath::root("base_image"), "not oci:LAYOUT_DIR:TAG", ""))
    })?;
    BaseImage::from_layout(&dir, Some(&tag)).map_err(|e| {
        Diagnostics::from(Diagnostic::attribute_error(
            AttributePath::root("base_image"),
            format!("cannot read the base image {spec}"),
            format!("{e}. Build the base runtime image with runtime-image/build.sh (it writes that layout), or set base_image."),
        ))
    })
}

/// Builds the image for `planned` in memory (no push): its digest is what a policy pins.
pub fn build(planned: &ImageSpec, manifest: &WorkloadManifest) -> Result<BuiltImage, Diagnostics> {
    let notebook_path = planned.notebook.as_deref().unwrap_or("");
    let notebook = crate::files::read_regular(&AttributePath::root("notebook"), notebook_path, MAX_NOTEBOOK_BYTES)?;
    if serde_json::from_slice::<serde_json::Value>(&notebook).map(|v| v.get("cells").is_none()).unwrap_or(true) {
        return Err(Diagnostic::attribute_error(
            AttributePath::root("notebook"),
            format!("{notebook_path:?} is not a Jupyter notebook"),
            "Expected an .ipynb file (JSON with a \"cells\" list).",
        )
        .into());
    }
    let parameters = planned.parameters.as_deref().unwrap_or("{}").as_bytes().to_vec();
    let files: Vec<FileEntry> = dcr_attestation::workload::image_files(manifest, notebook, parameters)
        .into_iter()
        .map(|(path, mode, bytes)| FileEntry::new(path, mode, bytes))
        .collect();
    let base = base_image(planned)?;
    dcr_image::build(&base, &files, &dcr_attestation::workload::image_created_by(&manifest.name))
        .map_err(|e| Diagnostics::from(Diagnostic::error("Cannot build the workload image", e.to_string())))
}

/// Plans the image: the manifest and the built image, or `None` while an input is unknown.
pub async fn plan_image(
    c: &Clients,
    planned: &ImageSpec,
) -> Result<Option<(WorkloadManifest, BuiltImage)>, Diagnostics> {
    if !(wholly_known(&planned.notebook) && wholly_known(&planned.parameters) && wholly_known(&planned.base_image)) {
        return Ok(None);
    }
    let Some(manifest) = manifest(c, planned).await? else { return Ok(None) };
    // Reading the notebook and hashing the layer are blocking work.
    let (planned, m) = (planned.clone(), manifest.clone());
    let image = crate::resources::common::blocking("The image build", move || build(&planned, &m)).await?;
    Ok(Some((manifest, image)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(attrs: &[(&str, Value)]) -> Value {
        let mut v = Value::object([("name", Value::string("patients")), ("dataset", Value::string("b/patients"))]);
        for (k, val) in attrs {
            v.set(k, val.clone());
        }
        v
    }

    fn errors(input: &Value) -> Vec<String> {
        validate_policy_ref(&tfplugin6::model::read(input, "input").unwrap(), &AttributePath::root("input").index(0))
            .iter()
            .map(|d| d.summary.clone())
            .collect()
    }

    #[test]
    fn an_input_names_its_policy_by_name_or_by_an_audience_known_or_not_yet() {
        assert_eq!(errors(&input(&[])), ["Invalid input[0].policy: the input names no policy"]);
        assert!(errors(&input(&[("policy", Value::string("study"))])).is_empty());
        let audience =
            "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/dcr-study/providers/attestation";
        assert!(errors(&input(&[("audience", Value::string(audience))])).is_empty());
        // `terraform validate` passes variables as unknown: the audience will be there.
        assert!(errors(&input(&[("audience", Value::Unknown)])).is_empty());
        assert!(errors(&input(&[("policy", Value::Unknown)])).is_empty());
    }
}
