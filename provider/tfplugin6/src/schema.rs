//! Schemas for providers, resources and data sources, with a small builder API, the object type a
//! block implies (what its values decode against) and the conversion to the wire form.

use std::collections::BTreeMap;

use crate::proto;
use crate::value::Type;

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
        description: a.description.clone(),
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
