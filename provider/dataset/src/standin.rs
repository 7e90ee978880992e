//! Stage-1 stand-ins: what analysts may see before their notebook runs on the real data.

use std::io::Write;

use rand::Rng;

use crate::schema::{ColumnKind, DatasetSchema};

/// The most rows a random stand-in may have (it is generated in memory).
pub const MAX_RANDOM_ROWS: i64 = 1_000_000;

/// Writes `rows` rows drawn uniformly from the schema's declared domains. It reads nothing but the
/// schema, so it carries no information about the real data.
pub fn random_csv<W: Write>(schema: &DatasetSchema, rows: u64, rng: &mut impl Rng, out: W) -> std::io::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(schema.names())?;
    let mut record: Vec<String> = Vec::with_capacity(schema.columns.len());
    for _ in 0..rows {
        record.clear();
        for c in &schema.columns {
            record.push(match &c.kind {
                ColumnKind::Integer { min, max } => rng.random_range(*min..=*max).to_string(),
                ColumnKind::Float { min, max } => {
                    // Shortest text that reads back as exactly `v`: rounding to a fixed number of
                    // decimals could leave the domain (min = max = 1e-7 would print 0.000000).
                    let v = if min == max { *min } else { rng.random_range(*min..=*max) };
                    v.to_string()
                }
                ColumnKind::Category { values } => values[rng.random_range(0..values.len())].clone(),
                ColumnKind::String { max_length } => {
                    let len = rng.random_range(1..=(*max_length).min(16));
                    (0..len).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect()
                }
            });
        }
        w.write_record(&record)?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csvcheck::check_csv;
    use crate::schema::tests::sample_schema;

    #[test]
    fn random_rows_conform_to_the_schema() {
        let schema = sample_schema();
        let mut buf = Vec::new();
        random_csv(&schema, 500, &mut rand::rng(), &mut buf).unwrap();
        let summary = check_csv(&buf[..], &schema).unwrap();
        assert_eq!(summary.rows, 500);
    }
}
