//! The rules a policy puts in force — with the backend's defaults, refusing what the backend
//! refuses — and the policy document that carries them to the workloads.

use dcr_attestation::claims::{CONFIDENTIAL_HARDWARE, GOOGLE_ISSUER, LOCAL_ISSUER};
use dcr_attestation::condition::{PolicyRules, attribute_condition};
use dcr_attestation::policy::{AttestationRules, DatasetRef, FORMAT, OutputRules, PolicyDocument};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics};

use super::model::{Policy, strings};
use super::{DEFAULT_MAX_OUTPUT_BYTES, DEFAULT_OUTPUT_EXTENSIONS};
use crate::resources::dataset::LocatedDataset;

/// The rules in force, with the backend's defaults filled in; and what the backend refuses.
pub fn effective_rules(config: &Policy, is_local: bool) -> Result<(PolicyRules, String, Diagnostics), Diagnostics> {
    let mut d = Diagnostics::new();
    let at = AttributePath::root;
    let require_hw = config.require_confidential_hardware.known().copied().unwrap_or(!is_local);
    let allow_debug = config.allow_debug.known().copied().unwrap_or(false);
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
    let hardware = match config.allowed_hardware.known() {
        Some(_) => strings(&config.allowed_hardware),
        None if require_hw => CONFIDENTIAL_HARDWARE.iter().map(|s| s.to_string()).collect(),
        None => Vec::new(),
    };
    let rules = PolicyRules {
        allowed_image_digests: strings(&config.allowed_image_digests),
        require_confidential_hardware: require_hw,
        allowed_hardware: hardware,
        allow_debug,
        require_stable_image: config.require_stable_image.known().copied().unwrap_or(!is_local),
    };
    let issuer = config
        .issuer
        .known()
        .cloned()
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

/// The output rules of a policy, the defaults for what it leaves out.
pub fn output_rules(p: &Policy) -> OutputRules {
    let output = p.output.known().cloned().unwrap_or_default();
    OutputRules {
        max_bytes: output.max_bytes.known().and_then(|n| n.as_i64()).map_or(DEFAULT_MAX_OUTPUT_BYTES, |n| n as u64),
        allowed_extensions: match output.allowed_extensions.known() {
            Some(_) => strings(&output.allowed_extensions),
            None => DEFAULT_OUTPUT_EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        },
        readers: strings(&output.readers),
    }
}

/// The policy document a state describes (its `version` as given).
pub fn document(state: &Policy, rules: &PolicyRules, datasets: &[LocatedDataset], version: u64) -> PolicyDocument {
    let s = |a: &tfplugin6::Attr<String>| a.known().cloned().unwrap_or_default();
    PolicyDocument {
        format: FORMAT.to_string(),
        name: s(&state.name),
        version,
        issuer: s(&state.issuer),
        audience: s(&state.audience),
        workload_identity_provider: s(&state.workload_identity_provider),
        attribute_condition: s(&state.attribute_condition),
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

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}
