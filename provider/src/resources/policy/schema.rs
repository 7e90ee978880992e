//! The `dcr_policy` schema, and the checks of a configuration that hold whatever the backend.

use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER, is_sha256_digest};
use tfplugin6::schema::{Attribute, Block, NestedBlock, Schema};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Type, Value, model};

use super::model::{Policy, string_set};
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
            .default(Value::int(DEFAULT_MAX_OUTPUT_BYTES as i64))
            .whole_number(1, MAX_OUTPUT_BYTES as i64),
    )
    .attr(
        Attribute::optional_computed(
            "allowed_extensions",
            Type::set(Type::String),
            "File extensions that may be released, without the dot (`csv`).",
        )
        .default(tfplugin6::IntoValue::into_value(string_set(&DEFAULT_OUTPUT_EXTENSIONS.map(str::to_string))))
        .check(extension),
    )
    .attr(
        Attribute::optional(
            "readers",
            Type::set(Type::String),
            "IAM members who may read released output, besides the consumer who ran the workload.",
        )
        .check(validate::reader_member),
    );
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
            .requires_replace()
            .check_detailed(policy_name, "The pool is named dcr-NAME, at most 32 characters."),
        )
        .attr(
            Attribute::required(
                "datasets",
                Type::set(Type::String),
                "Ids of the `dcr_dataset`s the policy covers (`dcr_dataset.x.id`), at least one.",
            )
            .check(|id| parse_id(id).map(|_| ())),
        )
        .attr(
            Attribute::required(
                "allowed_image_digests",
                Type::set(Type::String),
                "Image digests (`sha256:` and 64 hex digits) of the workloads allowed to read the datasets. Empty \
                 means nothing may read yet. Removing a digest revokes it for new token exchanges.",
            )
            .check_detailed(
                image_digest,
                "An image digest is \"sha256:\" followed by 64 lowercase hex digits, as `data.dcr_image_digest` or \
                 `crane digest` print it. Tags are not accepted: they can be moved to other images.",
            ),
        )
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
                "Hardware accepted when confidential hardware is required.",
            )
            .default_described("all of them when `require_confidential_hardware` is `true`, else none")
            .one_of(&CONFIDENTIAL_HARDWARE),
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
            Attribute::optional_computed("bucket", Type::String, "Bucket holding the policy document, and every earlier version of it as `history/SHA256.json` (so runs held to an \
             earlier version still verify).")
                .default_described("`PROJECT-policy-NAME`")
                .requires_replace()
                .check(validate::bucket_name),
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

fn image_digest(d: &str) -> Result<(), String> {
    if is_sha256_digest(d) { Ok(()) } else { Err(format!("{d:?} is not an image digest")) }
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
    let mut d = tfplugin6::validate::declared(&schema().block, config);
    let at = AttributePath::root;
    if m.datasets.known().is_some_and(|s| s.0.is_empty()) {
        d.push(Diagnostic::attribute_error(
            at("datasets"),
            "a policy must cover at least one dataset",
            "List the ids of the dcr_datasets the policy governs, e.g. [dcr_dataset.patients.id].",
        ));
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
    let output = m.output.into_known().unwrap_or_default();
    let out = |a: &str| at("output").attr(a);
    if output.allowed_extensions.known().is_some_and(|s| s.0.is_empty()) {
        d.push(Diagnostic::attribute_error(
            out("allowed_extensions"),
            "no extension allowed",
            "Nothing could be released.",
        ));
    }
    d.extend(timeouts::validate(&m.timeouts));
    d
}
