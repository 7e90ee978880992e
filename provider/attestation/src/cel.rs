//! CEL as workload identity federation uses it: attribute mappings (expressions that yield a
//! string) and attribute conditions (expressions that yield a bool), both over the token's claims
//! bound to `assertion`. The provider checks conditions with this module at plan time and the local
//! cloud evaluates them at token exchange, so both read an expression the same way.

use std::collections::BTreeMap;

use cel::{Context, Program, Value as CelValue};
use serde_json::Value;

/// Limits Google documents for a provider (reference/gcp.md §3.2).
pub const MAX_CONDITION_CHARS: usize = 4096;
pub const MAX_MAPPING_EXPRESSION_CHARS: usize = 2048;
pub const MAX_MAPPINGS_TOTAL_BYTES: usize = 8 * 1024;
pub const MAX_CUSTOM_ATTRIBUTES: usize = 50;
pub const MAX_SUBJECT_BYTES: usize = 127;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CelError {
    #[error("the expression does not parse as CEL: {0}")]
    Syntax(String),
    #[error("the expression failed to evaluate: {0}")]
    Evaluation(String),
    #[error("the expression returned {0}, not a {1}")]
    Type(String, &'static str),
}

/// Parses `expr`, without evaluating it.
pub fn check_syntax(expr: &str) -> Result<(), CelError> {
    compile(expr).map(|_| ())
}

fn compile(expr: &str) -> Result<Program, CelError> {
    // The parser reports errors with positions; one line is enough for a diagnostic.
    Program::compile(expr).map_err(|e| CelError::Syntax(e.to_string().lines().next().unwrap_or("").trim().to_string()))
}

/// The variables an expression sees: `assertion` (the token's claims) and, for conditions,
/// `google` and `attribute` (the mapped attributes).
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    pub assertion: Value,
    pub google: BTreeMap<String, String>,
    pub attribute: BTreeMap<String, String>,
}

fn evaluate(expr: &str, b: &Bindings) -> Result<CelValue, CelError> {
    let program = compile(expr)?;
    let mut ctx = Context::default();
    ctx.add_variable("assertion", &b.assertion).map_err(|e| CelError::Evaluation(e.to_string()))?;
    ctx.add_variable("google", &b.google).map_err(|e| CelError::Evaluation(e.to_string()))?;
    ctx.add_variable("attribute", &b.attribute).map_err(|e| CelError::Evaluation(e.to_string()))?;
    program.execute(&ctx).map_err(|e| CelError::Evaluation(e.to_string()))
}

fn type_name(v: &CelValue) -> String {
    format!("{:?}", v.type_of())
}

/// Evaluates an attribute condition: it must return a bool.
pub fn evaluate_condition(expr: &str, b: &Bindings) -> Result<bool, CelError> {
    match evaluate(expr, b)? {
        CelValue::Bool(v) => Ok(v),
        other => Err(CelError::Type(type_name(&other), "bool")),
    }
}

/// Evaluates an attribute mapping: it must return a string (`None` when the claim it reads is
/// absent, which leaves the attribute unset). Any other value is an error, not converted: the
/// iam.v1 reference has a mapping yield "the normalized attribute", which principal identifiers
/// carry as a string, and how Google would spell a number (a JSON number is a CEL double) is not
/// documented — so a claim of the wrong type refuses the exchange rather than being guessed at.
/// cel-python agrees (tests/tests/cel_agreement.rs).
pub fn evaluate_mapping(expr: &str, b: &Bindings) -> Result<Option<String>, CelError> {
    match evaluate(expr, b) {
        Ok(CelValue::String(s)) => Ok(Some(s.to_string())),
        Ok(other) => Err(CelError::Type(type_name(&other), "string")),
        Err(CelError::Evaluation(e)) if e.contains("No such key") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks an attribute mapping against Google's rules: `google.subject` present, keys well-formed,
/// expressions parse and respect the length limits.
pub fn check_mapping(mapping: &BTreeMap<String, String>) -> Result<(), String> {
    if !mapping.contains_key("google.subject") {
        return Err("attributeMapping must map google.subject.".into());
    }
    let mut custom = 0;
    let mut total = 0;
    for (k, expr) in mapping {
        total += k.len() + expr.len();
        match k.split_once('.') {
            Some(("google", "subject" | "groups" | "display_name" | "posix_username")) => {}
            Some(("attribute", name)) => {
                custom += 1;
                if name.is_empty()
                    || name.len() > 100
                    || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(format!(
                        "attributeMapping key {k:?}: custom attribute names are 1-100 characters of [a-z0-9_]."
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "attributeMapping key {k:?} is not allowed: use google.subject, google.groups or attribute.NAME."
                ));
            }
        }
        if expr.chars().count() > MAX_MAPPING_EXPRESSION_CHARS {
            return Err(format!("attributeMapping[{k:?}] is longer than {MAX_MAPPING_EXPRESSION_CHARS} characters."));
        }
        check_syntax(expr).map_err(|e| format!("attributeMapping[{k:?}]: {e}"))?;
    }
    if custom > MAX_CUSTOM_ATTRIBUTES {
        return Err(format!(
            "attributeMapping has {custom} custom attributes; at most {MAX_CUSTOM_ATTRIBUTES} are allowed."
        ));
    }
    if total > MAX_MAPPINGS_TOTAL_BYTES {
        return Err(format!("attributeMapping is {total} bytes; all mappings together may use at most 8 KB."));
    }
    Ok(())
}

/// Checks an attribute condition: parses, and is within the length limit.
pub fn check_condition(expr: &str) -> Result<(), String> {
    let n = expr.chars().count();
    if n > MAX_CONDITION_CHARS {
        return Err(format!("attributeCondition is {n} characters; the limit is {MAX_CONDITION_CHARS}."));
    }
    check_syntax(expr).map_err(|e| format!("attributeCondition: {e}"))
}

/// What an attribute mapping yields for one token: `google.NAME` and `attribute.NAME` values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MappedAttributes {
    pub google: BTreeMap<String, String>,
    pub attribute: BTreeMap<String, String>,
}

/// Applies an attribute mapping to a token's claims.
pub fn map_attributes(mapping: &BTreeMap<String, String>, assertion: &Value) -> Result<MappedAttributes, String> {
    let b = Bindings { assertion: assertion.clone(), ..Default::default() };
    let (mut google, mut attribute) = (BTreeMap::new(), BTreeMap::new());
    for (k, expr) in mapping {
        let v = evaluate_mapping(expr, &b).map_err(|e| format!("attribute mapping {k}: {e}"))?;
        let Some(v) = v else { continue };
        match k.split_once('.') {
            Some(("google", name)) => google.insert(name.to_string(), v),
            Some(("attribute", name)) => attribute.insert(name.to_string(), v),
            _ => None,
        };
    }
    Ok(MappedAttributes { google, attribute })
}

/// Splits a condition at its top-level `&&` (outside strings, brackets and parentheses).
pub fn split_conjuncts(expr: &str) -> Vec<String> {
    let (mut parts, mut cur) = (Vec::new(), String::new());
    let (mut depth, mut quote, mut escaped) = (0i32, None::<char>, false);
    let mut chars = expr.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            cur.push(ch);
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '\'' | '"' => quote = Some(ch),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            '&' if depth == 0 && chars.peek() == Some(&'&') => {
                chars.next();
                parts.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    parts.push(cur.trim().to_string());
    parts.retain(|p| !p.is_empty());
    parts
}

/// For a condition that refused a token: the first top-level conjunct that is false or fails to
/// evaluate, so a refusal can say which rule was broken.
pub fn explain_refusal(expr: &str, b: &Bindings) -> Option<String> {
    split_conjuncts(expr).into_iter().find(|c| evaluate_condition(c, b) != Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assertion() -> Value {
        json!({"swname": "CONFIDENTIAL_SPACE", "dbgstat": "disabled-since-boot", "sub": "vm-1",
               "submods": {"confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
                           "container": {"image_digest": "sha256:aa"}}})
    }

    #[test]
    fn conditions_evaluate_over_the_assertion() {
        let b = Bindings { assertion: assertion(), ..Default::default() };
        let ok = "assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes && assertion.submods.container.image_digest in ['sha256:aa']";
        assert_eq!(evaluate_condition(ok, &b), Ok(true));
        assert_eq!(evaluate_condition(&ok.replace("sha256:aa", "sha256:bb"), &b), Ok(false));
        assert!(matches!(evaluate_condition("assertion.sub", &b), Err(CelError::Type(..))));
        assert!(matches!(evaluate_condition("assertion.nope == 'x'", &b), Err(CelError::Evaluation(_))));
        assert_eq!(evaluate_condition("has(assertion.nope) && assertion.nope == 'x'", &b), Ok(false));
    }

    #[test]
    fn mappings_produce_google_and_custom_attributes() {
        let m: BTreeMap<String, String> = [
            ("google.subject".to_string(), "assertion.sub".to_string()),
            ("attribute.image_digest".to_string(), "assertion.submods.container.image_digest".to_string()),
            ("attribute.absent".to_string(), "assertion.nope".to_string()),
        ]
        .into();
        check_mapping(&m).unwrap();
        let m = map_attributes(&m, &assertion()).unwrap();
        assert_eq!(m.google["subject"], "vm-1");
        assert_eq!(m.attribute["image_digest"], "sha256:aa");
        assert!(!m.attribute.contains_key("absent"));
        // A claim of another type is not turned into a string.
        for claim in [json!(3), json!(true), Value::Null, json!(["x"])] {
            let mut a = assertion();
            a["sub"] = claim.clone();
            let m: BTreeMap<String, String> = [("google.subject".to_string(), "assertion.sub".to_string())].into();
            assert!(map_attributes(&m, &a).unwrap_err().contains("not a string"), "{claim}");
        }
    }

    #[test]
    fn bad_mappings_and_conditions_are_refused() {
        let m: BTreeMap<String, String> = [("attribute.x".to_string(), "assertion.sub".to_string())].into();
        assert!(check_mapping(&m).unwrap_err().contains("google.subject"));
        let m: BTreeMap<String, String> = [
            ("google.subject".to_string(), "assertion.sub".to_string()),
            ("attribute.Bad".to_string(), "assertion.sub".to_string()),
        ]
        .into();
        assert!(check_mapping(&m).is_err());
        assert!(check_condition("assertion.swname == ").is_err());
        assert!(check_condition(&format!("'{}' == ''", "x".repeat(5000))).unwrap_err().contains("4096"));
        assert!(check_condition("true").is_ok());
    }
}
