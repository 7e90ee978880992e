//! The `dcr_workload` schema, and the checks of a configuration that need no cloud.

use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value};

use crate::timeouts;
use crate::verification::claims_type;
use crate::workload_image::{image_attributes, output_block};

use super::SERVICE_ACCOUNT_ROLES;
use super::model::Workload;

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
        .attr(
            Attribute::optional(
                "registry",
                Type::String,
                "Registry repository prefix to push the image to (`HOST[:PORT]/PATH`; credentials from the Docker \
                 config). Required on `gcp`; on `local` the image goes to the local image store unless this is set.",
            )
            .check_detailed(
                repository_prefix,
                "Write HOST[:PORT]/PATH, e.g. us-docker.pkg.dev/PROJECT/REPO; the image is pushed as PATH/NAME.",
            ),
        )
        .attr(Attribute::optional_computed("zone", Type::String, "Zone of the VM.").default_described(
            "the provider's `zone` on `gcp` (`us-central1-a` when the provider sets neither zone nor region) and \
             `local-a` on `local`",
        ))
        .attr(
            Attribute::optional_computed(
                "confidential_type",
                Type::String,
                "Confidential computing technology.",
            )
            .default(Value::string("SEV"))
            .one_of(&["SEV", "TDX"]),
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
        )
        .check_detailed(
            service_account_email,
            "Write NAME@PROJECT.iam.gserviceaccount.com (or PROJECT_NUMBER-compute@developer.gserviceaccount.com).",
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

pub fn validate_config(value: &Value) -> Diagnostics {
    let config: Workload = match tfplugin6::model::read(value, "dcr_workload configuration") {
        Ok(m) => m,
        Err(d) => return d,
    };
    let mut d = tfplugin6::validate::declared(&schema().block, value);
    d.extend(crate::workload_image::validate(&config.image_spec()));
    d.extend(timeouts::validate(&config.timeouts));
    d.extend(validate_network(&config));
    d
}

fn service_account_email(sa: &str) -> Result<(), String> {
    if is_service_account_email(sa) { Ok(()) } else { Err(format!("{sa:?} is not a service account email")) }
}

fn repository_prefix(r: &str) -> Result<(), String> {
    if r.is_empty() || r.contains('@') || r.ends_with('/') || !r.contains('/') {
        Err(format!("{r:?} is not a repository prefix"))
    } else {
        Ok(())
    }
}

/// `NAME@DOMAIN` with the domains Google gives service accounts.
pub(super) fn is_service_account_email(s: &str) -> bool {
    s.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && (domain.ends_with(".iam.gserviceaccount.com") || domain == "developer.gserviceaccount.com")
    })
}

/// `network` and `subnetwork` as Compute takes them: full or partial URLs
/// (compute.v1 `NetworkInterface.network` and `.subnetwork`).
pub(super) fn validate_network(config: &Workload) -> Diagnostics {
    let mut d = Diagnostics::new();
    let shapes = [
        (
            "network",
            config.network.as_deref(),
            &["global", "networks", "*"][..],
            "global/networks/NAME or projects/PROJECT/global/networks/NAME",
        ),
        (
            "subnetwork",
            config.subnetwork.as_deref(),
            &["regions", "*", "subnetworks", "*"][..],
            "regions/REGION/subnetworks/NAME or projects/PROJECT/regions/REGION/subnetworks/NAME",
        ),
    ];
    for (attr, url, shape, example) in shapes {
        let Some(url) = url else { continue };
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
