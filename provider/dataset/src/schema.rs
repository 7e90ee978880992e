//! A dataset's declared schema: its columns, each with a type and a domain. The domain is what the
//! data owner declares, never inferred from the data, so stand-ins built from it leak nothing.

use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ColumnKind {
    Integer { min: i64, max: i64 },
    Float { min: f64, max: f64 },
    Category { values: Vec<String> },
    String { max_length: usize },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Column {
    pub name: String,
    #[serde(flatten)]
    pub kind: ColumnKind,
    pub nullable: bool,
}

impl Column {
    pub fn new(name: &str, kind: ColumnKind, nullable: bool) -> Column {
        Column { name: name.to_string(), kind, nullable }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DatasetSchema {
    pub columns: Vec<Column>,
}

pub const COLUMN_TYPES: [&str; 4] = ["integer", "float", "category", "string"];

impl DatasetSchema {
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Checks one cell against its column's domain; the error says what is wrong with the value
    /// without repeating it (cells may be confidential and error messages end up in logs).
    pub fn check_cell(&self, column: usize, cell: &str) -> Result<(), String> {
        let col = &self.columns[column];
        if cell.is_empty() {
            return if col.nullable { Ok(()) } else { Err("is empty, and the column is not nullable".into()) };
        }
        match &col.kind {
            ColumnKind::Integer { min, max } => match cell.trim().parse::<i64>() {
                Ok(v) if v < *min => Err(format!("is below the minimum {min}")),
                Ok(v) if v > *max => Err(format!("is above the maximum {max}")),
                Ok(_) => Ok(()),
                Err(_) => Err("is not an integer".into()),
            },
            ColumnKind::Float { min, max } => match cell.trim().parse::<f64>() {
                Ok(v) if !v.is_finite() => Err("is not a finite number".into()),
                Ok(v) if v < *min => Err(format!("is below the minimum {min}")),
                Ok(v) if v > *max => Err(format!("is above the maximum {max}")),
                Ok(_) => Ok(()),
                Err(_) => Err("is not a number".into()),
            },
            ColumnKind::Category { values } => {
                if values.iter().any(|v| v == cell) {
                    Ok(())
                } else {
                    Err(format!("is not one of the {} declared values", values.len()))
                }
            }
            ColumnKind::String { max_length } => {
                let n = cell.chars().count();
                if n > *max_length {
                    Err(format!("is {n} characters long, over max_length {max_length}"))
                } else {
                    Ok(())
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// age integer [0, 120], sex category F/M, bmi float [10, 60.5], note string (5, nullable).
    pub fn sample_schema() -> DatasetSchema {
        let col = Column::new;
        DatasetSchema {
            columns: vec![
                col("age", ColumnKind::Integer { min: 0, max: 120 }, false),
                col("sex", ColumnKind::Category { values: vec!["F".into(), "M".into()] }, false),
                col("bmi", ColumnKind::Float { min: 10.0, max: 60.5 }, false),
                col("note", ColumnKind::String { max_length: 5 }, true),
            ],
        }
    }

    #[test]
    fn parses_all_column_types() {
        let s = sample_schema();
        assert_eq!(s.names(), vec!["age", "sex", "bmi", "note"]);
        assert_eq!(s.columns[0].kind, ColumnKind::Integer { min: 0, max: 120 });
    }

    #[test]
    fn cells_are_checked_against_their_domain_without_echoing_them() {
        let s = sample_schema();
        assert!(s.check_cell(0, "42").is_ok());
        assert_eq!(s.check_cell(0, "121").unwrap_err(), "is above the maximum 120");
        assert!(s.check_cell(0, "4.5").is_err());
        assert!(s.check_cell(1, "X").unwrap_err().contains("declared values"));
        assert!(s.check_cell(2, "60.5").is_ok());
        assert!(s.check_cell(2, "NaN").is_err());
        assert!(s.check_cell(3, "").is_ok());
        assert!(s.check_cell(0, "").is_err());
        assert!(!s.check_cell(3, "toolong").unwrap_err().contains("toolong"));
    }
}
