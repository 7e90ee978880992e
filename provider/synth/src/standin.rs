//! A DP-synthetic stand-in of a source CSV: read the source once, counting its coded cells; fit
//! MST with the budget given; write as many synthetic rows as asked (or as the noisy count
//! estimates) in the declared schema. Memory depends on the schema, not on the rows.

use std::io::{Read, Write};

use dcr_dataset::DatasetSchema;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::accounting::{cdp_eps, cdp_rho};
use crate::coding::{CellError, TableCoding};
use crate::counts::Counts;
use crate::mst::{Options, fit_mst};

/// The mechanism and its version, as the privacy ledger records them.
pub const MECHANISM: &str = "mst/1";

/// What the owner asks of a stand-in.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub epsilon: f64,
    pub delta: f64,
    /// Ranges per numeric column; `None` chooses from the noisy row count and ε.
    pub bins: Option<usize>,
    /// Rows to write; `None` writes as many as the noisy count estimates.
    pub rows: Option<u64>,
    /// The most rows of the source that belong to one person (the privacy unit).
    pub max_rows_per_unit: u32,
    /// The column (index) naming each row's person; without it, each row is its own unit.
    pub unit_column: Option<usize>,
}

/// What a generation spent and wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct Release {
    /// zCDP spent (at most what (ε, δ) allow).
    pub rho: f64,
    /// The ε that `rho` gives at the δ asked.
    pub epsilon: f64,
    pub delta: f64,
    pub rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot read the source: {0}")]
    Read(#[from] csv::Error),
    #[error(transparent)]
    Cell(#[from] CellError),
    #[error("cannot write the stand-in: {0}")]
    Write(#[from] std::io::Error),
    #[error("{0}")]
    Settings(String),
    #[error(
        "row {row}: its unit (the value of column {column:?}) has more than {max} rows; raise max_rows_per_unit \
         (the noise grows with it) or keep at most {max} rows per unit"
    )]
    Unit { row: u64, column: String, max: u32 },
}

/// The most rows a stand-in may have.
pub const MAX_ROWS: u64 = 10_000_000;

impl Settings {
    pub fn check(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Settings(m));
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return bad(format!("epsilon must be a positive number, not {}", self.epsilon));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return bad(format!("delta must be between 0 and 1 (exclusive), not {}", self.delta));
        }
        if self.bins.is_some_and(|b| !(2..=crate::coding::FINE_BINS).contains(&b)) {
            return bad(format!("bins must be between 2 and {}", crate::coding::FINE_BINS));
        }
        if self.rows.is_some_and(|r| r == 0 || r > MAX_ROWS) {
            return bad(format!("rows must be between 1 and {MAX_ROWS}"));
        }
        if self.max_rows_per_unit == 0 {
            return bad("max_rows_per_unit must be at least 1".into());
        }
        if self.max_rows_per_unit > 1 && self.unit_column.is_none() {
            return bad("max_rows_per_unit above 1 needs the column that names each row's unit".into());
        }
        Ok(())
    }
}

pub fn dp_synthetic_csv(
    schema: &DatasetSchema,
    source: impl Read,
    settings: &Settings,
    out: impl Write,
) -> Result<Release, SynthError> {
    settings.check()?;
    let coding = TableCoding::new(schema);
    // With no modelled column, one constant attribute makes the 1-way the noisy row count.
    let sizes = coding.sizes();
    let constant = sizes.is_empty();
    let mut counts = Counts::new(if constant { vec![1] } else { sizes.clone() });
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(source);
    let mut record = csv::StringRecord::new();
    let mut codes = vec![0u32; sizes.len().max(1)];
    let mut row = 0u64;
    // Rows per unit, keyed by a keyed hash of the unit's value (never the value itself): a
    // collision can only merge two units, which refuses more, never less.
    let hasher = std::collections::hash_map::RandomState::new();
    let mut per_unit = std::collections::HashMap::<u64, u32>::new();
    while reader.read_record(&mut record)? {
        row += 1;
        if let Some(column) = settings.unit_column {
            let unit = std::hash::BuildHasher::hash_one(&hasher, record.get(column).unwrap_or(""));
            let n = per_unit.entry(unit).or_default();
            *n += 1;
            if *n > settings.max_rows_per_unit {
                let column = coding.names.get(column).cloned().unwrap_or_default();
                return Err(SynthError::Unit { row, column, max: settings.max_rows_per_unit });
            }
        }
        if !constant {
            coding.encode(row, &record, &mut codes)?;
        }
        counts.add(&codes);
    }
    let rho = cdp_rho(settings.epsilon, settings.delta);
    let mut rng = StdRng::from_os_rng();
    let options = Options {
        rho,
        contribution: settings.max_rows_per_unit,
        iterations: 1000,
        ordered: Some(if constant { vec![false] } else { coding.ordered() }),
        bins: settings.bins,
    };
    let model = fit_mst(&counts, &options, &mut rng);
    let rows = settings.rows.unwrap_or((model.total.round() as u64).clamp(1, MAX_ROWS));
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(&coding.names)?;
    let mut result = Ok(());
    let mut cells_rng = StdRng::from_os_rng();
    model.sample(rows, &mut rng, |codes| {
        if result.is_ok() {
            let codes = if constant { &[][..] } else { codes };
            result = writer.write_record(coding.decode(codes, &mut cells_rng));
        }
    });
    result?;
    writer.flush()?;
    Ok(Release { rho: model.rho_spent, epsilon: cdp_eps(model.rho_spent, settings.delta), delta: settings.delta, rows })
}

#[cfg(test)]
mod tests {
    use dcr_dataset::check_csv;
    use dcr_dataset::schema::{Column, ColumnKind};

    use super::*;

    fn schema() -> DatasetSchema {
        let col = Column::new;
        DatasetSchema {
            columns: vec![
                col("age", ColumnKind::Integer { min: 18, max: 90 }, false),
                col("smoker", ColumnKind::Category { values: vec!["yes".into(), "no".into()] }, false),
                col("bmi", ColumnKind::Float { min: 15.0, max: 45.0 }, true),
                col("note", ColumnKind::String { max_length: 8 }, true),
            ],
        }
    }

    fn source(rows: usize) -> Vec<u8> {
        let mut s = String::from("age,smoker,bmi,note\n");
        for i in 0..rows {
            let age = 18 + (i * 7) % 73;
            let smoker = if age > 50 { "yes" } else { "no" };
            let bmi = if i % 10 == 0 { String::new() } else { format!("{}", 15.0 + (i % 300) as f64 / 10.0) };
            s.push_str(&format!("{age},{smoker},{bmi},secret{i}\n"));
        }
        s.into_bytes()
    }

    fn settings() -> Settings {
        Settings { epsilon: 1.0, delta: 1e-9, bins: None, rows: None, max_rows_per_unit: 1, unit_column: None }
    }

    #[test]
    fn the_stand_in_conforms_to_the_schema_and_spends_what_was_asked() {
        let mut out = Vec::new();
        let release = dp_synthetic_csv(&schema(), &source(5_000)[..], &settings(), &mut out).unwrap();
        let summary = check_csv(&out[..], &schema()).unwrap();
        assert_eq!(summary.rows, release.rows);
        assert!((release.rows as i64 - 5_000).abs() < 100, "rows {}", release.rows);
        assert!(release.rho <= cdp_rho(1.0, 1e-9) && release.epsilon <= 1.0 + 1e-6, "{release:?}");
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("secret"), "free text is drawn, never copied");
    }

    #[test]
    fn rows_can_be_declared_and_settings_are_checked() {
        let mut out = Vec::new();
        let s = Settings { rows: Some(123), bins: Some(4), ..settings() };
        let release = dp_synthetic_csv(&schema(), &source(500)[..], &s, &mut out).unwrap();
        assert_eq!(release.rows, 123);
        assert_eq!(check_csv(&out[..], &schema()).unwrap().rows, 123);
        for bad in [
            Settings { epsilon: 0.0, ..settings() },
            Settings { delta: 1.0, ..settings() },
            Settings { bins: Some(1), ..settings() },
            Settings { rows: Some(0), ..settings() },
            Settings { max_rows_per_unit: 0, ..settings() },
            Settings { max_rows_per_unit: 2, ..settings() },
        ] {
            assert!(matches!(
                dp_synthetic_csv(&schema(), &source(10)[..], &bad, Vec::new()),
                Err(SynthError::Settings(_))
            ));
        }
    }

    #[test]
    fn a_unit_with_too_many_rows_is_refused_without_naming_it() {
        let src = b"age,smoker,bmi,note\n20,yes,20,ann\n30,no,21,bob\n40,no,22,ann\n".to_vec();
        let one = Settings { unit_column: Some(3), ..settings() };
        let e = dp_synthetic_csv(&schema(), &src[..], &one, Vec::new()).unwrap_err();
        assert!(matches!(e, SynthError::Unit { row: 3, max: 1, .. }), "{e}");
        assert!(!e.to_string().contains("ann"), "{e}");
        let two = Settings { unit_column: Some(3), max_rows_per_unit: 2, ..settings() };
        assert!(dp_synthetic_csv(&schema(), &src[..], &two, Vec::new()).is_ok());
    }

    #[test]
    fn a_cell_outside_the_schema_is_refused_without_quoting_it() {
        let src = b"age,smoker,bmi,note\n200,yes,20,x\n".to_vec();
        let e = dp_synthetic_csv(&schema(), &src[..], &settings(), Vec::new()).unwrap_err();
        assert!(e.to_string().contains("row 1, column \"age\"") && !e.to_string().contains("200"), "{e}");
    }
}
