//! Streaming checks of a CSV file against a dataset schema, hashing the exact bytes as they pass.
//! Memory stays bounded by one record, whatever the file size.

use std::io::{self, Read};

use aws_lc_rs::digest::{Context, SHA256};

use super::columns::DatasetSchema;

/// Called once when a [`HashingReader`] reaches the end of its input, with the hex SHA-256 and the
/// byte count; an error it returns fails that read, so a consumer (an upload) stops before it
/// finishes.
pub type OnEof = Box<dyn FnOnce(&str, u64) -> io::Result<()> + Send>;

/// Wraps a reader and hashes (SHA-256) every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    ctx: Context,
    bytes: u64,
    on_eof: Option<OnEof>,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader { inner, ctx: Context::new(&SHA256), bytes: 0, on_eof: None }
    }
    pub fn on_eof(inner: R, f: OnEof) -> Self {
        HashingReader { inner, ctx: Context::new(&SHA256), bytes: 0, on_eof: Some(f) }
    }
    /// Hex SHA-256 of everything read so far, and its length.
    pub fn finish(self) -> (String, u64) {
        (hex::encode(self.ctx.finish().as_ref()), self.bytes)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.ctx.update(&buf[..n]);
        self.bytes += n as u64;
        if n == 0
            && !buf.is_empty()
            && let Some(f) = self.on_eof.take()
        {
            f(&hex::encode(self.ctx.clone().finish().as_ref()), self.bytes)?;
        }
        Ok(n)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CsvSummary {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Why a file does not fit its schema. Messages name the row and column but never quote a cell.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CsvError {
    #[error("the header row is {found:?}, but the schema declares the columns {expected:?} (same names, same order)")]
    Header { found: Vec<String>, expected: Vec<String> },
    #[error("row {row} (line {line}) has {found} fields; the schema declares {expected} columns")]
    FieldCount { row: u64, line: u64, found: usize, expected: usize },
    #[error("row {row} (line {line}), column {column:?}: the value {reason}")]
    Cell { row: u64, line: u64, column: String, reason: String },
    #[error("the file has a header but no data rows")]
    Empty,
    #[error("line {line}: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("could not read the file: {0}")]
    Io(String),
}

/// Reads the whole CSV, checking the header and every cell, and returns its row count and SHA-256.
pub fn check_csv<R: Read>(reader: R, schema: &DatasetSchema) -> Result<CsvSummary, CsvError> {
    let mut hashing = HashingReader::new(reader);
    let rows = {
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(&mut hashing);
        let headers = rdr.headers().map_err(to_error)?.clone();
        let expected: Vec<String> = schema.names().iter().map(|s| s.to_string()).collect();
        let found: Vec<String> = headers.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
        if found != expected {
            return Err(CsvError::Header { found, expected });
        }
        let mut record = csv::StringRecord::new();
        let mut rows = 0u64;
        while rdr.read_record(&mut record).map_err(to_error)? {
            rows += 1;
            let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
            if record.len() != expected.len() {
                return Err(CsvError::FieldCount { row: rows, line, found: record.len(), expected: expected.len() });
            }
            for (i, cell) in record.iter().enumerate() {
                schema.check_cell(i, cell).map_err(|reason| CsvError::Cell {
                    row: rows,
                    line,
                    column: expected[i].clone(),
                    reason,
                })?;
            }
        }
        rows
    };
    if rows == 0 {
        return Err(CsvError::Empty);
    }
    // The CSV reader stops at the last record; hash anything after it (trailing newlines).
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| CsvError::Io(e.to_string()))?;
    let (sha256, bytes) = hashing.finish();
    Ok(CsvSummary { rows, bytes, sha256 })
}

fn to_error(e: csv::Error) -> CsvError {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => CsvError::Io(io.to_string()),
        csv::ErrorKind::Utf8 { .. } => CsvError::Malformed { line, reason: "is not valid UTF-8".into() },
        other => CsvError::Malformed { line, reason: format!("{other:?}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::columns::tests::sample_schema;

    #[test]
    fn a_conforming_file_passes_and_is_hashed() {
        let data = b"age,sex,bmi,note\n42,F,22.5,ok\n7,M,15,\n";
        let s = check_csv(&data[..], &sample_schema()).unwrap();
        assert_eq!(s.rows, 2);
        assert_eq!(s.bytes, data.len() as u64);
        assert_eq!(s.sha256, hex::encode(aws_lc_rs::digest::digest(&SHA256, data).as_ref()));
    }

    #[test]
    fn a_bad_cell_names_row_and_column_but_not_the_value() {
        let data = b"age,sex,bmi,note\n42,F,22.5,ok\n130,M,15,\n";
        let e = check_csv(&data[..], &sample_schema()).unwrap_err();
        assert_eq!(
            e,
            CsvError::Cell { row: 2, line: 3, column: "age".into(), reason: "is above the maximum 120".into() }
        );
        assert!(!e.to_string().contains("130"));
    }

    #[test]
    fn header_and_shape_errors() {
        let e = check_csv(&b"age,sex\n1,F\n"[..], &sample_schema()).unwrap_err();
        assert!(matches!(e, CsvError::Header { .. }));
        let e = check_csv(&b"age,sex,bmi,note\n1,F,20\n"[..], &sample_schema()).unwrap_err();
        assert!(matches!(e, CsvError::FieldCount { row: 1, found: 3, .. }));
        assert_eq!(check_csv(&b"age,sex,bmi,note\n"[..], &sample_schema()).unwrap_err(), CsvError::Empty);
    }
}
