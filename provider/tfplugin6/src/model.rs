//! Typed models: a resource reads its configuration, plan or state into a Rust struct
//! (`#[derive(Model)]`) and writes it back, instead of getting and setting attributes by name.
//! A misspelt attribute is then a compile error (or, against the schema, a failing test from
//! [`check_fields`]), not a silent null.
//!
//! A field's type says what the attribute may hold: [`Attr<T>`] for a value that may be null or
//! not yet known (configuration and plan), `Option<T>` for one that may be null but is always
//! known (state, and configuration read after validation), a plain `T` for one that is always
//! set. Lists are `Vec<T>`, sets `BTreeSet<T>`, maps `BTreeMap<String, T>`, nested blocks other
//! models, and [`Value`] keeps an attribute as it is.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{AttributePath, Step};
use crate::schema::Block;
use crate::value::Value;

pub use tfplugin6_derive::Model;

/// A struct read from and written to a cty object, one field per attribute or nested block.
pub trait Model: FromValue + IntoValue {
    /// The attribute and block names of the fields, in declaration order (a flattened field's
    /// own, in its place).
    fn fields() -> Vec<&'static str>;
}

pub trait FromValue: Sized {
    fn from_value(v: &Value) -> Result<Self, ModelError>;
}

pub trait IntoValue {
    fn into_value(self) -> Value;
}

/// A value that did not fit its field: where, and what was expected.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}: {message}", if path.0.is_empty() { "the value".to_string() } else { path.to_string() })]
pub struct ModelError {
    pub path: AttributePath,
    pub message: String,
}

impl ModelError {
    pub fn expected(what: &str, found: &Value) -> ModelError {
        let found = match found {
            Value::Null => "null",
            Value::Unknown => "a value not yet known",
            Value::Bool(_) => "a bool",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) | Value::Tuple(_) => "a list",
            Value::Set(_) => "a set",
            Value::Map(_) => "a map",
            Value::Object(_) => "an object",
            Value::Dynamic(..) => "a dynamic value",
        };
        ModelError { path: AttributePath(Vec::new()), message: format!("expected {what}, found {found}") }
    }

    /// The same error, one level down: inside the attribute `name`.
    pub fn within(mut self, name: &str) -> ModelError {
        self.path.0.insert(0, Step::Attr(name.to_string()));
        self
    }

    fn within_step(mut self, step: Step) -> ModelError {
        self.path.0.insert(0, step);
        self
    }
}

/// An attribute that may be null or not yet known: what configuration and plans hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Attr<T> {
    #[default]
    Null,
    Unknown,
    Known(T),
}

impl<T> Attr<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            Attr::Known(v) => Some(v),
            _ => None,
        }
    }
    pub fn into_known(self) -> Option<T> {
        match self {
            Attr::Known(v) => Some(v),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Attr::Null)
    }
    pub fn is_unknown(&self) -> bool {
        matches!(self, Attr::Unknown)
    }
    pub fn as_ref(&self) -> Attr<&T> {
        match self {
            Attr::Null => Attr::Null,
            Attr::Unknown => Attr::Unknown,
            Attr::Known(v) => Attr::Known(v),
        }
    }
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Attr<U> {
        match self {
            Attr::Null => Attr::Null,
            Attr::Unknown => Attr::Unknown,
            Attr::Known(v) => Attr::Known(f(v)),
        }
    }
    /// A known value, or unknown when there is none yet (`None`).
    pub fn known_or_unknown(v: Option<T>) -> Attr<T> {
        v.map_or(Attr::Unknown, Attr::Known)
    }
}

impl Attr<String> {
    pub fn as_deref(&self) -> Option<&str> {
        self.known().map(String::as_str)
    }
}

impl<T: FromValue> FromValue for Attr<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Null => Ok(Attr::Null),
            Value::Unknown => Ok(Attr::Unknown),
            v => T::from_value(v).map(Attr::Known),
        }
    }
}

impl<T: IntoValue> IntoValue for Attr<T> {
    fn into_value(self) -> Value {
        match self {
            Attr::Null => Value::Null,
            Attr::Unknown => Value::Unknown,
            Attr::Known(v) => v.into_value(),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Null => Ok(None),
            Value::Unknown => Err(ModelError::expected("a known value", v)),
            v => T::from_value(v).map(Some),
        }
    }
}

impl<T: IntoValue> IntoValue for Option<T> {
    fn into_value(self) -> Value {
        self.map_or(Value::Null, IntoValue::into_value)
    }
}

impl FromValue for Value {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        Ok(v.clone())
    }
}

impl IntoValue for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl FromValue for String {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        v.as_str().map(str::to_string).ok_or_else(|| ModelError::expected("a string", v))
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::String(self)
    }
}

impl FromValue for bool {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        v.as_bool().ok_or_else(|| ModelError::expected("a bool", v))
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

impl FromValue for i64 {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        v.as_i64().ok_or_else(|| ModelError::expected("a whole number", v))
    }
}

impl IntoValue for i64 {
    fn into_value(self) -> Value {
        Value::int(self)
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        v.as_f64().ok_or_else(|| ModelError::expected("a number", v))
    }
}

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::float(self)
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::List(items) | Value::Set(items) | Value::Tuple(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| T::from_value(item).map_err(|e| e.within_step(Step::Index(i as i64))))
                .collect(),
            v => Err(ModelError::expected("a list", v)),
        }
    }
}

impl<T: IntoValue> IntoValue for Vec<T> {
    fn into_value(self) -> Value {
        Value::List(self.into_iter().map(IntoValue::into_value).collect())
    }
}

impl<T: FromValue + Ord> FromValue for BTreeSet<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Set(items) | Value::List(items) => items.iter().map(T::from_value).collect(),
            v => Err(ModelError::expected("a set", v)),
        }
    }
}

impl<T: IntoValue> IntoValue for BTreeSet<T> {
    fn into_value(self) -> Value {
        Value::Set(self.into_iter().map(IntoValue::into_value).collect())
    }
}

impl<T: FromValue> FromValue for BTreeMap<String, T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Map(m) => m
                .iter()
                .map(|(k, x)| Ok((k.clone(), T::from_value(x).map_err(|e| e.within_step(Step::Key(k.clone())))?)))
                .collect(),
            v => Err(ModelError::expected("a map", v)),
        }
    }
}

impl<T: IntoValue> IntoValue for BTreeMap<String, T> {
    fn into_value(self) -> Value {
        Value::Map(self.into_iter().map(|(k, v)| (k, v.into_value())).collect())
    }
}

/// A set, its elements in the order they came: unlike a `BTreeSet`, it keeps elements that are
/// not yet known (two unknown elements stay two).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetOf<T>(pub Vec<T>);

impl<T: FromValue> FromValue for SetOf<T> {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        match v {
            Value::Set(_) | Value::List(_) => Vec::from_value(v).map(SetOf),
            v => Err(ModelError::expected("a set", v)),
        }
    }
}

impl<T: IntoValue> IntoValue for SetOf<T> {
    fn into_value(self) -> Value {
        Value::Set(self.0.into_iter().map(IntoValue::into_value).collect())
    }
}

impl FromValue for crate::value::Number {
    fn from_value(v: &Value) -> Result<Self, ModelError> {
        v.as_number().cloned().ok_or_else(|| ModelError::expected("a number", v))
    }
}

impl IntoValue for crate::value::Number {
    fn into_value(self) -> Value {
        Value::Number(self)
    }
}

/// Whether a field's value is known all the way down (no unknown inside).
pub fn wholly_known<T: IntoValue + Clone>(v: &T) -> bool {
    v.clone().into_value().is_wholly_known()
}

/// Reads a model from a value Terraform sent, as a diagnostic when it does not fit (a schema
/// and its model disagree: a bug [`check_fields`] tests for).
pub fn read<M: FromValue>(v: &Value, what: &str) -> Result<M, crate::diag::Diagnostics> {
    M::from_value(v).map_err(|e| {
        crate::diag::Diagnostic::error(
            format!("Cannot read the {what}"),
            format!("{e}. This is a bug in the provider; please report it."),
        )
        .into()
    })
}

/// Checks that a model's fields are exactly a block's attributes and nested blocks (in any
/// order): a field the schema lacks would be dropped on the wire, an attribute the model lacks
/// would always be null.
pub fn check_fields<M: Model>(block: &Block) -> Result<(), String> {
    let schema: BTreeSet<&str> =
        block.attributes.iter().map(|a| a.name.as_str()).chain(block.blocks.iter().map(|b| b.name.as_str())).collect();
    let names = M::fields();
    let model: BTreeSet<&str> = names.iter().copied().collect();
    let missing: Vec<&&str> = schema.difference(&model).collect();
    let extra: Vec<&&str> = model.difference(&schema).collect();
    if missing.is_empty() && extra.is_empty() && model.len() == names.len() {
        Ok(())
    } else {
        Err(format!(
            "{}: fields the schema lacks {extra:?}, attributes the model lacks {missing:?}",
            std::any::type_name::<M>()
        ))
    }
}

/// Checks that a model's fields are exactly an object type's attributes: the model of a list
/// element (an object attribute's value) as [`check_fields`] checks a block's.
pub fn check_object_fields<M: Model>(object: &crate::value::Type) -> Result<(), String> {
    let crate::value::Type::Object(attributes) = object else {
        return Err(format!("{}: {object:?} is not an object type", std::any::type_name::<M>()));
    };
    let mut names = M::fields();
    names.sort_unstable();
    let wanted: Vec<&str> = attributes.keys().map(String::as_str).collect();
    if names == wanted {
        Ok(())
    } else {
        Err(format!(
            "{}: the model's fields are {names:?}, the object's attributes {wanted:?}",
            std::any::type_name::<M>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Attribute, NestedBlock};
    use crate::value::Type;

    #[derive(Clone, Debug, PartialEq, Model)]
    struct Column {
        name: String,
        #[model(rename = "type")]
        kind: Attr<String>,
        max: Option<f64>,
    }

    #[derive(Clone, Debug, PartialEq, Model)]
    struct Table {
        r#type: Attr<String>,
        rows: Attr<i64>,
        readers: Attr<BTreeSet<String>>,
        labels: Option<BTreeMap<String, String>>,
        column: Vec<Column>,
        extra: Value,
    }

    fn value() -> Value {
        Value::object([
            ("type", Value::string("t")),
            ("rows", Value::Unknown),
            ("readers", Value::Set(vec![Value::string("b"), Value::string("a")])),
            ("labels", Value::Null),
            (
                "column",
                Value::List(vec![Value::object([
                    ("name", Value::string("age")),
                    ("type", Value::Null),
                    ("max", Value::int(120)),
                ])]),
            ),
            ("extra", Value::Bool(true)),
        ])
    }

    #[test]
    fn a_model_reads_and_writes_back_the_same_value() {
        let t = Table::from_value(&value()).unwrap();
        assert_eq!(t.r#type, Attr::Known("t".into()));
        assert!(t.rows.is_unknown());
        assert_eq!(t.readers.known().unwrap().iter().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(t.column[0].kind, Attr::Null);
        assert_eq!(t.column[0].max, Some(120.0));
        let back = t.into_value();
        assert_eq!(back.get("type"), &Value::string("t"));
        assert_eq!(back.get("rows"), &Value::Unknown);
        assert_eq!(back.get("readers"), &Value::Set(vec![Value::string("a"), Value::string("b")]));
        assert_eq!(back.get("column").elements()[0].get("name"), &Value::string("age"));
        assert_eq!(back.get("column").elements()[0].get("max").as_f64(), Some(120.0));
        assert_eq!(back.entries().unwrap().len(), Table::fields().len());
    }

    #[test]
    fn a_value_that_does_not_fit_is_named_by_its_path() {
        let mut v = value();
        let mut col = v.get("column").elements()[0].clone();
        col.set("name", Value::Unknown);
        v.set("column", Value::List(vec![col]));
        let e = Table::from_value(&v).unwrap_err();
        assert_eq!(e.path.to_string(), "column[0].name");
        assert_eq!(e.to_string(), "column[0].name: expected a string, found a value not yet known");
        assert!(Table::from_value(&Value::Null).is_err());
    }

    #[derive(Clone, Debug, PartialEq, Model)]
    struct Named {
        id: Attr<String>,
        #[model(flatten)]
        column: Column,
    }

    #[test]
    fn a_flattened_model_shares_its_objects_attributes() {
        let v = Value::object([
            ("id", Value::string("c1")),
            ("name", Value::string("age")),
            ("type", Value::string("integer")),
            ("max", Value::Null),
        ]);
        let n = Named::from_value(&v).unwrap();
        assert_eq!(n.column.name, "age");
        assert_eq!(n.column.kind, Attr::Known("integer".into()));
        assert_eq!(Named::fields(), ["id", "name", "type", "max"]);
        assert_eq!(n.into_value(), v);
    }

    #[test]
    fn fields_are_checked_against_the_schema() {
        let column = Block::new("c")
            .attr(Attribute::required("name", Type::String, ""))
            .attr(Attribute::optional("type", Type::String, ""))
            .attr(Attribute::optional("max", Type::Number, ""));
        assert_eq!(check_fields::<Column>(&column), Ok(()));
        let renamed = Block::new("c")
            .attr(Attribute::required("name", Type::String, ""))
            .attr(Attribute::optional("kind", Type::String, ""))
            .attr(Attribute::optional("max", Type::Number, ""))
            .block(NestedBlock::list("more", Block::new("m")));
        let e = check_fields::<Column>(&renamed).unwrap_err();
        assert!(e.contains(r#"schema lacks ["type"]"#) && e.contains(r#"model lacks ["kind", "more"]"#), "{e}");

        let object = |names: &[&'static str]| Type::object(names.iter().map(|n| (*n, Type::String)));
        assert_eq!(check_object_fields::<Column>(&object(&["type", "name", "max"])), Ok(()));
        for wrong in [object(&["name", "kind", "max"]), object(&["name", "type"]), Type::list(Type::String)] {
            assert!(check_object_fields::<Column>(&wrong).is_err(), "{wrong:?}");
        }
    }
}
