//! Streaming checks of a CSV file against a dataset schema, hashing the exact bytes as they pass.
//! Memory stays bounded by one record, and a record by [`MAX_ROW_BYTES`], whatever the file holds
//! (a file without a single newline, a quote that never closes).

use std::collections::HashSet;
use std::io::{self, Read};

use aws_lc_rs::digest::{Context, SHA256};

use crate::csvscan::{RecordScanner, ScanError};
use crate::schema::{ColumnKind, DatasetSchema};

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
    let mut scan = RecordScanner::new(reader, MAX_HEADER_BYTES);
    let found: Vec<String> = match scan.next_record() {
        Ok(true) => (0..scan.field_count())
            .map(|i| String::from_utf8_lossy(scan.field(i)).trim_start_matches('\u{feff}').to_string())
            .collect(),
        Ok(false) => Vec::new(),
        Err(e) => return Err(scan_error(e, CsvError::HeaderTooLong)),
    };
    let expected: Vec<String> = schema.names().iter().map(|s| s.to_string()).collect();
    if found != expected {
        return Err(CsvError::Header { found, expected });
    }
    scan.set_limit(MAX_ROW_BYTES);
    // One more than the schema's: enough to see that a row has too many, without keeping them.
    scan.keep_fields(expected.len() + 1);
    let cells = FastCells::new(schema);
    let mut rows = 0u64;
    loop {
        // The common rows, read in one sweep; the rest (and any row that fails) one by one below.
        rows += scan.plain_rows(expected.len(), |i, cell| cell.len() <= MAX_CELL_BYTES && cells.accepts(i, cell));
        match scan.next_record() {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(scan_error(e, CsvError::RowTooLong { row: rows + 1 })),
        }
        rows += 1;
        let line = scan.line();
        if scan.field_count() != expected.len() {
            return Err(CsvError::FieldCount { row: rows, line, found: scan.field_count(), expected: expected.len() });
        }
        for (i, name) in expected.iter().enumerate() {
            let cell = scan.field(i);
            if cell.len() > MAX_CELL_BYTES {
                return Err(CsvError::CellTooLong { row: rows, line, column: name.clone() });
            }
            if cells.accepts(i, cell) {
                continue;
            }
            // The scanner has checked that every field is UTF-8.
            let text = std::str::from_utf8(cell).map_err(|_| CsvError::Malformed { line, reason: NOT_UTF8.into() })?;
            schema.check_cell(i, text).map_err(|reason| CsvError::Cell {
                row: rows,
                line,
                column: name.clone(),
                reason,
            })?;
        }
    }
    if rows == 0 {
        return Err(CsvError::Empty);
    }
    let (sha256, bytes) = scan.finish().map_err(|e| CsvError::Io(e.to_string()))?;
    Ok(CsvSummary { rows, bytes, sha256 })
}

const NOT_UTF8: &str = "is not valid UTF-8";

/// The error for a scanner failure; `too_long` is what an over-long record means where it occurred.
fn scan_error(e: ScanError, too_long: CsvError) -> CsvError {
    match e {
        ScanError::TooLong => too_long,
        ScanError::Utf8 { line } => CsvError::Malformed { line, reason: NOT_UTF8.into() },
        ScanError::Io(e) => CsvError::Io(e.to_string()),
    }
}

/// Accepts the common cell without allocating or converting: a plain integer or decimal inside
/// its bounds, a listed category, a string short enough in bytes. It only ever accepts; every
/// cell it does not accept is decided and described by [`DatasetSchema::check_cell`], so the two
/// can never disagree about a rejection.
struct FastCells<'a> {
    columns: Vec<(FastCell<'a>, bool)>,
}

/// One column's fast acceptance, with its data laid out for the check.
enum FastCell<'a> {
    Integer {
        min: i64,
        max: i64,
    },
    Float {
        min: f64,
        max: f64,
    },
    /// Category values of at most 7 bytes, each packed into an integer (see [`pack`]).
    Short(Vec<u64>),
    /// Longer values, or many of them.
    Values(HashSet<&'a [u8]>),
    String {
        max_length: usize,
    },
}

impl<'a> FastCells<'a> {
    fn new(schema: &'a DatasetSchema) -> Self {
        let columns = schema
            .columns
            .iter()
            .map(|c| {
                let fast = match &c.kind {
                    ColumnKind::Integer { min, max } => FastCell::Integer { min: *min, max: *max },
                    ColumnKind::Float { min, max } => FastCell::Float { min: *min, max: *max },
                    ColumnKind::Category { values } => match values.iter().map(|v| pack(v.as_bytes())).collect() {
                        Some(packed) if values.len() <= 16 => FastCell::Short(packed),
                        _ => FastCell::Values(values.iter().map(|v| v.as_bytes()).collect()),
                    },
                    ColumnKind::String { max_length } => FastCell::String { max_length: *max_length },
                };
                (fast, c.nullable)
            })
            .collect();
        FastCells { columns }
    }

    #[inline]
    fn accepts(&self, i: usize, cell: &[u8]) -> bool {
        let (fast, nullable) = &self.columns[i];
        if cell.is_empty() {
            return *nullable;
        }
        match fast {
            FastCell::Integer { min, max } => plain_i64(cell).is_some_and(|v| *min <= v && v <= *max),
            FastCell::Float { min, max } => plain_f64(cell).is_some_and(|v| *min <= v && v <= *max),
            FastCell::Short(values) => pack(cell).is_some_and(|c| values.contains(&c)),
            FastCell::Values(set) => set.contains(cell),
            // A string has at most as many characters as bytes.
            FastCell::String { max_length } => cell.len() <= *max_length,
        }
    }
}

/// A non-empty text of at most 7 bytes as one integer: its bytes, little-endian, above a 1 bit
/// that marks the length ("a" and "a\0" differ).
#[inline]
fn pack(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 7 {
        return None;
    }
    let mut v = 1u64 << (8 * text.len());
    for (k, &b) in text.iter().enumerate() {
        v |= (b as u64) << (8 * k);
    }
    Some(v)
}

/// `[+-]?[0-9]{1,18}` as an i64 (18 digits cannot overflow), else `None`: the caller falls back
/// to `str::parse`, which gives the same value for every text accepted here.
#[inline]
fn plain_i64(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as i64;
    }
    Some(if negative { -v } else { v })
}

/// `[+-]?` then at most 15 digits with at most one `.` among or around them, as an f64, else
/// `None`. With at most 15 digits the mantissa m is below 2^53 and 10^k (k ≤ 15) is exact, so
/// m / 10^k is one correctly rounded IEEE division: the same f64 as the correctly rounded
/// `str::parse` (Clinger's fast path, which the standard library takes for these texts too).
#[inline]
fn plain_f64(b: &[u8]) -> Option<f64> {
    const POW10: [f64; 16] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
    let (negative, text) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let (mut m, mut digits, mut decimals, mut dot) = (0u64, 0usize, 0usize, false);
    for &c in text {
        if c == b'.' && !dot {
            dot = true;
            continue;
        }
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        m = m * 10 + d as u64;
        digits += 1;
        decimals += dot as usize;
        if digits > 15 {
            return None;
        }
    }
    if digits == 0 {
        return None;
    }
    let v = m as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::tests::sample_schema;

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

    proptest::proptest! {
        /// The fast number readers give exactly what `str::parse` gives, whenever they give anything.
        #[test]
        fn plain_numbers_parse_as_the_standard_library_does(text in "[-+]?[0-9.]{0,20}|[-+]?[0-9]{1,19}(\\.[0-9]{0,6})?") {
            if let Some(v) = plain_i64(text.as_bytes()) {
                proptest::prop_assert_eq!(Ok(v), text.parse::<i64>());
            }
            if let Some(v) = plain_f64(text.as_bytes()) {
                let std: f64 = text.parse().unwrap();
                proptest::prop_assert_eq!(v.to_bits(), std.to_bits(), "{}", text);
            }
        }

        /// The fast path only accepts what `check_cell` accepts.
        #[test]
        fn fast_acceptance_implies_the_full_check(cell in "[-+]?[0-9.]{0,20}|[MF ]{0,3}|.{0,8}", column in 0usize..4) {
            let schema = sample_schema();
            if FastCells::new(&schema).accepts(column, cell.as_bytes()) {
                proptest::prop_assert_eq!(schema.check_cell(column, &cell), Ok(()));
            }
        }
    }

    #[test]
    fn plain_numbers_cover_the_common_texts() {
        assert_eq!(plain_i64(b"-42"), Some(-42));
        assert_eq!(plain_i64(b"999999999999999999"), Some(999_999_999_999_999_999));
        assert_eq!(plain_i64(b"9223372036854775807"), None); // 19 digits: left to str::parse
        assert_eq!(plain_i64(b" 1"), None);
        assert_eq!(plain_f64(b"45.1234"), Some(45.1234));
        assert_eq!(plain_f64(b"-.5"), Some(-0.5));
        assert_eq!(plain_f64(b"0.1"), Some(0.1));
        assert_eq!(plain_f64(b"1e5"), None);
        assert_eq!(plain_f64(b"."), None);
        assert_eq!(plain_f64(b"1.2.3"), None);
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
