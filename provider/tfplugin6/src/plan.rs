//! The declared half of planning: what a schema's attributes say about themselves (a default,
//! "changing it replaces the resource", "keep the prior value while unknown"), applied to a
//! planned state the same way for every resource. A resource's own plan code does the rest (names
//! derived from other values, results of the last apply) between these steps:
//!
//! 1. [`fill_defaults`] on a copy of the configuration;
//! 2. the resource sets the values it derives;
//! 3. [`replacements`] says which changes replace the resource;
//! 4. the resource marks what apply will set as unknown, and [`keep_prior_for_unknown`] keeps
//!    the declared ones as they are, unless the resource is created or replaced.
//!
//! terraform-plugin-framework declares the same three things per attribute: a `Default`, and the
//! `RequiresReplace` and `UseStateForUnknown` plan modifiers.

use crate::diag::AttributePath;
use crate::schema::{AttributeDefault, Block, Nesting};
use crate::value::Value;

/// Sets every attribute the configuration leaves null to its declared [`AttributeDefault::Value`], in
/// `planned` and in the nested blocks it holds.
pub fn fill_defaults(block: &Block, planned: &mut Value) {
    if !matches!(planned, Value::Object(_)) {
        return;
    }
    for a in &block.attributes {
        if let Some(AttributeDefault::Value(v)) = &a.default
            && planned.get(&a.name).is_null()
        {
            planned.set(&a.name, v.clone());
        }
    }
    for nb in &block.blocks {
        let mut nested = planned.get(&nb.name).clone();
        match (&mut nested, nb.nesting) {
            (Value::Object(_), Nesting::Single) => fill_defaults(&nb.block, &mut nested),
            (Value::List(items) | Value::Set(items), Nesting::List | Nesting::Set) => {
                items.iter_mut().for_each(|item| fill_defaults(&nb.block, item));
            }
            _ => continue,
        }
        planned.set(&nb.name, nested);
    }
}

/// The attributes declared `requires_replace` whose planned value differs from the prior
/// state's (an unknown planned value differs). None on create. Inside a set of blocks, whose
/// elements have no stable position, a change to such an attribute names the whole set.
pub fn replacements(block: &Block, prior: &Value, planned: &Value) -> Vec<AttributePath> {
    let mut out = Vec::new();
    if !prior.is_null() {
        changed(block, prior, planned, &mut |path| out.push(path), &|name| AttributePath::root(name));
    }
    out
}

fn changed(
    block: &Block,
    prior: &Value,
    planned: &Value,
    push: &mut dyn FnMut(AttributePath),
    at: &dyn Fn(&str) -> AttributePath,
) {
    for a in block.attributes.iter().filter(|a| a.requires_replace) {
        if prior.get(&a.name) != planned.get(&a.name) {
            push(at(&a.name));
        }
    }
    for nb in block.blocks.iter().filter(|nb| declares_replacement(&nb.block)) {
        let (before, after) = (prior.get(&nb.name), planned.get(&nb.name));
        match nb.nesting {
            Nesting::Single => {
                changed(&nb.block, before, after, push, &|name| at(&nb.name).attr(name));
            }
            Nesting::List => {
                let (b, a) = (before.elements(), after.elements());
                for i in 0..b.len().max(a.len()) {
                    let (pb, pa) = (b.get(i).unwrap_or(&Value::Null), a.get(i).unwrap_or(&Value::Null));
                    changed(&nb.block, pb, pa, push, &|name| at(&nb.name).index(i).attr(name));
                }
            }
            Nesting::Set => {
                // The same elements in any order, compared by the values that replace.
                let names = replaced_values(&nb.block);
                let keys = |v: &Value| -> Vec<Vec<Value>> {
                    v.elements().iter().map(|e| names.iter().map(|n| e.get(n).clone()).collect()).collect()
                };
                let mut unmatched = keys(after);
                let same = keys(before).iter().all(|k| match unmatched.iter().position(|u| u == k) {
                    Some(i) => {
                        unmatched.swap_remove(i);
                        true
                    }
                    None => false,
                }) && unmatched.is_empty();
                if !same {
                    push(at(&nb.name));
                }
            }
        }
    }
}

/// Whether a block (or one nested in it) declares an attribute that replaces the resource.
fn declares_replacement(block: &Block) -> bool {
    block.attributes.iter().any(|a| a.requires_replace) || block.blocks.iter().any(|nb| declares_replacement(&nb.block))
}

/// The names of a block's own attributes that replace the resource.
fn replaced_values(block: &Block) -> Vec<&str> {
    block.attributes.iter().filter(|a| a.requires_replace).map(|a| a.name.as_str()).collect()
}

/// Keeps the prior value of each top-level attribute declared `use_state_for_unknown` that
/// `planned` leaves unknown, unless the resource is being created or `replaced`.
pub fn keep_prior_for_unknown(block: &Block, prior: &Value, planned: &mut Value, replaced: bool) {
    if prior.is_null() || replaced {
        return;
    }
    for a in block.attributes.iter().filter(|a| a.use_state_for_unknown) {
        let before = prior.get(&a.name);
        if planned.get(&a.name).is_unknown() && !before.is_null() {
            planned.set(&a.name, before.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Attribute, NestedBlock};
    use crate::value::Type;

    fn block() -> Block {
        let column = Block::new("c")
            .attr(Attribute::required("name", Type::String, "n").requires_replace())
            .attr(Attribute::optional_computed("kind", Type::String, "k").default(Value::string("text")));
        Block::new("r")
            .attr(Attribute::required("name", Type::String, "n").requires_replace())
            .attr(Attribute::optional_computed("location", Type::String, "l").default(Value::string("US")))
            .attr(Attribute::optional("note", Type::String, "n"))
            .attr(Attribute::computed("key", Type::String, "k").use_state_for_unknown())
            .attr(Attribute::computed("version", Type::String, "v"))
            .block(NestedBlock::list("column", column.clone()))
            .block(NestedBlock::set("tag", column))
    }

    fn column(name: &str, kind: Value) -> Value {
        Value::object([("name", Value::string(name)), ("kind", kind)])
    }

    fn config() -> Value {
        Value::object([
            ("name", Value::string("a")),
            ("location", Value::Null),
            ("note", Value::Null),
            ("key", Value::Null),
            ("version", Value::Null),
            ("column", Value::List(vec![column("x", Value::Null), column("y", Value::string("num"))])),
            ("tag", Value::Set(vec![column("t", Value::Null)])),
        ])
    }

    #[test]
    fn defaults_fill_only_what_is_left_out_nested_blocks_included() {
        let mut planned = config();
        fill_defaults(&block(), &mut planned);
        assert_eq!(planned.get("location"), &Value::string("US"));
        assert_eq!(planned.get("note"), &Value::Null, "no default declared");
        let cols = planned.get("column").elements();
        assert_eq!(cols[0].get("kind"), &Value::string("text"));
        assert_eq!(cols[1].get("kind"), &Value::string("num"), "a configured value stays");
        assert_eq!(planned.get("tag").elements()[0].get("kind"), &Value::string("text"));

        let mut set = config();
        set.set("location", Value::string("EU"));
        fill_defaults(&block(), &mut set);
        assert_eq!(set.get("location"), &Value::string("EU"));
    }

    #[test]
    fn declared_changes_replace_and_others_do_not() {
        let mut prior = config();
        fill_defaults(&block(), &mut prior);
        assert!(replacements(&block(), &Value::Null, &prior).is_empty(), "a create replaces nothing");
        assert!(replacements(&block(), &prior, &prior).is_empty());

        let mut p = prior.clone();
        p.set("note", Value::string("n"));
        p.set("location", Value::string("EU"));
        assert!(replacements(&block(), &prior, &p).is_empty(), "not declared");

        p.set("name", Value::Unknown);
        let mut cols = p.get("column").elements().to_vec();
        cols[1].set("name", Value::string("z"));
        cols.push(column("w", Value::string("text")));
        p.set("column", Value::List(cols));
        p.set("tag", Value::Set(vec![column("u", Value::string("text"))]));
        let paths: Vec<String> = replacements(&block(), &prior, &p).iter().map(|a| a.to_string()).collect();
        assert_eq!(paths, ["name", "column[1].name", "column[2].name", "tag"]);
    }

    #[test]
    fn a_reordered_set_is_no_change() {
        let two = |a: &str, b: &str| Value::Set(vec![column(a, Value::Null), column(b, Value::Null)]);
        let mut prior = config();
        prior.set("tag", two("a", "b"));
        let mut planned = prior.clone();
        planned.set("tag", two("b", "a"));
        assert!(replacements(&block(), &prior, &planned).is_empty());
    }

    #[test]
    fn unknown_values_keep_their_prior_state_unless_replaced() {
        let mut prior = config();
        prior.set("key", Value::string("k1"));
        prior.set("version", Value::string("v1"));
        let mut planned = config();
        planned.set("key", Value::Unknown);
        planned.set("version", Value::Unknown);

        let mut kept = planned.clone();
        keep_prior_for_unknown(&block(), &prior, &mut kept, false);
        assert_eq!(kept.get("key"), &Value::string("k1"));
        assert_eq!(kept.get("version"), &Value::Unknown, "not declared");

        let mut replaced = planned.clone();
        keep_prior_for_unknown(&block(), &prior, &mut replaced, true);
        assert_eq!(replaced.get("key"), &Value::Unknown);

        let mut created = planned;
        keep_prior_for_unknown(&block(), &Value::Null, &mut created, false);
        assert_eq!(created.get("key"), &Value::Unknown);
    }
}
