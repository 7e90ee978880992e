//! Applies the validators attributes declare ([`crate::schema::Validator`]) to a configuration:
//! every known value checked, every failure reported at its attribute, unknown values left for
//! plan time (when a resource validates again with what is known by then).

use crate::diag::{AttributePath, Diagnostic, Diagnostics};
use crate::schema::{Attribute, Block, Nesting, Validator};
use crate::value::Value;

/// The failures of `config` against the validators declared in `block` and its nested blocks.
pub fn declared(block: &Block, config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    walk(block, config, &AttributePath(Vec::new()), &mut d);
    d
}

fn walk(block: &Block, v: &Value, at: &AttributePath, d: &mut Diagnostics) {
    if !matches!(v, Value::Object(_)) {
        return; // null or unknown: nothing to check yet
    }
    for a in block.attributes.iter().filter(|a| !a.validators.is_empty()) {
        let path = at.clone().attr(&a.name);
        match v.get(&a.name) {
            Value::List(items) | Value::Set(items) => items.iter().for_each(|item| check(a, item, &path, d)),
            value => check(a, value, &path, d),
        }
    }
    for nb in &block.blocks {
        let path = at.clone().attr(&nb.name);
        match (nb.nesting, v.get(&nb.name)) {
            (Nesting::Single, value) => walk(&nb.block, value, &path, d),
            (Nesting::List, Value::List(items)) => {
                items.iter().enumerate().for_each(|(i, item)| walk(&nb.block, item, &path.clone().index(i), d))
            }
            // A set's elements have no index Terraform can point at: report at the block.
            (Nesting::Set, Value::Set(items)) => items.iter().for_each(|item| walk(&nb.block, item, &path, d)),
            _ => {}
        }
    }
}

fn check(a: &Attribute, v: &Value, path: &AttributePath, d: &mut Diagnostics) {
    for validator in &a.validators {
        let failure = match (validator, v) {
            (Validator::OneOf(values), Value::String(s)) if !values.contains(&s.as_str()) => {
                let allowed: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
                Some((format!("{s:?} is not allowed"), format!("Allowed values: {}.", allowed.join(", "))))
            }
            (Validator::Text { check, detail }, Value::String(s)) => check(s).err().map(|e| (e, detail.to_string())),
            (Validator::WholeNumber { min, max }, Value::Number(n)) => {
                let whole = n.as_i64().filter(|i| (*min..=*max).contains(i));
                whole.is_none().then(|| (format!("{n} is not a whole number from {min} to {max}"), String::new()))
            }
            (Validator::Number(check), Value::Number(n)) => {
                n.as_f64().map_or(Err(format!("{n} is out of range")), check).err().map(|e| (e, String::new()))
            }
            _ => None,
        };
        if let Some((summary, detail)) = failure {
            d.push(Diagnostic::attribute_error(path.clone(), summary, detail));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::NestedBlock;
    use crate::value::{Number, Type};

    fn no_spaces(s: &str) -> Result<(), String> {
        if s.contains(' ') { Err(format!("{s:?} has a space")) } else { Ok(()) }
    }

    fn block() -> Block {
        Block::new("")
            .attr(Attribute::optional("kind", Type::String, "").one_of(&["SEV", "TDX"]))
            .attr(Attribute::optional("tags", Type::set(Type::String), "").check_detailed(no_spaces, "Use dashes."))
            .attr(Attribute::optional("rows", Type::Number, "").whole_number(1, 10))
            .attr(
                Attribute::optional("eps", Type::Number, "")
                    .check_number(|e| if e > 0.0 { Ok(()) } else { Err("not positive".into()) }),
            )
            .block(NestedBlock::list(
                "input",
                Block::new("").attr(Attribute::optional("name", Type::String, "").check(no_spaces)),
            ))
            .block(NestedBlock::single(
                "output",
                Block::new("").attr(Attribute::optional("n", Type::Number, "").whole_number(0, 5)),
            ))
    }

    fn config(pairs: &[(&str, Value)]) -> Value {
        let mut v = Value::null_object(&block().implied_type());
        if let Value::Object(m) = &mut v {
            for (k, x) in pairs {
                m.insert(k.to_string(), x.clone());
            }
        }
        v
    }

    fn paths(d: &Diagnostics) -> Vec<String> {
        d.iter().map(|d| d.attribute.as_ref().map(ToString::to_string).unwrap_or_default()).collect()
    }

    #[test]
    fn each_declared_check_reports_at_its_attribute() {
        let bad = config(&[
            ("kind", Value::string("SNP")),
            ("tags", Value::Set(vec![Value::string("ok"), Value::string("not ok")])),
            ("rows", Value::float(2.5)),
            ("eps", Value::float(-1.0)),
            (
                "input",
                Value::List(vec![
                    Value::object([("name", Value::string("a"))]),
                    Value::object([("name", Value::string("b c"))]),
                ]),
            ),
            ("output", Value::object([("n", Value::int(6))])),
        ]);
        let d = declared(&block(), &bad);
        assert_eq!(paths(&d), vec!["kind", "tags", "rows", "eps", "input[1].name", "output.n"]);
        assert_eq!(d.0[0].summary, "Invalid kind: \"SNP\" is not allowed");
        assert_eq!(d.0[0].detail, "Allowed values: \"SEV\", \"TDX\".");
        assert_eq!(d.0[1].detail, "Use dashes.");
        assert!(d.0[2].summary.contains("2.5 is not a whole number from 1 to 10"), "{}", d.0[2].summary);
    }

    #[test]
    fn good_null_and_unknown_values_pass() {
        let good = config(&[
            ("kind", Value::string("TDX")),
            ("tags", Value::Set(vec![Value::string("a"), Value::Unknown])),
            ("rows", Value::Number(Number::Int(10))),
            ("input", Value::Unknown),
        ]);
        assert!(declared(&block(), &good).0.is_empty());
        assert!(declared(&block(), &config(&[])).0.is_empty());
        assert!(declared(&block(), &Value::Unknown).0.is_empty());
    }

    #[test]
    fn the_docs_state_allowed_values_and_ranges() {
        let b = block();
        assert_eq!(b.attributes[0].full_description(), "One of `SEV`, `TDX`.");
        assert_eq!(b.attributes[2].full_description(), "A whole number from 1 to 10.");
        assert_eq!(b.attributes[1].full_description(), "");
        let hardware = Attribute::optional("hw", Type::set(Type::String), "Accepted hardware.").one_of(&["SEV"]);
        assert_eq!(hardware.full_description(), "Accepted hardware. Each element is one of `SEV`.");
    }
}
