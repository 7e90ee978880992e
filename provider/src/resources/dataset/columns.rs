//! The `schema` block of a `dcr_dataset`, read into the [`DatasetSchema`] the checks and
//! stand-ins work on. Every problem is reported at its attribute (`schema.column[i].min`).

use dcr_dataset::schema::{COLUMN_TYPES, Column, ColumnKind, DatasetSchema};
use tfplugin6::model::{FromValue, Model};
use tfplugin6::{AttributePath, Diagnostic, Diagnostics, Value};

fn path(i: usize, attr: &str) -> AttributePath {
    AttributePath::root("schema").attr("column").index(i).attr(attr)
}

/// A bound as the user wrote it (exact for integers), else as the f64 it was read as.
fn number_text(v: &Value, f: f64) -> String {
    v.as_number().map(|n| n.to_string()).unwrap_or_else(|| f.to_string())
}

/// The `schema` block as configured (read once it is wholly known).
#[derive(Clone, Debug, Model)]
struct SchemaBlock {
    column: Option<Vec<ColumnBlock>>,
}

/// One `column` block. The bounds stay values: an integer column's bounds are read as exact
/// integers, a float column's as floats.
#[derive(Clone, Debug, Model)]
struct ColumnBlock {
    name: Option<String>,
    r#type: Option<String>,
    min: Value,
    max: Value,
    values: Option<Vec<String>>,
    max_length: Value,
    nullable: Option<bool>,
}

/// Parses and checks the `schema` block. `Ok(None)` when some value is not known yet (it
/// depends on another resource); every problem found is reported, each at its attribute.
pub fn dataset_schema(block: &Value) -> Result<Option<DatasetSchema>, Diagnostics> {
    let mut d = Diagnostics::new();
    if block.is_null() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("schema"),
            "a schema block is required",
            "Declare every column of the source with a type and a domain, e.g.\n  schema {\n    column {\n      \
             name = \"age\"\n      type = \"integer\"\n      min  = 0\n      max  = 120\n    }\n  }",
        ));
        return Err(d);
    }
    if !block.is_wholly_known() {
        return Ok(None);
    }
    // Terraform sends the types the schema declares; anything else is named where it is.
    let block = SchemaBlock::from_value(block).map_err(|e| {
        let mut at = AttributePath::root("schema");
        at.0.extend(e.path.0);
        Diagnostics::from(Diagnostic::attribute_error(at, e.message, ""))
    })?;
    let cols = block.column.unwrap_or_default();
    if cols.is_empty() {
        d.push(Diagnostic::attribute_error(
            AttributePath::root("schema").attr("column"),
            "at least one column is required",
            "Add a column block for every column of the source, in order.",
        ));
    }
    let mut columns = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, c) in cols.iter().enumerate() {
        let name = c.name.clone().unwrap_or_default();
        // A leading U+FEFF is refused: a byte-order mark is stripped from the header when read.
        if name.is_empty() || name.len() > 128 || name.contains(['\n', '\r', ',', '"']) || name.starts_with('\u{feff}')
        {
            d.push(Diagnostic::attribute_error(
                path(i, "name"),
                format!("{name:?} is not a usable column name"),
                "Column names are 1 to 128 bytes with no comma, quote or line break, not starting with a byte-order \
                 mark (U+FEFF).",
            ));
        }
        if let Some(j) = names.iter().position(|p| *p == name) {
            d.push(Diagnostic::attribute_error(
                path(i, "name"),
                format!("duplicate column name {name:?}"),
                format!("Column {i} has the same name as column {j}; every column needs its own name."),
            ));
        }
        names.push(name.clone());
        let ty = c.r#type.as_deref().unwrap_or_default();
        let (min, max, max_length) = (&c.min, &c.max, &c.max_length);
        let values: Vec<String> = c.values.clone().unwrap_or_default();
        let mut misplaced = |attr: &str, v: bool| {
            if v {
                d.push(Diagnostic::attribute_error(
                    path(i, attr),
                    format!("`{attr}` does not apply to a {ty} column"),
                    "min/max apply to integer and float columns, values to category columns, max_length to \
                     string columns.",
                ));
            }
        };
        let kind = match ty {
            "integer" | "float" => {
                misplaced("values", c.values.is_some());
                misplaced("max_length", !max_length.is_null());
                // Bounds must be exact in the type the launcher checks cells with: an integer
                // bound outside i64 would be silently clamped (and then differ from the
                // configuration on every plan), a float bound must be finite with a finite range.
                let bound = |v: &Value, attr: &str, d: &mut Diagnostics| -> Option<f64> {
                    if v.is_null() {
                        return None; // reported below
                    }
                    let Some(n) = v.as_number() else {
                        d.push(Diagnostic::attribute_error(
                            path(i, attr),
                            format!("{attr} of {ty} column {name:?} is not a number"),
                            "Integer and float columns declare their domain with numbers min and max.",
                        ));
                        return None;
                    };
                    let rule = if ty == "integer" {
                        "Integer bounds are whole numbers from -9223372036854775808 to 9223372036854775807."
                    } else {
                        "Float bounds are finite numbers, at most about 1.79e308 in magnitude, and max - min \
                         must be finite too."
                    };
                    let ok = if ty == "integer" {
                        n.as_i64().map(|i| i as f64)
                    } else {
                        n.as_f64().filter(|f| f.is_finite())
                    };
                    if ok.is_none() {
                        d.push(Diagnostic::attribute_error(
                            path(i, attr),
                            if ty == "integer" {
                                format!("{attr} of integer column {name:?} is {n}, not a whole number within 64 bits")
                            } else {
                                format!("{attr} of float column {name:?} is {n}, not a finite number")
                            },
                            rule,
                        ));
                    }
                    ok
                };
                for (v, attr) in [(min, "min"), (max, "max")] {
                    if v.is_null() {
                        d.push(Diagnostic::attribute_error(
                            path(i, attr),
                            format!("{ty} column {name:?} needs `{attr}`"),
                            "Integer and float columns declare their domain with min and max.",
                        ));
                    }
                }
                let lo = bound(min, "min", &mut d);
                let hi = bound(max, "max", &mut d);
                // Integers compare as integers: 2^53 + 1 and 2^53 are equal as f64.
                let empty = match (lo, hi, min.as_i64(), max.as_i64()) {
                    (Some(_), Some(_), Some(a), Some(b)) if ty == "integer" => a > b,
                    (Some(lo), Some(hi), _, _) => lo > hi,
                    _ => false,
                };
                match (lo, hi) {
                    (Some(lo), Some(hi)) if empty => {
                        d.push(Diagnostic::attribute_error(
                            path(i, "min"),
                            format!(
                                "min ({}) is greater than max ({}) for column {name:?}",
                                number_text(min, lo),
                                number_text(max, hi)
                            ),
                            "The domain [min, max] must not be empty.",
                        ));
                        None
                    }
                    (Some(lo), Some(hi)) if ty == "float" && !(hi - lo).is_finite() => {
                        d.push(Diagnostic::attribute_error(
                            path(i, "max"),
                            format!("the range max - min of float column {name:?} is not finite"),
                            "Float bounds are finite numbers and max - min must be finite too; narrow the domain.",
                        ));
                        None
                    }
                    (Some(_), Some(_)) if ty == "integer" => Some(ColumnKind::Integer {
                        min: min.as_i64().unwrap_or_default(),
                        max: max.as_i64().unwrap_or_default(),
                    }),
                    (Some(lo), Some(hi)) => Some(ColumnKind::Float { min: lo, max: hi }),
                    _ => None,
                }
            }
            "category" => {
                misplaced("min", !min.is_null());
                misplaced("max", !max.is_null());
                misplaced("max_length", !max_length.is_null());
                let mut seen = std::collections::BTreeSet::new();
                if values.is_empty() {
                    d.push(Diagnostic::attribute_error(
                        path(i, "values"),
                        format!("category column {name:?} needs a non-empty `values` list"),
                        "List every value the column may take.",
                    ));
                } else if values.iter().any(String::is_empty) {
                    d.push(Diagnostic::attribute_error(
                        path(i, "values"),
                        format!("category column {name:?} lists an empty value"),
                        "An empty cell is read as a missing value (null), never as a category: set nullable = true \
                         to allow empty cells instead.",
                    ));
                } else if let Some(dup) = values.iter().find(|v| !seen.insert(v.as_str())) {
                    d.push(Diagnostic::attribute_error(
                        path(i, "values"),
                        format!("duplicate category value {dup:?} in column {name:?}"),
                        "",
                    ));
                }
                Some(ColumnKind::Category { values })
            }
            "string" => {
                misplaced("min", !min.is_null());
                misplaced("max", !max.is_null());
                misplaced("values", c.values.is_some());
                match max_length.as_i64() {
                    Some(n) if (1..=1_000_000).contains(&n) => Some(ColumnKind::String { max_length: n as usize }),
                    _ => {
                        d.push(Diagnostic::attribute_error(
                            path(i, "max_length"),
                            format!("string column {name:?} needs `max_length` between 1 and 1000000"),
                            "",
                        ));
                        None
                    }
                }
            }
            other => {
                d.push(Diagnostic::attribute_error(
                    path(i, "type"),
                    format!("unknown column type {other:?}"),
                    format!("Allowed types: {}.", COLUMN_TYPES.join(", ")),
                ));
                None
            }
        };
        if let Some(kind) = kind {
            columns.push(Column { name, kind, nullable: c.nullable.unwrap_or(false) });
        }
    }
    if d.has_errors() { Err(d) } else { Ok(Some(DatasetSchema { columns })) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn column(name: &str, ty: &str, extra: &[(&str, Value)]) -> Value {
        let mut m = std::collections::BTreeMap::from([
            ("name".to_string(), Value::string(name)),
            ("type".to_string(), Value::string(ty)),
            ("min".to_string(), Value::Null),
            ("max".to_string(), Value::Null),
            ("values".to_string(), Value::Null),
            ("max_length".to_string(), Value::Null),
            ("nullable".to_string(), Value::Null),
        ]);
        for (k, v) in extra {
            m.insert(k.to_string(), v.clone());
        }
        Value::Object(m)
    }

    pub fn schema_block(cols: Vec<Value>) -> Value {
        Value::object([("column", Value::List(cols))])
    }

    pub fn sample_block() -> Value {
        schema_block(vec![
            column("age", "integer", &[("min", Value::int(0)), ("max", Value::int(120))]),
            column("sex", "category", &[("values", Value::List(vec![Value::string("F"), Value::string("M")]))]),
            column("bmi", "float", &[("min", Value::int(10)), ("max", Value::float(60.5))]),
            column("note", "string", &[("max_length", Value::int(5)), ("nullable", Value::Bool(true))]),
        ])
    }

    #[test]
    fn the_sample_block_reads_into_its_columns() {
        let s = dataset_schema(&sample_block()).unwrap().unwrap();
        assert_eq!(s.names(), vec!["age", "sex", "bmi", "note"]);
        assert_eq!(s.columns[0].kind, ColumnKind::Integer { min: 0, max: 120 });
        assert_eq!(s.columns[2].kind, ColumnKind::Float { min: 10.0, max: 60.5 });
        assert!(s.columns[3].nullable && !s.columns[0].nullable);
    }

    #[test]
    fn reports_every_bad_column_at_its_attribute() {
        let err = dataset_schema(&schema_block(vec![
            column("a", "integer", &[("min", Value::int(5)), ("max", Value::int(1))]),
            column("b", "datetime", &[]),
            column("a", "category", &[("values", Value::List(vec![]))]),
            column("c", "string", &[]),
        ]))
        .unwrap_err();
        let text: Vec<String> = err.iter().map(|d| d.summary.clone()).collect();
        assert!(text.iter().any(|s| s.contains("schema.column[0].min") && s.contains("greater than max")), "{text:?}");
        assert!(
            text.iter().any(|s| s.contains("schema.column[1].type") && s.contains("unknown column type")),
            "{text:?}"
        );
        assert!(text.iter().any(|s| s.contains("schema.column[2].name") && s.contains("duplicate")), "{text:?}");
        assert!(text.iter().any(|s| s.contains("schema.column[2].values")), "{text:?}");
        assert!(text.iter().any(|s| s.contains("schema.column[3].max_length")), "{text:?}");
    }

    #[test]
    fn bounds_must_be_exact_in_the_checking_type() {
        use tfplugin6::value::Number;
        let big = |s: &str| Value::Number(Number::Big(s.into()));
        let summaries = |cols: Vec<Value>| -> Vec<String> {
            match dataset_schema(&schema_block(cols)) {
                Ok(_) => vec![],
                Err(d) => d.iter().map(|d| d.summary.clone()).collect(),
            }
        };
        // Below -2^63: refused, never clamped.
        let e =
            summaries(vec![column("a", "integer", &[("min", big("-9223372036854775809")), ("max", Value::int(1))])]);
        assert!(e[0].contains("schema.column[0].min") && e[0].contains("not a whole number within 64 bits"), "{e:?}");
        assert!(
            summaries(vec![column("a", "integer", &[("min", Value::int(i64::MIN)), ("max", Value::int(i64::MAX))])])
                .is_empty()
        );
        let e = summaries(vec![column("a", "integer", &[("min", Value::float(0.5)), ("max", Value::int(1))])]);
        assert!(e[0].contains("schema.column[0].min"), "{e:?}");
        // Floats: finite bounds with a finite range.
        let e = summaries(vec![column("f", "float", &[("min", Value::float(-1e300)), ("max", big("1e400"))])]);
        assert!(e[0].contains("schema.column[0].max") && e[0].contains("not a finite number"), "{e:?}");
        let e =
            summaries(vec![column("f", "float", &[("min", Value::float(-1.7e308)), ("max", Value::float(1.7e308))])]);
        assert!(e[0].contains("max - min") && e[0].contains("not finite"), "{e:?}");
        assert!(
            summaries(vec![column("f", "float", &[("min", Value::float(-1e300)), ("max", Value::float(1e300))])])
                .is_empty()
        );
        let e = summaries(vec![column("f", "float", &[("max", Value::int(1))])]);
        assert!(e[0].contains("needs `min`"), "{e:?}");
    }

    #[test]
    fn unknown_values_defer_the_check() {
        let b = schema_block(vec![column("a", "integer", &[("min", Value::Unknown), ("max", Value::int(1))])]);
        assert_eq!(dataset_schema(&b).unwrap(), None);
    }
}
