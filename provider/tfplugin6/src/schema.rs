//! Schemas for providers, resources and data sources, with a small builder API, the object type a
//! block implies (what its values decode against) and the conversion to the wire form.
//!
//! Attributes also declare how they plan — a default, "changing it replaces the resource", "keep
//! the prior value while unknown" — once, where they are described: [`crate::plan`] applies the
//! declarations, and [`Attribute::full_description`] states them in the docs and to Terraform.

use std::collections::BTreeMap;

use crate::proto;
use crate::value::{Type, Value};

/// A versioned schema: the top-level block of a provider, resource or data source.
#[derive(Clone, Debug, Default)]
pub struct Schema {
    pub version: i64,
    pub block: Block,
}

#[derive(Clone, Debug, Default)]
pub struct Block {
    pub description: String,
    pub attributes: Vec<Attribute>,
    pub blocks: Vec<NestedBlock>,
    pub deprecated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presence {
    Required,
    Optional,
    Computed,
    OptionalComputed,
}

#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub ty: Type,
    pub description: String,
    pub presence: Presence,
    pub sensitive: bool,
    pub deprecated: bool,
    pub default: Option<AttributeDefault>,
    /// A change of this value (prior state against plan) replaces the resource.
    pub requires_replace: bool,
    /// A computed value that stays as it is in the prior state when the plan would leave it
    /// unknown, unless the resource is replaced.
    pub use_state_for_unknown: bool,
    /// Checks of a known value (of each element, for a list or set), applied by
    /// [`crate::validate::declared`].
    pub validators: Vec<Validator>,
}

/// A declared check of an attribute's value, each failure reported at the attribute.
#[derive(Clone, Copy, Debug)]
pub enum Validator {
    /// A string that must be one of these; the docs list them.
    OneOf(&'static [&'static str]),
    /// A string `check` accepts; its error is the summary, `detail` says what to write instead.
    Text { check: fn(&str) -> Result<(), String>, detail: &'static str },
    /// A whole number in `[min, max]`; the docs state the range.
    WholeNumber { min: i64, max: i64 },
    /// A number `check` accepts (its error is the summary).
    Number(fn(f64) -> Result<(), String>),
}

/// What an optional attribute is when the configuration leaves it out.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeDefault {
    /// This value: the planner fills it in (the attribute must be optional and computed).
    Value(Value),
    /// A value the resource decides at plan time (from the provider's settings, say), described
    /// here for the docs: "`PROJECT-NAME`".
    Described(String),
    /// What an absent (null) value means to the resource; the plan keeps it null.
    Meaning(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
}

#[derive(Clone, Debug)]
pub struct NestedBlock {
    pub name: String,
    pub block: Block,
    pub nesting: Nesting,
    pub min_items: i64,
    pub max_items: i64,
}

impl Attribute {
    fn new(name: &str, ty: Type, presence: Presence, description: &str) -> Attribute {
        Attribute {
            name: name.to_string(),
            ty,
            description: description.to_string(),
            presence,
            sensitive: false,
            deprecated: false,
            default: None,
            requires_replace: false,
            use_state_for_unknown: false,
            validators: Vec::new(),
        }
    }
    pub fn required(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute::new(name, ty, Presence::Required, description)
    }
    pub fn optional(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute::new(name, ty, Presence::Optional, description)
    }
    pub fn computed(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute::new(name, ty, Presence::Computed, description)
    }
    pub fn optional_computed(name: &str, ty: Type, description: &str) -> Attribute {
        Attribute::new(name, ty, Presence::OptionalComputed, description)
    }
    pub fn sensitive(mut self) -> Attribute {
        self.sensitive = true;
        self
    }
    /// The value planned when the configuration leaves this (optional, computed) attribute out.
    pub fn default(mut self, v: Value) -> Attribute {
        self.default = Some(AttributeDefault::Value(v));
        self
    }
    /// A default the resource decides when it plans, described for the docs.
    pub fn default_described(mut self, text: &str) -> Attribute {
        self.default = Some(AttributeDefault::Described(text.to_string()));
        self
    }
    /// What leaving this optional attribute out means (its value stays null), for the docs.
    pub fn null_means(mut self, text: &str) -> Attribute {
        self.default = Some(AttributeDefault::Meaning(text.to_string()));
        self
    }
    pub fn requires_replace(mut self) -> Attribute {
        self.requires_replace = true;
        self
    }
    /// The value (each element of a list or set) must be one of `values`.
    pub fn one_of(mut self, values: &'static [&'static str]) -> Attribute {
        self.validators.push(Validator::OneOf(values));
        self
    }
    /// The value (each element of a list or set) must pass `check`.
    pub fn check(self, check: fn(&str) -> Result<(), String>) -> Attribute {
        self.check_detailed(check, "")
    }
    /// As [`Attribute::check`], with what to write instead when it fails.
    pub fn check_detailed(mut self, check: fn(&str) -> Result<(), String>, detail: &'static str) -> Attribute {
        self.validators.push(Validator::Text { check, detail });
        self
    }
    /// The number must pass `check`.
    pub fn check_number(mut self, check: fn(f64) -> Result<(), String>) -> Attribute {
        self.validators.push(Validator::Number(check));
        self
    }
    /// The number must be whole and within `[min, max]`.
    pub fn whole_number(mut self, min: i64, max: i64) -> Attribute {
        self.validators.push(Validator::WholeNumber { min, max });
        self
    }
    pub fn use_state_for_unknown(mut self) -> Attribute {
        self.use_state_for_unknown = true;
        self
    }

    /// The description with the sentences its declarations imply: "Defaults to …", "Changing
    /// it replaces the resource."
    pub fn full_description(&self) -> String {
        let mut d = self.description.trim_end().to_string();
        let mut sentence = |s: String| {
            if !d.is_empty() {
                d.push(' ');
            }
            d.push_str(&s);
        };
        match &self.default {
            Some(AttributeDefault::Value(v)) => sentence(format!("Defaults to {}.", render_value(v))),
            Some(AttributeDefault::Described(t) | AttributeDefault::Meaning(t)) => {
                sentence(format!("Defaults to {t}."))
            }
            None => {}
        }
        let each = matches!(self.ty, Type::List(_) | Type::Set(_));
        for v in &self.validators {
            match v {
                Validator::OneOf(values) => {
                    let values: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                    let lead = if each { "Each element is one of" } else { "One of" };
                    sentence(format!("{lead} {}.", values.join(", ")));
                }
                Validator::WholeNumber { min, max } => {
                    let lead = if each { "Each element is a whole number" } else { "A whole number" };
                    sentence(format!("{lead} from {min} to {max}."));
                }
                Validator::Text { .. } | Validator::Number(_) => {}
            }
        }
        if self.requires_replace {
            sentence("Changing it replaces the resource.".into());
        }
        d
    }

    pub fn is_computed(&self) -> bool {
        matches!(self.presence, Presence::Computed | Presence::OptionalComputed)
    }
    pub fn is_settable(&self) -> bool {
        !matches!(self.presence, Presence::Computed)
    }
}

impl Block {
    pub fn new(description: &str) -> Block {
        Block { description: description.to_string(), ..Block::default() }
    }
    pub fn attr(mut self, a: Attribute) -> Block {
        self.attributes.push(a);
        self
    }
    pub fn block(mut self, b: NestedBlock) -> Block {
        self.blocks.push(b);
        self
    }
    /// Declares that changing any of the named attributes replaces the resource (for a block
    /// built by shared code, such as attributes a resource and a data source both have).
    pub fn requiring_replace(mut self, names: &[&str]) -> Block {
        for a in self.attributes.iter_mut().filter(|a| names.contains(&a.name.as_str())) {
            a.requires_replace = true;
        }
        debug_assert!(names.iter().all(|n| self.attribute(n).is_some()), "unknown attribute in {names:?}");
        self
    }

    /// The object type of this block's values: attributes by type, single nested blocks as
    /// objects, list and set blocks as lists and sets of objects.
    pub fn implied_type(&self) -> Type {
        let mut attrs: BTreeMap<String, Type> =
            self.attributes.iter().map(|a| (a.name.clone(), a.ty.clone())).collect();
        for b in &self.blocks {
            let inner = b.block.implied_type();
            attrs.insert(
                b.name.clone(),
                match b.nesting {
                    Nesting::Single => inner,
                    Nesting::List => Type::list(inner),
                    Nesting::Set => Type::set(inner),
                },
            );
        }
        Type::Object(attrs)
    }

    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }
    pub fn nested(&self, name: &str) -> Option<&NestedBlock> {
        self.blocks.iter().find(|b| b.name == name)
    }
}

/// A value as the docs quote it: `US`, `true`, `1000`; a collection as its items, `a`, `b` and `c`.
fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::List(items) | Value::Set(items) if !items.is_empty() => {
            let items: Vec<String> = items.iter().map(render_value).collect();
            match items.as_slice() {
                [rest @ .., last] if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
                _ => items.concat(),
            }
        }
        Value::List(_) | Value::Set(_) => "none".into(),
        Value::Map(m) if m.is_empty() => "`{}`".into(),
        other => format!("`{}`", crate::value::to_json(other)),
    }
}

impl NestedBlock {
    pub fn single(name: &str, block: Block) -> NestedBlock {
        NestedBlock { name: name.to_string(), block, nesting: Nesting::Single, min_items: 0, max_items: 0 }
    }
    pub fn list(name: &str, block: Block) -> NestedBlock {
        NestedBlock { name: name.to_string(), block, nesting: Nesting::List, min_items: 0, max_items: 0 }
    }
    pub fn set(name: &str, block: Block) -> NestedBlock {
        NestedBlock { name: name.to_string(), block, nesting: Nesting::Set, min_items: 0, max_items: 0 }
    }
    pub fn min_items(mut self, n: i64) -> NestedBlock {
        self.min_items = n;
        self
    }
    pub fn max_items(mut self, n: i64) -> NestedBlock {
        self.max_items = n;
        self
    }
}

impl Schema {
    pub fn new(version: i64, block: Block) -> Schema {
        Schema { version, block }
    }
    pub fn implied_type(&self) -> Type {
        self.block.implied_type()
    }
}

// ---------------------------------------------------------------------------------------------
// wire form

impl From<&Schema> for proto::Schema {
    fn from(s: &Schema) -> proto::Schema {
        proto::Schema { version: s.version, block: Some(block_to_proto(&s.block, s.version)) }
    }
}

fn block_to_proto(b: &Block, version: i64) -> proto::schema::Block {
    proto::schema::Block {
        version,
        attributes: b.attributes.iter().map(attr_to_proto).collect(),
        block_types: b
            .blocks
            .iter()
            .map(|nb| proto::schema::NestedBlock {
                type_name: nb.name.clone(),
                block: Some(block_to_proto(&nb.block, version)),
                nesting: match nb.nesting {
                    Nesting::Single => proto::schema::nested_block::NestingMode::Single,
                    Nesting::List => proto::schema::nested_block::NestingMode::List,
                    Nesting::Set => proto::schema::nested_block::NestingMode::Set,
                } as i32,
                min_items: nb.min_items,
                max_items: nb.max_items,
            })
            .collect(),
        description: b.description.clone(),
        description_kind: proto::StringKind::Markdown as i32,
        deprecated: b.deprecated,
    }
}

fn attr_to_proto(a: &Attribute) -> proto::schema::Attribute {
    proto::schema::Attribute {
        name: a.name.clone(),
        r#type: serde_json::to_vec(&a.ty.to_json()).expect("type JSON"),
        nested_type: None,
        description: a.full_description(),
        required: a.presence == Presence::Required,
        optional: matches!(a.presence, Presence::Optional | Presence::OptionalComputed),
        computed: a.is_computed(),
        sensitive: a.sensitive,
        description_kind: proto::StringKind::Markdown as i32,
        deprecated: a.deprecated,
        write_only: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn implied_type_covers_attributes_and_blocks() {
        let b = Block::new("r")
            .attr(Attribute::required("name", Type::String, "n"))
            .block(NestedBlock::list("col", Block::new("c").attr(Attribute::required("t", Type::String, "t"))))
            .block(NestedBlock::single("stage", Block::new("s").attr(Attribute::optional("rows", Type::Number, "r"))));
        let Type::Object(attrs) = b.implied_type() else { panic!("object expected") };
        assert_eq!(attrs["name"], Type::String);
        assert!(matches!(attrs["col"], Type::List(_)));
        assert!(matches!(attrs["stage"], Type::Object(_)));
    }

    #[test]
    fn proto_attribute_flags_follow_presence() {
        let a = attr_to_proto(&Attribute::optional_computed("x", Type::String, "d"));
        assert!(a.optional && a.computed && !a.required);
        assert_eq!(a.r#type, b"\"string\"");
    }
}
