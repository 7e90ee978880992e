//! How a declared column becomes a coded attribute and back. Every code comes from the declared
//! schema (bounds, value lists, nullability), never from the data: numeric columns are cut into
//! up to [`FINE_BINS`] equal ranges of the declared [min, max] (MST may merge them further),
//! categories are their declared values, and an empty cell of a nullable column has its own code.
//! Free-text columns (declared only by `max_length`) are not modelled: their stand-in cells are
//! drawn as the `random` stand-in draws them.

use dcr_dataset::schema::{ColumnKind, DatasetSchema};
use rand::Rng;

/// The finest ranges a numeric column is counted in; MST merges them to what the data supports.
pub const FINE_BINS: usize = 64;

#[derive(Clone, Debug, PartialEq)]
enum Values {
    /// Integer ranges, inclusive, in order.
    Integer(Vec<(i64, i64)>),
    /// `bins` equal ranges of [min, max].
    Float {
        min: f64,
        max: f64,
        bins: usize,
    },
    Category(Vec<String>),
    Text {
        max_length: usize,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnCoding {
    values: Values,
    nullable: bool,
}

/// A cell that does not fit its declared column: the source should have been checked first.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("row {row}, column {column:?}: the cell does not fit the declared schema")]
pub struct CellError {
    pub row: u64,
    pub column: String,
}

impl ColumnCoding {
    fn of(kind: &ColumnKind, nullable: bool) -> ColumnCoding {
        let values = match kind {
            ColumnKind::Integer { min, max } => {
                let width = i128::from(*max) - i128::from(*min) + 1;
                let bins = width.min(FINE_BINS as i128);
                let start = |b: i128| (i128::from(*min) + b * width / bins) as i64;
                Values::Integer((0..bins).map(|b| (start(b), start(b + 1) - 1)).collect())
            }
            ColumnKind::Float { min, max } => {
                Values::Float { min: *min, max: *max, bins: if min == max { 1 } else { FINE_BINS } }
            }
            ColumnKind::Category { values } => Values::Category(values.clone()),
            ColumnKind::String { max_length } => Values::Text { max_length: *max_length },
        };
        ColumnCoding { values, nullable }
    }

    /// The number of codes, or `None` for a column that is not modelled.
    pub fn size(&self) -> Option<usize> {
        let n = match &self.values {
            Values::Integer(ranges) => ranges.len(),
            Values::Float { bins, .. } => *bins,
            Values::Category(values) => values.len(),
            Values::Text { .. } => return None,
        };
        Some(n + usize::from(self.nullable))
    }

    /// Whether codes are ordered ranges that may be merged (numeric columns).
    pub fn ordered(&self) -> bool {
        matches!(self.values, Values::Integer(_) | Values::Float { .. })
    }

    fn null_code(&self) -> Option<u32> {
        self.nullable.then(|| self.size().map(|n| n as u32 - 1)).flatten()
    }

    fn encode(&self, cell: &str) -> Option<u32> {
        if cell.is_empty() {
            return self.null_code();
        }
        match &self.values {
            Values::Integer(ranges) => {
                let v: i64 = cell.trim().parse().ok()?;
                let i = ranges.partition_point(|&(_, hi)| hi < v);
                (i < ranges.len() && ranges[i].0 <= v).then_some(i as u32)
            }
            Values::Float { min, max, bins } => {
                let v: f64 = cell.trim().parse().ok()?;
                if !(v >= *min && v <= *max) {
                    return None;
                }
                let b = if max > min { ((v - min) / (max - min) * *bins as f64) as usize } else { 0 };
                Some(b.min(bins - 1) as u32)
            }
            Values::Category(values) => values.iter().position(|v| v == cell).map(|i| i as u32),
            Values::Text { .. } => None,
        }
    }

    /// A cell for `code`: uniform within its range for numbers, the value for categories, empty
    /// for the null code; `None` (not modelled) draws free text.
    fn decode(&self, code: Option<u32>, rng: &mut impl Rng) -> String {
        if code.is_some() && code == self.null_code() {
            return String::new();
        }
        let code = code.unwrap_or(0) as usize;
        match &self.values {
            Values::Integer(ranges) => {
                let (lo, hi) = ranges[code];
                rng.random_range(lo..=hi).to_string()
            }
            Values::Float { min, max, bins } => {
                let width = (max - min) / *bins as f64;
                let lo = min + width * code as f64;
                // Shortest text that reads back as the value, inside the declared bounds.
                let v = if width > 0.0 { rng.random_range(lo..lo + width) } else { *min };
                v.clamp(*min, *max).to_string()
            }
            Values::Category(values) => values[code].clone(),
            Values::Text { max_length } => {
                let len = rng.random_range(1..=(*max_length).clamp(1, 16));
                (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
            }
        }
    }
}

/// The coding of a whole table: one per column, and which columns MST models.
#[derive(Clone, Debug, PartialEq)]
pub struct TableCoding {
    pub names: Vec<String>,
    columns: Vec<ColumnCoding>,
    modelled: Vec<usize>,
}

impl TableCoding {
    pub fn new(schema: &DatasetSchema) -> TableCoding {
        let columns: Vec<ColumnCoding> = schema.columns.iter().map(|c| ColumnCoding::of(&c.kind, c.nullable)).collect();
        let modelled = (0..columns.len()).filter(|&i| columns[i].size().is_some()).collect();
        TableCoding { names: schema.names().into_iter().map(str::to_string).collect(), columns, modelled }
    }

    /// The sizes of the modelled attributes, in order.
    pub fn sizes(&self) -> Vec<usize> {
        self.modelled.iter().filter_map(|&i| self.columns[i].size()).collect()
    }

    /// Which modelled attributes are ordered ranges.
    pub fn ordered(&self) -> Vec<bool> {
        self.modelled.iter().map(|&i| self.columns[i].ordered()).collect()
    }

    /// The codes of one source row's modelled cells, into `out`.
    pub fn encode(&self, row_number: u64, cells: &csv::StringRecord, out: &mut [u32]) -> Result<(), CellError> {
        for (slot, &i) in out.iter_mut().zip(&self.modelled) {
            *slot = cells
                .get(i)
                .and_then(|c| self.columns[i].encode(c))
                .ok_or_else(|| CellError { row: row_number, column: self.names[i].clone() })?;
        }
        Ok(())
    }

    /// The cells of a stand-in row from the modelled attributes' codes.
    pub fn decode(&self, codes: &[u32], rng: &mut impl Rng) -> Vec<String> {
        let mut next = codes.iter();
        self.columns
            .iter()
            .map(|c| {
                let code = if c.size().is_some() { next.next().copied() } else { None };
                c.decode(code, rng)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use dcr_dataset::schema::Column;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn schema() -> DatasetSchema {
        let col = Column::new;
        DatasetSchema {
            columns: vec![
                col("age", ColumnKind::Integer { min: 0, max: 120 }, false),
                col("sex", ColumnKind::Category { values: vec!["F".into(), "M".into()] }, true),
                col("bmi", ColumnKind::Float { min: 10.0, max: 60.5 }, false),
                col("note", ColumnKind::String { max_length: 5 }, true),
                col("small", ColumnKind::Integer { min: -2, max: 3 }, false),
            ],
        }
    }

    #[test]
    fn codes_come_from_the_declared_domains() {
        let t = TableCoding::new(&schema());
        assert_eq!(t.sizes(), vec![64, 3, 64, 6]);
        assert_eq!(t.ordered(), vec![true, false, true, true]);
        let mut out = [0u32; 4];
        t.encode(1, &csv::StringRecord::from(vec!["120", "", "60.5", "anything", "-2"]), &mut out).unwrap();
        assert_eq!(out, [63, 2, 63, 0]);
        t.encode(2, &csv::StringRecord::from(vec!["0", "M", "10", "", "3"]), &mut out).unwrap();
        assert_eq!(out, [0, 1, 0, 5]);
        let e = t.encode(3, &csv::StringRecord::from(vec!["121", "F", "20", "", "0"]), &mut out).unwrap_err();
        assert_eq!(e, CellError { row: 3, column: "age".into() });
        assert!(!e.to_string().contains("121"), "the cell is not repeated: {e}");
    }

    #[test]
    fn decoded_cells_pass_the_schema_check_and_fall_in_their_code() {
        let s = schema();
        let t = TableCoding::new(&s);
        let mut rng = StdRng::seed_from_u64(1);
        for codes in [[0u32, 0, 0, 0], [63, 2, 63, 5], [31, 1, 17, 2]] {
            let cells = t.decode(&codes, &mut rng);
            for (i, cell) in cells.iter().enumerate() {
                assert!(s.check_cell(i, cell).is_ok(), "{cell:?} in column {i}");
            }
            let mut back = [0u32; 4];
            t.encode(0, &csv::StringRecord::from(cells.clone()), &mut back).unwrap();
            assert_eq!(back, codes, "{cells:?}");
        }
    }
}
