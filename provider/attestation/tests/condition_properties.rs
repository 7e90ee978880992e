//! Property tests of the generated attribute condition: whatever strings a policy allows (quotes,
//! backslashes, unicode), the condition parses as CEL, admits a token that satisfies every rule,
//! and refuses one whose image digest (or hardware model) is not in the list.
//!
//! Case counts honour `PROPTEST_CASES` when it is set.

use dcr_attestation::cel::{Bindings, check_condition, evaluate_condition, explain_refusal, split_conjuncts};
use dcr_attestation::claims::{CONFIDENTIAL_SPACE, DEBUG_DISABLED, DEBUG_ENABLED};
use dcr_attestation::condition::{PolicyRules, attribute_condition, conjuncts};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c
}

/// Characters that matter to a CEL string literal or to `split_conjuncts`, over-represented.
const AWKWARD: &[char] = &[
    '\'', '"', '\\', '&', '(', ')', '[', ']', '{', '}', ',', ' ', '`', '$', '?', 'u', 'x', '0', '7', 'é', 'ß', '中',
    '😀', '\u{200b}', '\u{2028}', '\u{feff}', '\u{7f}',
];

/// Line breaks and other control characters: a CEL single-quoted literal may not contain a raw
/// CR or LF, so these are kept in a separate strategy (see `line_breaks_in_allowed_strings`).
const CONTROLS: &[char] = &['\n', '\r', '\t', '\0', '\u{1b}', '\u{85}'];

fn arb_str(controls: bool) -> BoxedStrategy<String> {
    let ch = if controls {
        prop_oneof![3 => any::<char>(), 3 => select(AWKWARD), 2 => proptest::char::range('a', 'f'), 2 => select(CONTROLS)]
            .boxed()
    } else {
        prop_oneof![
            3 => any::<char>().prop_filter("no CR/LF", |c| !matches!(c, '\n' | '\r')),
            3 => select(AWKWARD),
            2 => proptest::char::range('a', 'f'),
        ]
        .boxed()
    };
    prop_oneof![
        3 => prop::collection::vec(ch, 0..24).prop_map(String::from_iter),
        1 => "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        // Strings that look like CEL escapes or code once their quotes are dropped.
        1 => select(vec![
            "\\'", "\\\\'", "'", "\\", "\\u0041", "\\x41", "\\101", "' || true || '", "') || true || ('",
            "\\' || true || \\'", "\"\"\"", "'''", "a' && 'b", "${x}",
        ]).prop_map(String::from),
    ]
    .boxed()
}

/// A policy whose lists hold arbitrary strings (at most 4 of up to ~70 characters each, so the
/// condition stays well inside CEL's 4096-character limit).
fn arb_rules(controls: bool) -> impl Strategy<Value = PolicyRules> {
    (
        prop::collection::vec(arb_str(controls), 0..4),
        any::<bool>(),
        prop::collection::vec(arb_str(controls), 0..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(digests, hw, hardware, debug, stable)| PolicyRules {
            allowed_image_digests: digests,
            require_confidential_hardware: hw,
            allowed_hardware: hardware,
            allow_debug: debug,
            require_stable_image: stable,
        })
}

/// Claims that satisfy every rule a policy can make, with `digest` and `hwmodel` as given.
fn token(digest: &str, hwmodel: &str) -> Value {
    json!({
        "swname": CONFIDENTIAL_SPACE,
        "hwmodel": hwmodel,
        "dbgstat": DEBUG_DISABLED,
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
            "container": {"image_digest": digest},
            "gce": {"project_number": "1", "instance_id": "2"},
        },
    })
}

fn bind(assertion: Value) -> Bindings {
    Bindings { assertion, ..Default::default() }
}

fn pick(list: &[String], i: &Index, otherwise: &str) -> String {
    if list.is_empty() { otherwise.to_string() } else { list[i.index(list.len())].clone() }
}

/// The shared checks, for rules whose strings have no line breaks.
fn check_rules(rules: &PolicyRules, d: &Index, h: &Index, other: &str, other_hw: &str) -> Result<(), TestCaseError> {
    let cond = attribute_condition(rules);
    prop_assert!(check_condition(&cond).is_ok(), "does not parse: {:?}\n{}", check_condition(&cond), cond);

    // The generator joins its conjuncts with `&&`; splitting at top-level `&&` (outside the quoted
    // strings) must give them back exactly, whatever the strings hold.
    let parts: Vec<String> = conjuncts(rules).into_iter().map(|(_, e)| e).collect();
    prop_assert_eq!(split_conjuncts(&cond), parts.clone());

    let digest = pick(&rules.allowed_image_digests, d, "sha256:none");
    let hw = pick(&rules.allowed_hardware, h, "GCP_INTEL_TDX");
    let ok = bind(token(&digest, &hw));
    let hw_usable = !rules.require_confidential_hardware || !rules.allowed_hardware.is_empty();
    let expected = !rules.allowed_image_digests.is_empty() && hw_usable;
    prop_assert_eq!(
        evaluate_condition(&cond, &ok),
        Ok(expected),
        "digest {:?}, hwmodel {:?}, condition:\n{}",
        digest,
        hw,
        cond
    );

    // A digest not in the list is refused, and the refusal names the digest rule.
    if !rules.allowed_image_digests.iter().any(|x| x == other) {
        let b = bind(token(other, &hw));
        prop_assert_eq!(evaluate_condition(&cond, &b), Ok(false), "digest {:?} admitted by\n{}", other, cond);
        prop_assert_eq!(explain_refusal(&cond, &b), Some(parts[0].clone()));
    }

    // A hardware model not in the list is refused when confidential hardware is required.
    if rules.require_confidential_hardware && expected && !rules.allowed_hardware.iter().any(|x| x == other_hw) {
        let b = bind(token(&digest, other_hw));
        prop_assert_eq!(evaluate_condition(&cond, &b), Ok(false), "hwmodel {:?} admitted by\n{}", other_hw, cond);
    }

    // And the fixed rules still hold: debug enabled is refused unless allowed, and so on.
    if expected {
        let mut debug = token(&digest, &hw);
        debug["dbgstat"] = json!(DEBUG_ENABLED);
        prop_assert_eq!(evaluate_condition(&cond, &bind(debug)), Ok(rules.allow_debug));
        let mut unstable = token(&digest, &hw);
        unstable["submods"]["confidential_space"]["support_attributes"] = json!(["USABLE"]);
        prop_assert_eq!(evaluate_condition(&cond, &bind(unstable)), Ok(!rules.require_stable_image));
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(256))]

    /// Allowed digests and hardware models of any content (quotes, backslashes, unicode, things
    /// that look like CEL), except raw line breaks: the condition parses, admits a token that
    /// satisfies the rules, and refuses another digest or hardware model.
    #[test]
    fn conditions_admit_exactly_the_allowed_strings(
        rules in arb_rules(false),
        d in any::<Index>(),
        h in any::<Index>(),
        other in arb_str(false),
        other_hw in arb_str(false),
    ) {
        check_rules(&rules, &d, &h, &other, &other_hw)?;
    }

    /// A digest that differs from an allowed one only by an escape (the allowed string with a
    /// backslash or quote added or removed) is refused.
    #[test]
    fn near_misses_are_refused(
        rules in arb_rules(false).prop_filter("a digest", |r| !r.allowed_image_digests.is_empty()),
        d in any::<Index>(),
        at in any::<Index>(),
        c in select(vec!['\\', '\'', '"', ' ']),
    ) {
        let digest = pick(&rules.allowed_image_digests, &d, "");
        let chars: Vec<char> = digest.chars().collect();
        let i = at.index(chars.len() + 1);
        let mut near: Vec<String> = vec![chars[..i].iter().chain([c].iter()).chain(&chars[i..]).collect()];
        if i < chars.len() {
            near.push(chars[..i].iter().chain(&chars[i + 1..]).collect());
        }
        let cond = attribute_condition(&rules);
        for n in near {
            if rules.allowed_image_digests.contains(&n) {
                continue;
            }
            let b = bind(token(&n, &pick(&rules.allowed_hardware, &d, "x")));
            prop_assert_eq!(evaluate_condition(&cond, &b), Ok(false), "near miss {:?} of {:?} admitted", n, digest);
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Was a bug, fixed: the same with line breaks in the allowed strings. `condition::quoted` escapes only `\`
    /// and `'`, and a CEL single-quoted literal may not hold a raw LF or CR, so the generated
    /// condition does not parse: minimal input `allowed_image_digests = ["\n"]` (or `["\r"]`, or
    /// the same in `allowed_hardware` with `require_confidential_hardware`). condition.rs claims
    /// "escaping keeps the condition well-formed whatever they contain". The provider validates
    /// digests (`sha256:` + 64 hex) and hardware names (`CONFIDENTIAL_HARDWARE`) before building a
    /// condition, so Terraform configurations cannot reach this; other callers of the library can.
    /// Run with `cargo test -- --ignored`.
    #[test]
    fn line_breaks_in_allowed_strings(
        rules in arb_rules(true),
        d in any::<Index>(),
        h in any::<Index>(),
        other in arb_str(true),
        other_hw in arb_str(true),
    ) {
        check_rules(&rules, &d, &h, &other, &other_hw)?;
    }
}

/// The minimal inputs of the bug above.
#[test]
fn line_break_minimal_failures() {
    let mut failures = Vec::new();
    for s in ["\n", "\r"] {
        let digests = PolicyRules { allowed_image_digests: vec![s.to_string()], ..Default::default() };
        let hardware = PolicyRules {
            allowed_image_digests: vec!["sha256:aa".into()],
            require_confidential_hardware: true,
            allowed_hardware: vec![s.to_string()],
            ..Default::default()
        };
        for (what, rules) in [("digest", digests), ("hwmodel", hardware)] {
            if let Err(e) = check_condition(&attribute_condition(&rules)) {
                failures.push(format!("{what} {s:?}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
