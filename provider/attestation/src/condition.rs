//! From a data owner's rules to the workload identity provider's attribute condition and mapping.
//! The condition is generated, never hand-written, so a `terraform plan` shows exactly what the
//! cloud will enforce, and the provider checks it with the same CEL library the local cloud runs.

use std::collections::BTreeMap;

use crate::claims::{CONFIDENTIAL_SPACE, DEBUG_DISABLED};

/// What a `dcr_policy` requires of an attestation token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicyRules {
    /// `sha256:` image digests allowed to read; empty means nothing may read yet.
    pub allowed_image_digests: Vec<String>,
    pub require_confidential_hardware: bool,
    /// `hwmodel` values accepted when confidential hardware is required.
    pub allowed_hardware: Vec<String>,
    pub allow_debug: bool,
    /// Require an image Google still supports (`STABLE` in support_attributes).
    pub require_stable_image: bool,
}

/// `s` as a single-quoted CEL string literal.
pub fn quoted(s: &str) -> String {
    // Digests and hardware names are validated before they get here; escaping keeps the condition
    // well-formed whatever they contain. A single-quoted CEL string may not hold a raw line break,
    // so control characters go as `\u` escapes (CEL's string literal grammar).
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", "))
}

/// The condition's conjuncts, each with the name of the rule it enforces.
pub fn conjuncts(rules: &PolicyRules) -> Vec<(&'static str, String)> {
    let mut c = vec![(
        "image digest",
        format!("assertion.submods.container.image_digest in {}", list(&rules.allowed_image_digests)),
    )];
    if rules.require_confidential_hardware {
        c.push(("software", format!("assertion.swname == {}", quoted(CONFIDENTIAL_SPACE))));
        c.push(("hardware", format!("assertion.hwmodel in {}", list(&rules.allowed_hardware))));
    }
    if !rules.allow_debug {
        c.push(("debug status", format!("assertion.dbgstat == {}", quoted(DEBUG_DISABLED))));
    }
    if rules.require_stable_image {
        c.push(("stable image", "'STABLE' in assertion.submods.confidential_space.support_attributes".to_string()));
    }
    c
}

/// The attribute condition for `rules`.
pub fn attribute_condition(rules: &PolicyRules) -> String {
    conjuncts(rules).into_iter().map(|(_, e)| e).collect::<Vec<_>>().join(" && ")
}

/// The attribute mapping every dcr policy uses: a short subject naming the VM (≤ 127 bytes), and
/// the image digest and hardware model as attributes (usable in `principalSet://…/attribute.…`).
pub fn attribute_mapping() -> BTreeMap<String, String> {
    [
        ("google.subject", "'gce::' + assertion.submods.gce.project_number + '::' + assertion.submods.gce.instance_id"),
        ("attribute.image_digest", "assertion.submods.container.image_digest"),
        ("attribute.hwmodel", "assertion.hwmodel"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cel::{Bindings, check_condition, evaluate_condition, explain_refusal};
    use serde_json::json;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn prod() -> serde_json::Value {
        json!({"swname": "CONFIDENTIAL_SPACE", "hwmodel": "GCP_INTEL_TDX", "dbgstat": "disabled-since-boot",
               "submods": {"confidential_space": {"support_attributes": ["STABLE"]},
                           "container": {"image_digest": D1}, "gce": {"project_number": "1", "instance_id": "2"}}})
    }

    fn strict() -> PolicyRules {
        PolicyRules {
            allowed_image_digests: vec![D1.into()],
            require_confidential_hardware: true,
            allowed_hardware: vec!["GCP_INTEL_TDX".into()],
            allow_debug: false,
            require_stable_image: true,
        }
    }

    #[test]
    fn generated_condition_accepts_a_matching_token_and_names_what_refuses_others() {
        let cond = attribute_condition(&strict());
        check_condition(&cond).unwrap();
        let ok = Bindings { assertion: prod(), ..Default::default() };
        assert_eq!(evaluate_condition(&cond, &ok), Ok(true));
        let mut debug = prod();
        debug["dbgstat"] = json!("enabled");
        let b = Bindings { assertion: debug, ..Default::default() };
        assert_eq!(evaluate_condition(&cond, &b), Ok(false));
        assert_eq!(explain_refusal(&cond, &b).unwrap(), "assertion.dbgstat == 'disabled-since-boot'");
        let mut sim = prod();
        sim["hwmodel"] = json!("DCR_SIMULATED_TEE");
        sim["swname"] = json!("DCR_SIMULATED_CONFIDENTIAL_SPACE");
        let b = Bindings { assertion: sim, ..Default::default() };
        assert_eq!(explain_refusal(&cond, &b).unwrap(), "assertion.swname == 'CONFIDENTIAL_SPACE'");
    }

    #[test]
    fn an_empty_digest_list_admits_nothing() {
        let rules = PolicyRules { allowed_image_digests: vec![], ..strict() };
        let cond = attribute_condition(&rules);
        assert!(cond.starts_with("assertion.submods.container.image_digest in []"));
        assert_eq!(evaluate_condition(&cond, &Bindings { assertion: prod(), ..Default::default() }), Ok(false));
    }

    #[test]
    fn relaxed_rules_drop_their_conjuncts() {
        let rules = PolicyRules { allowed_image_digests: vec![D1.into()], allow_debug: true, ..Default::default() };
        assert_eq!(attribute_condition(&rules), format!("assertion.submods.container.image_digest in ['{D1}']"));
    }

    #[test]
    fn the_mapping_is_valid_and_the_subject_short() {
        crate::cel::check_mapping(&attribute_mapping()).unwrap();
        let m = crate::cel::map_attributes(&attribute_mapping(), &prod()).unwrap();
        assert_eq!(m.google["subject"], "gce::1::2");
        assert_eq!(m.attribute["image_digest"], D1);
    }
}
