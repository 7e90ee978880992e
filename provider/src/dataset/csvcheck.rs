//! Streaming checks of a CSV file against a dataset schema, hashing the exact bytes as they pass.
//! Memory stays bounded by one record, and a record by [`MAX_ROW_BYTES`], whatever the file holds
//! (a file without a single newline, a quote that never closes).

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

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

/// The longest header row accepted, in bytes.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;
/// The longest data row accepted, in bytes (quoted newlines included).
pub const MAX_ROW_BYTES: u64 = 8 << 20;
/// The longest single cell accepted, in bytes.
pub const MAX_CELL_BYTES: usize = 4 << 20;
/// How many column names a header diagnostic quotes.
const HEADER_NAMES_SHOWN: usize = 10;

/// Fails a read once more than `limit` bytes have passed since the start of the current record
/// (which the checking loop moves forward after each record). The CSV reader buffers a record
/// whole, so without this one endless line would take all memory.
struct RecordLimit<R> {
    inner: R,
    read: u64,
    record_start: Rc<Cell<u64>>,
    limit: Rc<Cell<u64>>,
}

impl<R: Read> Read for RecordLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Slack for what the CSV reader has buffered ahead of the record it is parsing.
        const READ_AHEAD: u64 = 64 << 10;
        if self.read > self.record_start.get() + self.limit.get() + READ_AHEAD {
            return Err(io::Error::new(io::ErrorKind::InvalidData, LimitExceeded(self.limit.get())));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a row is longer than {0} bytes")]
struct LimitExceeded(u64);

#[derive(Clone, Debug, PartialEq)]
pub struct CsvSummary {
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// Why a file does not fit its schema. Messages name the row and column but never quote a cell.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CsvError {
    #[error(
        "the header row is {}, but the schema declares the columns {} (same names, same order)",
        quote_names(found),
        quote_names(expected)
    )]
    Header { found: Vec<String>, expected: Vec<String> },
    #[error("the header row is longer than {MAX_HEADER_BYTES} bytes (the limit for a header)")]
    HeaderTooLong,
    #[error(
        "row {row} is longer than {MAX_ROW_BYTES} bytes (the limit for a row; check for a quote that never closes)"
    )]
    RowTooLong { row: u64 },
    #[error(
        "row {row} (line {line}), column {column:?}: the value is longer than {MAX_CELL_BYTES} bytes (the limit for a cell)"
    )]
    CellTooLong { row: u64, line: u64, column: String },
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

/// `["a", "b", …]`, quoting at most [`HEADER_NAMES_SHOWN`] names and counting the rest.
fn quote_names(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(HEADER_NAMES_SHOWN).map(|n| format!("{n:?}")).collect();
    match names.len().saturating_sub(HEADER_NAMES_SHOWN) {
        0 => format!("[{}]", shown.join(", ")),
        more => format!("[{}, … and {more} more] ({} columns)", shown.join(", "), names.len()),
    }
}

/// Reads the whole CSV, checking the header and every cell, and returns its row count and SHA-256.
pub fn check_csv<R: Read>(reader: R, schema: &DatasetSchema) -> Result<CsvSummary, CsvError> {
    let mut hashing = HashingReader::new(reader);
    let rows = {
        let record_start = Rc::new(Cell::new(0));
        let limit = Rc::new(Cell::new(MAX_HEADER_BYTES));
        let limited =
            RecordLimit { inner: &mut hashing, read: 0, record_start: record_start.clone(), limit: limit.clone() };
        let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(limited);
        let headers = match rdr.headers() {
            Ok(h) => h.clone(),
            Err(e) if is_limit(&e) => return Err(CsvError::HeaderTooLong),
            Err(e) => return Err(to_error(e)),
        };
        limit.set(MAX_ROW_BYTES);
        record_start.set(rdr.position().byte());
        let expected: Vec<String> = schema.names().iter().map(|s| s.to_string()).collect();
        let found: Vec<String> = headers.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
        if found != expected {
            return Err(CsvError::Header { found, expected });
        }
        let mut record = csv::StringRecord::new();
        let mut rows = 0u64;
        loop {
            match rdr.read_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) if is_limit(&e) => return Err(CsvError::RowTooLong { row: rows + 1 }),
                Err(e) => return Err(to_error(e)),
            }
            record_start.set(rdr.position().byte());
            rows += 1;
            let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
            if record.len() != expected.len() {
                return Err(CsvError::FieldCount { row: rows, line, found: record.len(), expected: expected.len() });
            }
            for (i, cell) in record.iter().enumerate() {
                if cell.len() > MAX_CELL_BYTES {
                    return Err(CsvError::CellTooLong { row: rows, line, column: expected[i].clone() });
                }
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

fn is_limit(e: &csv::Error) -> bool {
    matches!(e.kind(), csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<LimitExceeded>()))
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

    #[test]
    fn an_endless_line_is_refused_after_the_limit_not_read_to_the_end() {
        // io::repeat never ends: the check must stop by itself, having read little more than the limit.
        let mut counted = HashingReader::new(io::repeat(b'a'));
        assert_eq!(check_csv(&mut counted, &sample_schema()).unwrap_err(), CsvError::HeaderTooLong);
        assert!(counted.finish().1 < MAX_HEADER_BYTES + (1 << 20));

        let endless_row = io::Cursor::new(&b"age,sex,bmi,note\n1,F,2,\"open quote"[..]).chain(io::repeat(b'x'));
        let e = check_csv(endless_row, &sample_schema()).unwrap_err();
        assert_eq!(e, CsvError::RowTooLong { row: 1 });
        assert!(e.to_string().contains("8388608 bytes"), "{e}");
    }

    #[test]
    fn a_cell_over_the_limit_is_refused_naming_row_and_column() {
        let mut data = b"age,sex,bmi,note\n1,F,20,ok\n3,M,40,".to_vec();
        data.extend(std::iter::repeat_n(b'n', MAX_CELL_BYTES + 1));
        data.push(b'\n');
        let e = check_csv(&data[..], &sample_schema()).unwrap_err();
        assert_eq!(e, CsvError::CellTooLong { row: 2, line: 3, column: "note".into() });
        // Just under the limit passes the length check (and then the schema's own rules).
        let mut ok = b"age,sex,bmi,note\n1,F,20,".to_vec();
        ok.extend(std::iter::repeat_n(b'n', MAX_CELL_BYTES));
        assert!(!matches!(check_csv(&ok[..], &sample_schema()), Err(CsvError::CellTooLong { .. })));
    }

    #[test]
    fn a_huge_header_is_described_briefly() {
        let header: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
        let data = format!("{}\n1\n", header.join(","));
        let e = check_csv(data.as_bytes(), &sample_schema()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.len() < 1000, "{} bytes", msg.len());
        assert!(msg.contains("… and 99990 more] (100000 columns)"), "{msg}");
        assert!(msg.contains(r#"["age", "sex", "bmi", "note"]"#), "{msg}");
    }
}
