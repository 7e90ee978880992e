//! `dcr_workload`: one run of a notebook on the data its policies allow, in a Confidential Space VM
//! (or, on the local backend, a runc container in a simulated TEE).
//!
//! Apply builds the workload image (its digest is planned, the same as `data "dcr_image_digest"`
//! computes), stores it (the local image store, or a registry), gives the consumer's output bucket a
//! workload identity pool whose condition pins exactly this digest (no long-lived credential
//! anywhere), starts the VM, waits for it to finish, and verifies the released attestation token —
//! signature, image digest, nonce = SHA-256 of the output manifest, hardware and debug status —
//! before it reports success. A changed notebook, parameter or input is a new image and so a new
//! run — in place, beside the earlier runs' results: each run has its own prefix (its digest) in
//! the output bucket, and a new run that fails or is refused leaves the last good one as it was.
//! Only a new name or output location replaces the workload (and its bucket).

use std::sync::Arc;

use async_trait::async_trait;
use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER, STS_AUDIENCE};
use dcr_attestation::condition::{PolicyRules, attribute_condition, attribute_mapping};
use dcr_attestation::names::{self, RunLocation, digest_hex, instance_name};
use dcr_attestation::verify::Attested;
use dcr_attestation::workload::{
    FAILURE_OBJECT, FailureReport, OUTPUT_MANIFEST_OBJECT, OutputManifest, TOKEN_OBJECT, WorkloadManifest,
    output_nonce, shared_readers,
};
use dcr_gcp::workload_identity::{
    Oidc, WorkloadIdentityPool, WorkloadIdentityPoolProvider, pool_name, pool_principal_set,
};
use dcr_image::BuiltImage;
use serde_json::json;
use tfplugin6::plan;
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{
    ApplyRequest, ApplyResponse, AttributePath, Diagnostic, Diagnostics, PlanRequest, PlanResponse, ReadResponse,
    Resource, Type, Value,
};

use crate::clients::Clients;
use crate::image_registry;
use crate::provider::ProviderState;
use crate::resources::common::{
    self, apply_converging, empty_and_delete_bucket, ensure_bucket, gcp_diag, grant, private_bucket, read_object,
    read_response, settle,
};
use crate::resources::policy::PROVIDER_ID;
use crate::timeouts;
use crate::verification::{Expected, check, claims_type, claims_value};
use crate::workload_image::{image_attributes, output_block, plan_image, with_defaults};

pub const TYPE_NAME: &str = "dcr_workload";
/// What a run needs besides the notebook's own time: the VM's boot, the pull of the ~165 MB base
/// image, the launcher's bounded wait for IAM changes to propagate (5 minutes at most), and the
/// release. The default time limit of every operation is `max_run_seconds` plus this.
const RUN_MARGIN: std::time::Duration = std::time::Duration::from_secs(20 * 60);
/// The boot disk's type: Balanced PD, which both N2D (SEV) and C3 (TDX) take (C3 takes no
/// Standard PD, Compute's default for older series; compute.v1 `AttachedDiskInitializeParams`).
const BOOT_DISK_TYPE: &str = "pd-balanced";
/// Roles the VM's service account needs, for the docs and diagnostics.
const SERVICE_ACCOUNT_ROLES: &str = "`roles/confidentialcomputing.workloadUser` on the VM's project (to get attestation \
     tokens), `roles/artifactregistry.reader` on the image repository (dcr grants it on Artifact Registry \
     repositories it manages) and `roles/logging.logWriter` (for the launcher's logs)";
/// Images in the local image store are named under this host, which never resolves: the local
/// cloud finds them by digest.
pub const LOCAL_IMAGE_HOST: &str = "images.dcr.invalid";
const OUTPUT_WRITER: &str = "roles/storage.objectAdmin";
const CONFIDENTIAL_SPACE_IMAGE: &str = "projects/confidential-space-images/global/images/family/confidential-space";
const LOG_TAIL_LINES: usize = 40;
/// What defines a run: a change starts a new run in place.
const RUN_ATTRIBUTES: [&str; 12] = [
    "image_digest",
    "registry",
    "zone",
    "machine_type",
    "confidential_type",
    "service_account",
    "network",
    "subnetwork",
    "external_ip",
    "base_image",
    "max_run_seconds",
    "parameters",
];

pub struct WorkloadResource {
    state: Arc<ProviderState>,
}

impl WorkloadResource {
    pub fn new(state: Arc<ProviderState>) -> WorkloadResource {
        WorkloadResource { state }
    }
}

pub fn schema() -> Schema {
    let b = Block::new(
        "A notebook run on confidential data: the notebook and its parameters are baked into an image whose digest \
         the data owners pin in their `dcr_policy` (compute it with `data \"dcr_image_digest\"`), and run in a \
         Confidential Space VM — on the local backend, a runc container in a simulated TEE. Apply waits for the \
         run, and succeeds only when the released attestation token verifies: signed by the issuer, for this \
         image digest, with the SHA-256 of the output manifest as nonce.",
    )
    .attr(Attribute::computed("id", Type::String, "The workload name."));
    // The output pool and bucket are the workload's own: where they are is what it is.
    let output = output_block()
        .attr(
            Attribute::optional_computed(
                "location",
                Type::String,
                "Location of the output bucket when dcr creates it (`US`, `EU`, a region such as `europe-west4`). An \
                 organization policy `gcp.resourceLocations` may restrict it.",
            )
            .default_described("the provider's region on `gcp`, else `US`"),
        )
        .requiring_replace(&["bucket", "prefix", "location"]);
    let b = image_attributes(b, output)
        .requiring_replace(&["name"])
        .attr(Attribute::optional(
            "registry",
            Type::String,
            "Registry repository prefix to push the image to (`HOST[:PORT]/PATH`; credentials from the Docker \
             config). Required on `gcp`; on `local` the image goes to the local image store unless this is set.",
        ))
        .attr(Attribute::optional_computed("zone", Type::String, "Zone of the VM.").default_described(
            "the provider's `zone` on `gcp` (`us-central1-a` when the provider sets neither zone nor region) and \
             `local-a` on `local`",
        ))
        .attr(
            Attribute::optional_computed(
                "confidential_type",
                Type::String,
                "Confidential computing technology: `SEV` or `TDX`.",
            )
            .default(Value::string("SEV")),
        )
        .attr(
            Attribute::optional_computed("machine_type", Type::String, "Machine type.")
                .default_described("`n2d-standard-2` for SEV and `c3-standard-4` for TDX"),
        )
        .attr(Attribute::optional(
            "service_account",
            Type::String,
            &format!(
                "Email of the service account the VM runs as. Required on `gcp`: Confidential Space's launcher uses \
                 it to get attestation tokens and to pull the image. It needs {SERVICE_ACCOUNT_ROLES}; whoever \
                 applies needs `roles/iam.serviceAccountUser` on it."
            ),
        ))
        .attr(Attribute::optional(
            "network",
            Type::String,
            "VPC network of the VM, as a full or partial URL (`projects/PROJECT/global/networks/NAME`, \
             `global/networks/NAME`). Defaults to the project's `default` network unless `subnetwork` is set \
             (the network is then inferred).",
        ))
        .attr(Attribute::optional(
            "subnetwork",
            Type::String,
            "Subnetwork of the VM, in the zone's region, as a full or partial URL \
             (`projects/PROJECT/regions/REGION/subnetworks/NAME`, `regions/REGION/subnetworks/NAME`). Required for \
             custom-mode networks.",
        ))
        .attr(
            Attribute::optional_computed(
                "external_ip",
                Type::Bool,
                "Give the VM an ephemeral external IP (a `ONE_TO_ONE_NAT` access config), its way to Google APIs and \
                 the registry. With `false` the subnetwork needs Private Google Access (and Cloud NAT for a registry \
                 outside Google), and an organization policy `compute.vmExternalIpAccess` no longer matters.",
            )
            .default(Value::Bool(true)),
        )
        .attr(
            Attribute::optional_computed(
                "wait",
                Type::Bool,
                "Wait for the run to finish and verify its result; the local backend always waits.",
            )
            .default(Value::Bool(true)),
        )
        .attr(Attribute::computed("image", Type::String, "The image that ran, pinned by digest (`REPO@sha256:...`)."))
        .attr(Attribute::computed("image_digest", Type::String, "Digest of the workload image; known at plan time."))
        .attr(Attribute::computed("instance", Type::String, "Name of the VM."))
        .attr(Attribute::computed(
            "status",
            Type::String,
            "The VM's last status (`TERMINATED` once the run ended; `INTERRUPTED` when Ctrl-C stopped the apply and \
             dcr deleted the VM).",
        ))
        .attr(Attribute::computed(
            "output_uri",
            Type::String,
            "Where this run's results are: `gs://BUCKET/PREFIX<digest hex>/` with `outputs/`, `output-manifest.json` \
             and `attestation-token.jwt`.",
        ))
        .attr(Attribute::computed("output_manifest_sha256", Type::String, "SHA-256 of the output manifest (hex)."))
        .attr(
            Attribute::computed(
                "attestation_token",
                Type::String,
                "The released attestation token (its nonce is the output manifest's SHA-256).",
            )
            .sensitive(),
        )
        .attr(Attribute::computed("attestation_claims", claims_type(), "The verified claims of the token."))
        .attr(Attribute::computed(
            "shared_with",
            Type::set(Type::String),
            "Members every input policy's `output.readers` names: they were granted read access to this run's \
             results (objects under `output_uri`) and to nothing else in the bucket.",
        ))
        .attr(Attribute::computed(
            "log_tail",
            Type::String,
            "The end of the VM's serial console when the run failed (launcher lines; never cell output).",
        ))
        .block(timeouts::block_described(
            "`max_run_seconds` plus 20 minutes (the VM's boot, the image pull, IAM propagation and the release)",
        ));
    Schema::new(0, b)
}

fn validate_config(config: &Value) -> Diagnostics {
    let mut d = crate::workload_image::validate(config);
    d.extend(timeouts::validate(config));
    if let Some(t) = config.get("confidential_type").as_str()
        && !["SEV", "TDX"].contains(&t)
    {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("confidential_type"),
            format!("{t:?} is not a confidential type Confidential Space offers"),
            "Allowed: SEV, TDX.",
        ));
    }
    d.extend(validate_network(config));
    if let Some(sa) = config.get("service_account").as_str()
        && !is_service_account_email(sa)
    {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("service_account"),
            format!("{sa:?} is not a service account email"),
            "Write NAME@PROJECT.iam.gserviceaccount.com (or PROJECT_NUMBER-compute@developer.gserviceaccount.com).",
        ));
    }
    if let Some(r) = config.get("registry").as_str()
        && (r.is_empty() || r.contains('@') || r.ends_with('/') || !r.contains('/'))
    {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("registry"),
            format!("{r:?} is not a repository prefix"),
            "Write HOST[:PORT]/PATH, e.g. us-docker.pkg.dev/PROJECT/REPO; the image is pushed as PATH/NAME.",
        ));
    }
    d
}

/// `NAME@DOMAIN` with the domains Google gives service accounts.
fn is_service_account_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && (domain.ends_with(".iam.gserviceaccount.com") || domain == "developer.gserviceaccount.com")
    })
}

/// `network` and `subnetwork` as Compute takes them: full or partial URLs
/// (compute.v1 `NetworkInterface.network` and `.subnetwork`).
fn validate_network(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    let shapes = [
        ("network", &["global", "networks", "*"][..], "global/networks/NAME or projects/PROJECT/global/networks/NAME"),
        (
            "subnetwork",
            &["regions", "*", "subnetworks", "*"][..],
            "regions/REGION/subnetworks/NAME or projects/PROJECT/regions/REGION/subnetworks/NAME",
        ),
    ];
    for (attr, shape, example) in shapes {
        let Some(url) = config.get(attr).as_str() else { continue };
        let rest = url.strip_prefix("https://www.googleapis.com/compute/v1/").unwrap_or(url);
        let rest = match rest.strip_prefix("projects/").and_then(|r| r.split_once('/')) {
            Some((p, r)) if !p.is_empty() => r,
            _ => rest,
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let fits = parts.len() == shape.len()
            && parts.iter().zip(shape).all(|(p, s)| if *s == "*" { compute_name(p) } else { p == s });
        if !fits {
            d.push(Diagnostic::attribute_error(
                AttributePath::root(attr),
                format!("{url:?} is not a {attr} URL"),
                format!("Write {example} (or the full https://www.googleapis.com/compute/v1/ URL)."),
            ));
        }
    }
    d
}

/// Compute's resource names: `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63.
fn compute_name(n: &str) -> bool {
    (1..=63).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !n.ends_with('-')
}

/// The default time limit: the run's own limit plus [`RUN_MARGIN`].
fn default_timeout(v: &Value) -> std::time::Duration {
    let run = v.get("max_run_seconds").as_i64().filter(|n| *n > 0).unwrap_or(3600) as u64;
    std::time::Duration::from_secs(run).saturating_add(RUN_MARGIN)
}

/// Where the image is stored: `REGISTRY/NAME` or the local image store's name.
fn repository(planned: &Value) -> String {
    let name = planned.get("name").as_str().unwrap_or("");
    match planned.get("registry").as_str() {
        Some(r) => format!("{r}/{name}"),
        None => format!("{LOCAL_IMAGE_HOST}/{name}"),
    }
}

/// The rules the consumer's pool applies: this digest only, on the backend's TEE. Public for the
/// CEL agreement test (tests/tests/cel_agreement.rs), which checks the condition they generate.
pub fn output_rules(digest: &str, is_local: bool) -> PolicyRules {
    PolicyRules {
        allowed_image_digests: vec![digest.to_string()],
        require_confidential_hardware: !is_local,
        allowed_hardware: CONFIDENTIAL_HARDWARE.iter().map(|h| h.to_string()).collect(),
        allow_debug: is_local,
        require_stable_image: !is_local,
    }
}

/// The VM: Confidential Space image, metadata the launcher reads, memory-backed `/run/dcr`.
pub fn instance_body(planned: &Value, image: &str, is_local: bool, local_endpoint: Option<&str>) -> serde_json::Value {
    let s = |a: &str| planned.get(a).as_str().unwrap_or("").to_string();
    let name = s("name");
    let mut items = vec![
        json!({"key": "tee-image-reference", "value": image}),
        json!({"key": "tee-restart-policy", "value": "Never"}),
        // Container logs (the launcher's and papermill's, never cell output) reach the console only
        // where its owner may see the workload anyway: the local, debug-only simulated TEE.
        json!({"key": "tee-container-log-redirect", "value": if is_local { "true" } else { "false" }}),
        json!({"key": "tee-mount", "value": "type=tmpfs,source=tmpfs,destination=/run/dcr"}),
    ];
    if let Some(e) = local_endpoint {
        items.push(json!({"key": "tee-env-DCR_LOCAL_CLOUD", "value": e}));
    }
    let mut body = json!({
        "name": instance_name(&name),
        "machineType": format!("zones/{}/machineTypes/{}", s("zone"), s("machine_type")),
        "confidentialInstanceConfig": {"confidentialInstanceType": s("confidential_type")},
        "shieldedInstanceConfig": {"enableSecureBoot": true, "enableVtpm": true, "enableIntegrityMonitoring": true},
        "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": false},
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
            "sourceImage": if is_local { format!("{CONFIDENTIAL_SPACE_IMAGE}-debug") } else { CONFIDENTIAL_SPACE_IMAGE.to_string() },
            "diskType": format!("zones/{}/diskTypes/{BOOT_DISK_TYPE}", s("zone")),
        }}],
        "networkInterfaces": [network_interface(planned)],
        "metadata": {"items": items},
        "labels": {"dcr-workload": name},
    });
    if let Some(sa) = planned.get("service_account").as_str() {
        body["serviceAccounts"] = json!([{"email": sa, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}]);
    }
    body
}

/// Lets `readers` read this run's results and nothing else in the bucket: a conditional
/// `roles/storage.objectViewer` binding on the output bucket limited to the run's prefix
/// (`resource.name.startsWith('projects/_/buckets/B/objects/PREFIX')`, the form Cloud Storage
/// documents for prefix-scoped access: https://cloud.google.com/storage/docs/access-control/iam#conditions).
/// Object names under the prefix are in the output manifest; listing the bucket stays the
/// consumer's. The binding is keyed by its title, so a re-run of the same image replaces it.
async fn share_run(
    c: &Clients,
    bucket: &str,
    prefix: &str,
    digest: &str,
    readers: &[String],
) -> Result<(), Diagnostics> {
    let condition = run_condition(bucket, prefix, digest);
    let result = dcr_gcp::iam::read_modify_write(&c.storage.bucket_iam(bucket), |p| {
        p.set_conditional_members(RUN_READER_ROLE, &condition, readers)
    })
    .await;
    result.map(|_| ()).map_err(|e| gcp_diag(&format!("Cannot share the run's results in gs://{bucket}/{prefix}"), e))
}

const RUN_READER_ROLE: &str = "roles/storage.objectViewer";

/// The condition of a run's reader binding.
fn run_condition(bucket: &str, prefix: &str, digest: &str) -> dcr_gcp::iam::Expr {
    dcr_gcp::iam::Expr {
        expression: format!(
            "resource.name.startsWith({})",
            cel_string(&format!("projects/_/buckets/{bucket}/objects/{prefix}"))
        ),
        title: Some(format!("dcr run {}", &digest_hex(digest)[..12.min(digest_hex(digest).len())])),
        description: Some(format!(
            "Readers the input policies name, for the results of image {digest} (managed by dcr)"
        )),
    }
}

/// A CEL string literal (single-quoted, `\\` and `'` escaped): object prefixes may hold quotes.
fn cel_string(s: &str) -> String {
    dcr_attestation::condition::quoted(s)
}

/// The VM's one network interface. Without an access config a VM has no external internet access
/// (compute.v1 `NetworkInterface.accessConfigs`), and Confidential Space's launcher must reach the
/// registry, the attestation service, STS, Storage and KMS: an ephemeral external IP is the default,
/// as gcloud gives one (Google's `launcher/image/test/create_vm.sh` creates VMs this way).
fn network_interface(planned: &Value) -> serde_json::Value {
    let mut nic = serde_json::Map::new();
    match (planned.get("network").as_str(), planned.get("subnetwork").as_str()) {
        (None, None) => {
            nic.insert("network".into(), json!("global/networks/default"));
        }
        (network, subnetwork) => {
            if let Some(n) = network {
                nic.insert("network".into(), json!(n));
            }
            if let Some(s) = subnetwork {
                nic.insert("subnetwork".into(), json!(s));
            }
        }
    }
    if planned.get("external_ip").as_bool() != Some(false) {
        nic.insert("accessConfigs".into(), json!([{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]));
    }
    serde_json::Value::Object(nic)
}

/// Planned state: image attribute defaults, backend defaults, the planned image and names; results
/// unknown on a new run, kept on an in-place update.
/// What the image is built from, besides the notebook's bytes.
const IMAGE_INPUTS: [&str; 6] = ["notebook", "parameters", "base_image", "name", "max_run_seconds", "input"];

/// The notebook is gone but the run it defines is recorded and nothing else that goes into the
/// image changed: plan keeps the recorded image digest (see [`crate::files::gone_but_recorded`]).
fn notebook_gone(prior: &Value, planned: &Value) -> Option<Diagnostic> {
    let path = planned.get("notebook").as_str()?;
    let digest = prior.get("image_digest").as_str()?;
    let output_same = ["bucket", "prefix"].iter().all(|a| prior.get("output").get(a) == planned.get("output").get(a));
    let unchanged = output_same && IMAGE_INPUTS.iter().all(|a| prior.get(a) == planned.get(a));
    crate::files::gone_but_recorded(
        AttributePath::root("notebook"),
        path,
        unchanged,
        "the recorded run",
        format!(
            "The run of image {digest} is recorded in state; plans and destroy need no local copy. To run a changed \
             notebook, put the file back at this path."
        ),
    )
}

/// Where the backend puts what the configuration does not place: the provider block's region
/// and zone, and whether the backend is the local one.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    pub is_local: bool,
    pub region: Option<String>,
    pub zone: Option<String>,
}

impl Placement {
    fn of(c: &Clients) -> Placement {
        Placement { is_local: c.is_local, region: c.region.clone(), zone: c.zone.clone() }
    }
}

pub(crate) fn plan_state(
    prior: &Value,
    config: &Value,
    at: &Placement,
    image_digest: Option<&str>,
) -> (Value, Vec<AttributePath>) {
    let schema = schema();
    let mut planned = with_defaults(config);
    plan::fill_defaults(&schema.block, &mut planned);
    if config.get("zone").is_null() {
        planned.set("zone", Value::string(default_zone(at).unwrap_or_default()));
    }
    let machine = match planned.get("confidential_type").as_str() {
        Some("TDX") => Value::string("c3-standard-4"),
        Some(_) => Value::string("n2d-standard-2"),
        None => Value::Unknown,
    };
    if config.get("machine_type").is_null() {
        planned.set("machine_type", machine);
    }
    let name = config.get("name").as_str().map(str::to_string);
    planned.set("id", Value::opt_string(name.clone()));
    planned.set("instance", Value::opt_string(name.as_deref().map(instance_name)));
    let output = planned.get("output").clone();
    if !output.is_null() && output.get("location").is_null() {
        let location = output_location(at, &planned);
        let mut o = output;
        o.set("location", Value::string(location));
        planned.set("output", o);
    }
    match image_digest {
        Some(digest) => {
            planned.set("image_digest", Value::string(digest));
            planned.set("image", Value::string(format!("{}@{}", repository(&planned), digest)));
            let out = planned.get("output");
            let uri = match (out.get("bucket").as_str(), out.get("prefix").as_str()) {
                (Some(b), Some(p)) => Value::string(RunLocation::new(b, p, digest).uri()),
                _ => Value::Unknown,
            };
            planned.set("output_uri", uri);
        }
        None => {
            for a in ["image_digest", "image", "output_uri"] {
                planned.set(a, Value::Unknown);
            }
        }
    }
    let replace = plan::replacements(&schema.block, prior, &planned);
    let keeps_run = !prior.is_null() && replace.is_empty() && !is_new_run(prior, &planned);
    let results =
        ["status", "output_manifest_sha256", "attestation_token", "attestation_claims", "log_tail", "shared_with"];
    for a in results {
        planned.set(a, if keeps_run { prior.get(a).clone() } else { Value::Unknown });
    }
    (planned, replace)
}

/// Whether `planned` differs from `prior` in what defines a run (and so runs again).
fn is_new_run(prior: &Value, planned: &Value) -> bool {
    RUN_ATTRIBUTES.iter().any(|a| prior.get(a) != planned.get(a))
}

/// The zone a VM goes to when the resource names none: the provider's `zone`; on `gcp` without a
/// zone or region, `us-central1-a`. A region without a zone is not guessed into a zone (not every
/// region has an `-a`): `None`, and plan asks for one.
fn default_zone(c: &Placement) -> Option<String> {
    if c.is_local {
        return Some("local-a".into());
    }
    match (&c.zone, &c.region) {
        (Some(z), _) => Some(z.clone()),
        (None, None) => Some("us-central1-a".into()),
        (None, Some(_)) => None,
    }
}

/// The output bucket's location: `output.location`, else the provider's region, else `US`.
fn output_location(c: &Placement, planned: &Value) -> String {
    planned
        .get("output")
        .get("location")
        .as_str()
        .map(str::to_string)
        .or_else(|| c.region.clone().map(|r| r.to_uppercase()))
        .unwrap_or_else(|| "US".into())
}

/// Checks that need the backend: what Confidential Space needs on `gcp`.
fn validate_for_backend(config: &Value, c: &Clients) -> Diagnostics {
    let mut d = Diagnostics::new();
    if c.is_local {
        return d;
    }
    if config.get("registry").is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("registry"),
            "a registry is required on the gcp backend",
            "Confidential Space VMs pull the image from a registry: set registry, e.g. \
             us-docker.pkg.dev/PROJECT/REPO (dcr creates an Artifact Registry repository that does not exist yet).",
        ));
    }
    if config.get("service_account").is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("service_account"),
            "a service account is required on the gcp backend",
            format!(
                "Confidential Space's launcher gets attestation tokens and pulls the image as the VM's service \
                 account: set service_account to one that has {SERVICE_ACCOUNT_ROLES}."
            ),
        ));
    }
    if config.get("zone").is_null() && default_zone(&Placement::of(c)).is_none() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("zone"),
            "no zone for the VM",
            "The provider sets a region but no zone: set zone here, or zone in the provider's gcp block.",
        ));
    }
    d
}

fn str_attr(v: &Value, a: &str) -> Result<String, Diagnostics> {
    common::str_attr(TYPE_NAME, v, a)
}

impl WorkloadResource {
    /// Stores the image where the VM pulls it from; returns the pinned reference.
    async fn store_image(&self, c: &Clients, planned: &Value, image: &BuiltImage) -> Result<String, Diagnostics> {
        let repo = repository(planned);
        let fail = |e: dcr_image::ImageError| {
            Diagnostics::from(Diagnostic::error("Cannot store the workload image", e.to_string()))
        };
        match planned.get("registry").as_str() {
            None => {
                let dir = c.local_image_store().ok_or_else(|| {
                    Diagnostics::from(Diagnostic::attribute_error(
                        AttributePath::root("registry"),
                        "a registry is required on the gcp backend",
                        "Set registry to an Artifact Registry repository, e.g. us-docker.pkg.dev/PROJECT/REPO.",
                    ))
                })?;
                let layout = dcr_image::layout::Layout::create(&dir).map_err(fail)?;
                image.write_to(&layout, planned.get("name").as_str().unwrap_or("workload")).map_err(fail)?;
                Ok(format!("{repo}@{}", image.digest))
            }
            Some(registry) => {
                if !c.is_local {
                    image_registry::prepare(c, registry, &str_attr(planned, "service_account")?).await?;
                }
                let host = repo.split('/').next().unwrap_or("").to_string();
                let dest = dcr_image::registry::Destination {
                    reference: format!("{repo}:{}", &digest_hex(&image.digest)[..12]),
                    auth: image_registry::push_auth(c, &host).await?,
                    plain_http: dcr_image::registry::loopback_plain_http(&repo),
                };
                dcr_image::registry::push(image, &dest).await.map_err(fail)
            }
        }
    }

    /// The consumer side: output bucket, and a pool whose condition pins this digest, allowed to
    /// write there.
    async fn ensure_output_access(&self, c: &Clients, planned: &Value, digest: &str) -> Result<(), Diagnostics> {
        let name = str_attr(planned, "name")?;
        let bucket = str_attr(planned.get("output"), "bucket")?;
        let labels = std::collections::BTreeMap::from([("dcr-workload".to_string(), name.clone())]);
        ensure_bucket(c, &private_bucket(&bucket, &output_location(&Placement::of(c), planned), &labels)).await?;
        let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
        let parent = format!("projects/{number}/locations/global");
        let pool = WorkloadIdentityPool {
            display_name: Some(format!("dcr out {name}")),
            description: Some(format!("dcr_workload {name:?} writing its results (managed by Terraform)")),
            ..Default::default()
        };
        let pool = c
            .iam
            .ensure(&parent, &names::output_pool_id(&name), &pool)
            .await
            .map_err(|e| gcp_diag("Cannot create the output workload identity pool", e))?;
        let provider = WorkloadIdentityPoolProvider {
            display_name: Some("attestation".into()),
            description: Some(format!("Only image {digest} (managed by dcr)")),
            attribute_mapping: attribute_mapping(),
            attribute_condition: Some(attribute_condition(&output_rules(digest, c.is_local))),
            oidc: Some(Oidc {
                issuer_uri: if c.is_local { LOCAL_ISSUER } else { GOOGLE_ISSUER }.to_string(),
                allowed_audiences: vec![STS_AUDIENCE.to_string()],
                jwks_json: None,
            }),
            ..Default::default()
        };
        c.iam
            .ensure(&pool.name, PROVIDER_ID, &provider)
            .await
            .map_err(|e| gcp_diag("Cannot create the output workload identity provider", e))?;
        grant(&c.storage.bucket_iam(&bucket), OUTPUT_WRITER, &pool_principal_set(&pool.name), true).await
    }

    /// Polls the VM until it is TERMINATED; returns its last state.
    async fn wait_for_end(&self, c: &Clients, zone: &str, instance: &str) -> Result<serde_json::Value, Diagnostics> {
        let mut polls = 0u32;
        loop {
            let vm = c
                .compute
                .get_instance(&c.project, zone, instance)
                .await
                .map_err(|e| gcp_diag("Cannot read the workload VM", e))?
                .ok_or_else(|| {
                    Diagnostics::from(Diagnostic::error(
                        "The workload VM disappeared",
                        format!("{instance} was deleted while it ran."),
                    ))
                })?;
            if vm["status"] == "TERMINATED" || vm["status"] == "STOPPED" {
                return Ok(vm);
            }
            tokio::time::sleep(std::time::Duration::from_millis(if polls < 20 { 250 } else { 2000 })).await;
            polls += 1;
        }
    }

    async fn log_tail(&self, c: &Clients, zone: &str, instance: &str) -> String {
        match c.compute.serial_output(&c.project, zone, instance, 0).await {
            Ok(out) => {
                let lines: Vec<&str> = out.contents.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(the serial console could not be read: {e})"),
        }
    }

    async fn converge(&self, prior: &Value, planned: &Value) -> (Value, Diagnostics) {
        let mut state = planned.clone();
        let result: Result<(), Diagnostics> = async {
            let c = self.state.clients()?;
            if !prior.is_null() && !is_new_run(prior, planned) {
                return Ok(()); // an in-place change (wait, timeouts): nothing runs again
            }
            let (manifest, image) = plan_image(&c, planned).await?.ok_or_else(|| {
                Diagnostics::from(Diagnostic::error("dcr_workload: the image inputs are not known", "This is a bug in the provider."))
            })?;
            if planned.get("image_digest").as_str() != Some(image.digest.as_str()) {
                return Err(Diagnostic::error(
                    "The workload image changed between plan and apply",
                    format!(
                        "The plan built {}, apply built {}: the notebook or base image changed in between. Run terraform apply again.",
                        planned.get("image_digest").as_str().unwrap_or("?"),
                        image.digest
                    ),
                )
                .into());
            }
            let reference =
                self.state.stop.unless_stopped("the image push", self.store_image(&c, planned, &image)).await??;
            state.set("image", Value::string(&reference));
            self.ensure_output_access(&c, planned, &image.digest).await?;

            let zone = str_attr(planned, "zone")?;
            let instance = instance_name(&str_attr(planned, "name")?);
            // A VM of this name is an earlier run of this workload (a failed apply): it goes first.
            c.compute.delete_instance(&c.project, &zone, &instance).await.map_err(|e| gcp_diag("Cannot delete the earlier run's VM", e))?;
            let body = instance_body(planned, &reference, c.is_local, c.local_endpoint.as_deref());
            c.compute.insert_instance(&c.project, &zone, &body).await.map_err(|e| gcp_diag("Cannot create the workload VM", e))?;
            state.set("status", Value::string("PROVISIONING"));
            if !c.is_local && planned.get("wait").as_bool() == Some(false) {
                for a in ["output_manifest_sha256", "attestation_token", "attestation_claims", "log_tail", "shared_with"] {
                    state.set(a, Value::Null);
                }
                return Ok(());
            }
            let vm = match self.state.stop.unless_stopped("the run", self.wait_for_end(&c, &zone, &instance)).await {
                Ok(vm) => vm?,
                Err(interrupted) => {
                    // A run cut short must not go on unsupervised on the data: the VM goes now, and
                    // the next apply starts a new run (a failed create is replaced).
                    let deleted = c.compute.delete_instance(&c.project, &zone, &instance).await;
                    state.set("status", Value::string(if deleted.is_ok() { "INTERRUPTED" } else { "RUNNING" }));
                    let mut d = interrupted;
                    if let Err(e) = deleted {
                        d.extend(gcp_diag(&format!("Cannot delete the interrupted run's VM {instance}"), e));
                    }
                    return Err(d);
                }
            };
            state.set("status", Value::opt_string(vm["status"].as_str()));
            self.collect(&c, &mut state, &manifest, &image.digest, &zone, &instance, &vm).await
        }
        .await;
        match result {
            Ok(()) => (state, Diagnostics::new()),
            // A refused or failed new run changes no record: the state still describes the last
            // finished run (whose results are still there), so the next plan tries the new run
            // again. A failed first run is recorded as it got (Terraform taints it).
            Err(d) if !prior.is_null() => (prior.clone(), d),
            Err(d) => (settle(&state), d),
        }
    }

    /// Reads what the run released and verifies it; a failure report or a refused token fails the
    /// apply with the reason.
    #[allow(clippy::too_many_arguments)]
    async fn collect(
        &self,
        c: &Clients,
        state: &mut Value,
        manifest: &WorkloadManifest,
        digest: &str,
        zone: &str,
        instance: &str,
        vm: &serde_json::Value,
    ) -> Result<(), Diagnostics> {
        let fail = |summary: String, detail: String| Diagnostics::from(Diagnostic::error(summary, detail));
        let place = RunLocation::under(&manifest.output.uri, digest).ok_or_else(|| {
            fail("The workload's output is not in Cloud Storage".into(), format!("{:?}", manifest.output.uri))
        })?;
        let (run, bucket) = (place.uri(), place.bucket.as_str());
        if let Some(bytes) = read_object(c, bucket, &place.object(FAILURE_OBJECT)).await? {
            let tail = self.log_tail(c, zone, instance).await;
            state.set("log_tail", Value::string(&tail));
            let report: Option<FailureReport> = serde_json::from_slice(&bytes).ok();
            let (stage, message) = report
                .map(|r| (r.stage, r.message))
                .unwrap_or_else(|| ("?".into(), String::from_utf8_lossy(&bytes).into_owned()));
            return Err(fail(
                format!("The workload failed ({stage}); nothing was released"),
                format!("{message}\n\nEnd of the VM's console:\n{tail}"),
            ));
        }
        let Some(manifest_bytes) = read_object(c, bucket, &place.object(OUTPUT_MANIFEST_OBJECT)).await? else {
            let tail = self.log_tail(c, zone, instance).await;
            state.set("log_tail", Value::string(&tail));
            return Err(fail(
                "The workload released nothing".into(),
                format!(
                    "The VM ended ({}) without an output manifest or a failure report in {run}.\n\nEnd of the VM's console:\n{tail}",
                    vm["statusMessage"].as_str().unwrap_or("no status message")
                ),
            ));
        };
        let token = read_object(c, bucket, &place.object(TOKEN_OBJECT)).await?.ok_or_else(|| {
            fail(
                "The workload released no attestation token".into(),
                format!("{} is missing.", place.object_uri(TOKEN_OBJECT)),
            )
        })?;
        let token = String::from_utf8_lossy(&token).trim().to_string();
        let issuer = if c.is_local { LOCAL_ISSUER } else { GOOGLE_ISSUER };
        let jwks = c.issuer_jwks(issuer).await.map_err(|e| fail("Cannot fetch the issuer's keys".into(), e))?;
        let expected = Expected {
            issuer: issuer.to_string(),
            audience: Some(run.clone()),
            attested: Attested {
                image_digest: Some(digest.to_string()),
                nonce: Some(output_nonce(&manifest_bytes)),
                require_confidential_hardware: !c.is_local,
                allow_debug: Some(c.is_local),
                ..Default::default()
            },
            valid_at: None,
            jwks: None,
            local_state_dir: None,
        };
        let claims = check(&token, &jwks, &expected).map_err(|why| {
            fail(
                "The workload's attestation token does not verify".into(),
                format!("{why}. The results in {run} are not trusted."),
            )
        })?;
        let released = OutputManifest::from_bytes(&manifest_bytes).map_err(|e| {
            fail(
                "The workload's output manifest is not readable".into(),
                format!("{e} ({})", place.object_uri(OUTPUT_MANIFEST_OBJECT)),
            )
        })?;
        let readers = shared_readers(&released.inputs);
        share_run(c, bucket, &place.prefix, digest, &readers).await?;
        state.set("shared_with", Value::Set(readers.iter().map(Value::string).collect()));
        state.set("output_manifest_sha256", Value::string(output_nonce(&manifest_bytes)));
        state.set("attestation_token", Value::string(token));
        state.set("attestation_claims", claims_value(&claims));
        state.set("log_tail", Value::Null);
        Ok(())
    }

    /// Deletes the workload's VM if it is still running; true when it did.
    async fn stop_unfinished_run(&self, planned: &Value) -> Result<bool, Diagnostics> {
        let c = self.state.clients()?;
        let (Some(zone), Some(name)) = (planned.get("zone").as_str(), planned.get("name").as_str()) else {
            return Ok(false);
        };
        let instance = instance_name(name);
        let vm = c
            .compute
            .get_instance(&c.project, zone, &instance)
            .await
            .map_err(|e| gcp_diag("Cannot read the workload VM", e))?;
        let running = vm.is_some_and(|vm| vm["status"] != "TERMINATED" && vm["status"] != "STOPPED");
        if running {
            c.compute
                .delete_instance(&c.project, zone, &instance)
                .await
                .map_err(|e| gcp_diag(&format!("Cannot delete the unfinished run's VM {instance}"), e))?;
        }
        Ok(running)
    }

    async fn delete(&self, prior: &Value) -> Result<(), Diagnostics> {
        let c = self.state.clients()?;
        let name = str_attr(prior, "name")?;
        if let Some(zone) = prior.get("zone").as_str() {
            c.compute
                .delete_instance(&c.project, zone, &instance_name(&name))
                .await
                .map_err(|e| gcp_diag("Cannot delete the workload VM", e))?;
        }
        let number = c.project_number().await.map_err(|e| gcp_diag("Cannot read the project number", e))?;
        let pool = pool_name(&number, &names::output_pool_id(&name));
        if let Some(bucket) = prior.get("output").get("bucket").as_str() {
            // The results go with the workload: copy what you keep before destroying it.
            empty_and_delete_bucket(&c, bucket).await?;
        }
        c.iam
            .delete_if_present::<WorkloadIdentityPoolProvider>(&format!("{pool}/providers/{PROVIDER_ID}"))
            .await
            .map_err(|e| gcp_diag("Cannot delete the output workload identity provider", e))?;
        c.iam
            .delete_if_present::<WorkloadIdentityPool>(&pool)
            .await
            .map_err(|e| gcp_diag("Cannot delete the output workload identity pool", e))?;
        Ok(())
    }
}

#[async_trait]
impl Resource for WorkloadResource {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        validate_config(config)
    }

    /// A run is a record: what it released stays as it was recorded.
    async fn read(&self, state: Value, private: Vec<u8>) -> ReadResponse {
        read_response(state.clone(), private, Ok(state))
    }

    async fn plan(&self, req: PlanRequest) -> PlanResponse {
        if req.proposed_new_state.is_null() {
            return PlanResponse::default();
        }
        let fail = |diagnostics: Diagnostics| PlanResponse { diagnostics, ..Default::default() };
        let d = validate_config(&req.config);
        if d.has_errors() {
            return fail(d);
        }
        let c = match self.state.clients() {
            Ok(c) => c,
            Err(e) => return fail(e),
        };
        let backend = validate_for_backend(&req.config, &c);
        if backend.has_errors() {
            return fail(backend);
        }
        let defaults = with_defaults(&req.config);
        let mut d = d;
        let image_digest = if let Some(warning) = notebook_gone(&req.prior_state, &defaults) {
            d.push(warning);
            req.prior_state.get("image_digest").as_str().map(str::to_string)
        } else {
            match plan_image(&c, &defaults).await {
                Ok(i) => i.map(|(_, image)| image.digest),
                Err(e) => return fail(e),
            }
        };
        let (planned_state, requires_replace) =
            plan_state(&req.prior_state, &req.config, &Placement::of(&c), image_digest.as_deref());
        PlanResponse { planned_state, requires_replace, planned_private: Vec::new(), diagnostics: d }
    }

    async fn apply(&self, req: ApplyRequest) -> ApplyResponse {
        let delete = self.delete(&req.prior_state);
        let converge = self.converge(&req.prior_state, &req.planned_state);
        let limits_from = if req.planned_state.is_null() { &req.prior_state } else { &req.planned_state };
        let (mut state, mut diagnostics) =
            apply_converging(TYPE_NAME, &req, default_timeout(limits_from), delete, converge).await;
        if diagnostics.has_errors() && !req.planned_state.is_null() {
            // Timed out, or failed while it waited: the run must not go on unsupervised on the data.
            match self.stop_unfinished_run(&req.planned_state).await {
                Ok(true) if req.prior_state.is_null() => state.set("status", Value::string("INTERRUPTED")),
                Ok(_) => {}
                Err(d) => diagnostics.extend(d),
            }
        }
        ApplyResponse { new_state: state, private: Vec::new(), diagnostics }
    }

    async fn import(&self, id: &str) -> Result<Value, Diagnostics> {
        Err(Diagnostic::error(
            format!("Cannot import {TYPE_NAME} {id:?}"),
            "A workload is a run, recorded when it happens; it cannot be imported. Apply the configuration to run it.",
        )
        .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_pool_admits_only_this_digest_on_the_backends_tee() {
        let d = format!("sha256:{}", "a".repeat(64));
        let local = attribute_condition(&output_rules(&d, true));
        assert!(local.contains(&d) && !local.contains("swname"), "{local}");
        let gcp = attribute_condition(&output_rules(&d, false));
        assert!(gcp.contains("CONFIDENTIAL_SPACE") && gcp.contains("disabled-since-boot"), "{gcp}");
    }

    #[test]
    fn a_run_is_shared_by_a_condition_on_its_prefix() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let c = run_condition("out", "study/abab/", &d);
        assert_eq!(c.expression, "resource.name.startsWith('projects/_/buckets/out/objects/study/abab/')");
        assert_eq!(c.title.as_deref(), Some("dcr run abababababab"));
        assert_eq!(cel_string(r"it's a\b"), r"'it\'s a\\b'");
    }

    #[test]
    fn vms_get_an_external_ip_unless_told_otherwise_and_a_balanced_boot_disk() {
        let planned = Value::object([
            ("name", Value::string("study")),
            ("zone", Value::string("europe-west4-b")),
            ("machine_type", Value::string("n2d-standard-2")),
            ("confidential_type", Value::string("SEV")),
            ("external_ip", Value::Bool(true)),
        ]);
        let b = instance_body(&planned, "r@sha256:00", false, None);
        assert_eq!(
            b["networkInterfaces"],
            json!([{"network": "global/networks/default", "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}])
        );
        assert_eq!(b["disks"][0]["initializeParams"]["diskType"], "zones/europe-west4-b/diskTypes/pd-balanced");
        let mut private = planned.clone();
        private.set("external_ip", Value::Bool(false));
        private.set("subnetwork", Value::string("regions/europe-west4/subnetworks/private"));
        let b = instance_body(&private, "r@sha256:00", false, None);
        assert_eq!(b["networkInterfaces"], json!([{"subnetwork": "regions/europe-west4/subnetworks/private"}]));
    }

    #[test]
    fn the_default_time_limit_covers_the_run_and_its_margin() {
        assert_eq!(default_timeout(&Value::Null), std::time::Duration::from_secs(3600 + 20 * 60));
        let long = Value::object([("max_run_seconds", Value::int(86_400))]);
        assert_eq!(default_timeout(&long), std::time::Duration::from_secs(86_400 + 20 * 60));
    }

    #[test]
    fn network_urls_and_service_accounts_are_checked() {
        for (attr, good) in [
            ("network", "global/networks/default"),
            ("network", "projects/host-proj/global/networks/shared"),
            ("network", "https://www.googleapis.com/compute/v1/projects/p/global/networks/n"),
            ("subnetwork", "regions/europe-west4/subnetworks/private"),
            ("subnetwork", "projects/host/regions/us-east1/subnetworks/s-1"),
        ] {
            assert!(validate_network(&Value::object([(attr, Value::string(good))])).0.is_empty(), "{good}");
        }
        for (attr, bad) in [("network", "default"), ("network", "global/networks/Bad"), ("subnetwork", "subnetworks/s")]
        {
            let d = validate_network(&Value::object([(attr, Value::string(bad))]));
            assert_eq!(d.0[0].attribute, Some(AttributePath::root(attr)), "{bad}");
        }
        assert!(is_service_account_email("dcr-vm@my-proj.iam.gserviceaccount.com"));
        assert!(is_service_account_email("123456-compute@developer.gserviceaccount.com"));
        assert!(!is_service_account_email("alice@example.com"));
    }

    #[test]
    fn bad_settings_name_their_attribute() {
        let cfg = Value::object([
            ("confidential_type", Value::string("SNP")),
            ("registry", Value::string("no-slash")),
            ("parameters", Value::string("[1]")),
            ("name", Value::string("Bad")),
        ]);
        let d = validate_config(&cfg);
        let text = format!("{d:?}");
        for attr in ["confidential_type", "registry", "parameters", "name"] {
            assert!(text.contains(attr), "{attr}: {text}");
        }
    }
}
