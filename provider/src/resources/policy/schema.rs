//! The `dcr_policy` schema, and the checks of a configuration that hold whatever the backend.

use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER, is_sha256_digest};
use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value, model};

use super::model::{Policy, string_set, strings};
use super::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_OUTPUT_EXTENSIONS, MAX_NAME, MAX_OUTPUT_BYTES};
use crate::resources::dataset::parse_id;
use crate::{timeouts, validate};

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
        .default(tfplugin6::IntoValue::into_value(string_set(&DEFAULT_OUTPUT_EXTENSIONS.map(str::to_string)))),
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
    let m: Policy = match model::read(config, "dcr_policy configuration") {
        Ok(m) => m,
        Err(d) => return d,
    };
    let mut d = Diagnostics::new();
    let at = AttributePath::root;
    if let Some(n) = m.name.as_deref()
        && let Err(e) = policy_name(n)
    {
        d.push(Diagnostic::attribute_error(at("name"), e, "The pool is named dcr-NAME, at most 32 characters."));
    }
    if m.datasets.known().is_some_and(|s| s.0.is_empty()) {
        d.push(Diagnostic::attribute_error(
            at("datasets"),
            "a policy must cover at least one dataset",
            "List the ids of the dcr_datasets the policy governs, e.g. [dcr_dataset.patients.id].",
        ));
    }
    for id in strings(&m.datasets) {
        if let Err(e) = parse_id(&id) {
            d.push(Diagnostic::attribute_error(at("datasets"), e, ""));
        }
    }
    for digest in strings(&m.allowed_image_digests) {
        if !is_sha256_digest(&digest) {
            d.push(Diagnostic::attribute_error(
                at("allowed_image_digests"),
                format!("{digest:?} is not an image digest"),
                "An image digest is \"sha256:\" followed by 64 lowercase hex digits, as `data.dcr_image_digest` or \
                 `crane digest` print it. Tags are not accepted: they can be moved to other images.",
            ));
        }
    }
    for h in strings(&m.allowed_hardware) {
        if !CONFIDENTIAL_HARDWARE.contains(&h.as_str()) {
            d.push(Diagnostic::attribute_error(
                at("allowed_hardware"),
                format!("unknown hardware {h:?}"),
                format!("Confidential Space reports one of: {}.", CONFIDENTIAL_HARDWARE.join(", ")),
            ));
        }
    }
    if m.allowed_hardware.known().is_some_and(|s| s.0.is_empty()) {
        d.push(Diagnostic::attribute_error(
            at("allowed_hardware"),
            "no hardware allowed",
            "An empty list would refuse every workload; leave allowed_hardware out to accept all confidential hardware.",
        ));
    }
    if m.allowed_hardware.known().is_some() && m.require_confidential_hardware == model::Attr::Known(false) {
        d.push(Diagnostic::attribute_error(
            at("allowed_hardware"),
            "allowed_hardware applies only when require_confidential_hardware = true",
            "",
        ));
    }
    if let Some(i) = m.issuer.as_deref()
        && !(i.starts_with("https://") && i.len() > "https://".len() && !i.contains(char::is_whitespace))
    {
        d.push(Diagnostic::attribute_error(
            at("issuer"),
            format!("{i:?} is not an https URL"),
            format!("An OIDC issuer is an https URL, e.g. {GOOGLE_ISSUER:?}."),
        ));
    }
    if let Some(b) = m.bucket.as_deref()
        && let Err(e) = validate::bucket_name(b)
    {
        d.push(Diagnostic::attribute_error(at("bucket"), e, ""));
    }
    let output = m.output.into_known().unwrap_or_default();
    let out = |a: &str| at("output").attr(a);
    if let Some(n) = output.max_bytes.known().and_then(|n| n.as_f64())
        && (n < 1.0 || n.fract() != 0.0 || n > MAX_OUTPUT_BYTES as f64)
    {
        d.push(Diagnostic::attribute_error(
            out("max_bytes"),
            format!("{n} is not a whole number of bytes between 1 and {MAX_OUTPUT_BYTES}"),
            "",
        ));
    }
    if output.allowed_extensions.known().is_some_and(|s| s.0.is_empty()) {
        d.push(Diagnostic::attribute_error(
            out("allowed_extensions"),
            "no extension allowed",
            "Nothing could be released.",
        ));
    }
    for e in strings(&output.allowed_extensions) {
        if let Err(e) = extension(&e) {
            d.push(Diagnostic::attribute_error(out("allowed_extensions"), e, ""));
        }
    }
    for r in strings(&output.readers) {
        if let Err(e) = validate::reader_member(&r) {
            d.push(Diagnostic::attribute_error(out("readers"), e, ""));
        }
    }
    d.extend(timeouts::validate(&m.timeouts));
    d
}
