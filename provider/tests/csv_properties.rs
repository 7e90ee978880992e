//! Property tests of the dataset schema and the CSV check: arbitrary bytes never panic the check
//! and what passes is hashed exactly; files written to fit a schema pass with the right row count;
//! one out-of-domain cell fails naming its row and column without quoting the cell; arbitrary
//! schema configurations never panic and every problem is reported at a `schema.column[i]` path;
//! stand-ins generated from a schema pass that schema's check.
//!
//! Case counts honour `PROPTEST_CASES` when it is set.

use std::collections::BTreeMap;
use std::io::{self, Read};

use dcr_dataset::csvcheck::{MAX_HEADER_BYTES, MAX_ROW_BYTES};
use dcr_dataset::schema::ColumnKind;
use dcr_dataset::standin::random_csv;
use dcr_dataset::{CsvError, CsvSummary, DatasetSchema, check_csv};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use rand::SeedableRng;
use terraform_provider_dcr::resources::dataset::columns::dataset_schema;
use tfplugin6::Value;
use tfplugin6::value::Number;

fn cases(n: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = n;
    }
    c
}

// ---------------------------------------------------------------------------------------------
// Schemas, as the test sees them

#[derive(Clone, Debug, PartialEq)]
enum Spec {
    Integer(i64, i64),
    Float(f64, f64),
    Category(Vec<String>),
    Str(usize),
}

#[derive(Clone, Debug)]
struct ColSpec {
    name: String,
    spec: Spec,
    nullable: bool,
    /// Spell integer bounds as whole floats (below 9e15, where `Number::as_i64` takes them), and
    /// `nullable = false` explicitly.
    alt_spelling: bool,
}

impl ColSpec {
    fn kind(&self) -> ColumnKind {
        match &self.spec {
            Spec::Integer(min, max) => ColumnKind::Integer { min: *min, max: *max },
            Spec::Float(min, max) => ColumnKind::Float { min: *min, max: *max },
            Spec::Category(values) => ColumnKind::Category { values: values.clone() },
            Spec::Str(n) => ColumnKind::String { max_length: *n },
        }
    }
}

/// A `column` block as Terraform hands it over: every attribute present, null when unset (the
/// shape of `columns::tests::column`).
fn column_value(attrs: &[(&str, Value)]) -> Value {
    let mut m: BTreeMap<String, Value> = ["name", "type", "min", "max", "values", "max_length", "nullable"]
        .into_iter()
        .map(|k| (k.to_string(), Value::Null))
        .collect();
    for (k, v) in attrs {
        m.insert(k.to_string(), v.clone());
    }
    Value::Object(m)
}

fn schema_block(cols: Vec<Value>) -> Value {
    Value::object([("column", Value::List(cols))])
}

fn int_bound(v: i64, alt: bool) -> Value {
    if alt && v.unsigned_abs() < 9_000_000_000_000_000 { Value::float(v as f64) } else { Value::int(v) }
}

fn config_of(cols: &[ColSpec]) -> Value {
    schema_block(
        cols.iter()
            .map(|c| {
                let mut attrs = vec![("name", Value::string(&c.name))];
                match &c.spec {
                    Spec::Integer(min, max) => attrs.extend([
                        ("type", Value::string("integer")),
                        ("min", int_bound(*min, c.alt_spelling)),
                        ("max", int_bound(*max, c.alt_spelling)),
                    ]),
                    Spec::Float(min, max) => attrs.extend([
                        ("type", Value::string("float")),
                        ("min", Value::float(*min)),
                        ("max", Value::float(*max)),
                    ]),
                    Spec::Category(values) => attrs.extend([
                        ("type", Value::string("category")),
                        ("values", Value::List(values.iter().map(Value::string).collect())),
                    ]),
                    Spec::Str(n) => {
                        attrs.extend([("type", Value::string("string")), ("max_length", Value::int(*n as i64))])
                    }
                }
                if c.nullable {
                    attrs.push(("nullable", Value::Bool(true)));
                } else if c.alt_spelling {
                    attrs.push(("nullable", Value::Bool(false)));
                }
                column_value(&attrs)
            })
            .collect(),
    )
}

fn parse_schema(cols: &[ColSpec]) -> Result<DatasetSchema, TestCaseError> {
    match dataset_schema(&config_of(cols)) {
        Ok(Some(s)) => {
            for (c, col) in cols.iter().zip(&s.columns) {
                prop_assert_eq!(&col.name, &c.name);
                prop_assert_eq!(&col.kind, &c.kind());
                prop_assert_eq!(col.nullable, c.nullable);
            }
            prop_assert_eq!(s.columns.len(), cols.len());
            Ok(s)
        }
        Ok(None) => Err(TestCaseError::fail("a wholly known schema was deferred")),
        Err(d) => Err(TestCaseError::fail(format!(
            "a valid schema was refused: {:?}",
            d.iter().map(|d| d.summary.clone()).collect::<Vec<_>>()
        ))),
    }
}

/// Characters that matter to CSV (delimiters, quotes, line ends) over-represented among others.
fn cell_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => select(vec![',', '"', '\n', '\r', ' ', '\t', '\'', ';', '#', 'é', '中', '😀', '\u{feff}', '\0']),
        3 => proptest::char::range('a', 'z'),
    ]
}

fn arb_text(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(cell_char(), len).prop_map(String::from_iter)
}

/// A column name the schema accepts: 1 to 128 bytes, no comma, quote or line break, and (see
/// `a_column_name_starting_with_a_bom_never_matches`) no leading U+FEFF.
fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z_][a-z0-9_]{0,12}",
        1 => prop::collection::vec(
            prop_oneof![any::<char>(), select(vec![' ', '\t', '\'', ';', '#', 'é', '😀', '\u{feff}'])],
            1..20,
        )
        .prop_map(String::from_iter),
    ]
    .prop_map(|n| n.trim_start_matches('\u{feff}').to_string())
    .prop_filter("usable name", |n| !n.is_empty() && n.len() <= 128 && !n.contains(['\n', '\r', ',', '"']))
}

fn arb_float_bounds() -> impl Strategy<Value = (f64, f64)> {
    prop_oneof![
        (-1e300f64..1e300, -1e300f64..1e300),
        (-100.0f64..100.0, 0.0f64..10.0).prop_map(|(a, w)| (a, a + w)),
        (-1e-3f64..1e-3, 0.0f64..1e-6).prop_map(|(a, w)| (a, a + w)),
        any::<f64>().prop_filter("finite", |f| f.is_finite() && f.abs() < 8e307).prop_map(|f| (f, f)),
        select(vec![(0.0, 0.0), (-0.0, 0.0), (f64::MIN_POSITIVE, 1.0), (-8e307, 8e307)]),
    ]
    .prop_map(|(a, b)| (a.min(b), a.max(b)))
}

/// Mostly a few values; sometimes more than the check scans linearly (it hashes those).
fn arb_categories(allow_empty_value: bool) -> impl Strategy<Value = Vec<String>> {
    prop_oneof![4 => 1usize..6, 1 => 17usize..30]
        .prop_flat_map(move |n| prop::collection::btree_set(arb_text(if allow_empty_value { 0..=8 } else { 1..=8 }), n))
        .prop_map(|s| s.into_iter().collect())
}

fn arb_spec(float_bounds: BoxedStrategy<(f64, f64)>, empty_category_values: bool) -> impl Strategy<Value = Spec> {
    prop_oneof![
        (any::<i64>(), any::<i64>()).prop_map(|(a, b)| Spec::Integer(a.min(b), a.max(b))),
        (-1000i64..1000, 0i64..100).prop_map(|(a, w)| Spec::Integer(a, a + w)),
        select(vec![(i64::MIN, i64::MAX), (i64::MIN, i64::MIN), (i64::MAX, i64::MAX), (0, 0), (-1, 1)])
            .prop_map(|(a, b)| Spec::Integer(a, b)),
        float_bounds.prop_map(|(a, b)| Spec::Float(a, b)),
        arb_categories(empty_category_values).prop_map(Spec::Category),
        prop_oneof![1usize..=20, Just(1_000_000)].prop_map(Spec::Str),
    ]
}

fn arb_schema_with(
    float_bounds: fn() -> BoxedStrategy<(f64, f64)>,
    empty_category_values: bool,
) -> impl Strategy<Value = Vec<ColSpec>> {
    prop::collection::vec(
        (arb_name(), arb_spec(float_bounds(), empty_category_values), any::<bool>(), any::<bool>()),
        1..6,
    )
    .prop_map(|cols| {
        let mut seen = std::collections::BTreeSet::new();
        cols.into_iter()
            .filter(|(n, ..)| seen.insert(n.clone()))
            .map(|(name, spec, nullable, alt_spelling)| ColSpec { name, spec, nullable, alt_spelling })
            .collect()
    })
}

fn arb_schema() -> impl Strategy<Value = Vec<ColSpec>> {
    arb_schema_with(|| arb_float_bounds().boxed(), false)
}

// ---------------------------------------------------------------------------------------------
// Files

/// An integer in `[min, max]`. (proptest's own `min..=max` overflows on spans beyond i64, e.g.
/// `i64::MIN..=i64::MAX`: "attempt to subtract with overflow" in proptest's num.rs.)
fn int_in(min: i64, max: i64) -> impl Strategy<Value = i64> {
    let span = (max as i128 - min as i128) as u128 + 1;
    any::<u128>().prop_map(move |x| (min as i128 + (x % span) as i128) as i64)
}

/// A cell that fits its column.
fn arb_cell(c: &ColSpec) -> BoxedStrategy<String> {
    let known = match c.spec.clone() {
        Spec::Integer(min, max) => {
            prop_oneof![int_in(min, max), Just(min), Just(max)].prop_map(|v| v.to_string()).boxed()
        }
        Spec::Float(min, max) => (0.0f64..=1.0, any::<bool>(), 0u8..4)
            .prop_map(move |(t, exp, edge)| {
                let v = match edge {
                    0 => min,
                    1 => max,
                    _ => (min + t * (max - min)).clamp(min, max),
                };
                if exp { format!("{v:e}") } else { format!("{v}") }
            })
            .boxed(),
        Spec::Category(values) => select(values).boxed(),
        Spec::Str(n) => arb_text(1..=n.min(24)).boxed(),
    };
    if c.nullable { prop_oneof![1 => Just(String::new()), 4 => known].boxed() } else { known }
}

fn arb_rows(cols: &[ColSpec]) -> impl Strategy<Value = Vec<Vec<String>>> + use<> {
    let row: Vec<BoxedStrategy<String>> = cols.iter().map(arb_cell).collect();
    prop::collection::vec(row, 1..12)
}

/// How a file is laid out: line ends, a byte-order mark, the last line end.
#[derive(Clone, Copy, Debug)]
struct Layout {
    crlf: bool,
    bom: bool,
    final_newline: bool,
}

fn arb_layout() -> impl Strategy<Value = Layout> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(crlf, bom, final_newline)| Layout {
        crlf,
        bom,
        final_newline,
    })
}

/// Writes the header and rows with the `csv` crate; returns the bytes and, for each row, the line
/// it starts on.
fn write_csv(names: &[String], rows: &[Vec<String>], layout: Layout) -> (Vec<u8>, Vec<u64>) {
    let mut out = Vec::new();
    if layout.bom {
        out.extend_from_slice("\u{feff}".as_bytes());
    }
    let term = if layout.crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
    let mut w = csv::WriterBuilder::new().terminator(term).flexible(true).from_writer(out);
    w.write_record(names).unwrap();
    let mut starts = Vec::new();
    for r in rows {
        w.flush().unwrap();
        starts.push(w.get_ref().len());
        w.write_record(r).unwrap();
    }
    let mut out = w.into_inner().unwrap();
    if !layout.final_newline {
        let t = if layout.crlf { 2 } else { 1 };
        out.truncate(out.len() - t);
    }
    let lines = starts.iter().map(|&s| 1 + out[..s].iter().filter(|&&b| b == b'\n').count() as u64).collect();
    (out, lines)
}

/// A reader that hands out at most a few bytes per call, cycling through `sizes`.
struct ShortReads<'a> {
    inner: &'a [u8],
    sizes: Vec<usize>,
    i: usize,
}

impl Read for ShortReads<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = self.sizes[self.i % self.sizes.len()].max(1);
        self.i += 1;
        let n = buf.len().min(max);
        self.inner.read(&mut buf[..n])
    }
}

fn arb_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1usize..=7, 1usize..=100_000], 1..4)
}

fn check(bytes: &[u8], schema: &DatasetSchema, sizes: &[usize]) -> Result<CsvSummary, CsvError> {
    check_csv(ShortReads { inner: bytes, sizes: sizes.to_vec(), i: 0 }, schema)
}

/// The check as the `csv` crate reads a file (`StringRecord`s, its default dialect; dcr's
/// implementation before its own scanner), without the size limits: the oracle the scanner is
/// held to. Lines are left out of the comparison: the crate reports the line a record's read
/// started on, before blank lines, and one too low after CRLF (rust-csv#395).
fn reference_check(bytes: &[u8], schema: &DatasetSchema) -> Result<u64, CsvError> {
    let malformed = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Utf8 { .. } => CsvError::Malformed { line: 0, reason: "is not valid UTF-8".into() },
        other => CsvError::Malformed { line: 0, reason: format!("{other:?}") },
    };
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(bytes);
    let expected: Vec<String> = schema.names().iter().map(|s| s.to_string()).collect();
    let found: Vec<String> =
        rdr.headers().map_err(malformed)?.iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
    if found != expected {
        return Err(CsvError::Header { found, expected });
    }
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    while rdr.read_record(&mut record).map_err(malformed)? {
        rows += 1;
        if record.len() != expected.len() {
            return Err(CsvError::FieldCount { row: rows, line: 0, found: record.len(), expected: expected.len() });
        }
        for (i, cell) in record.iter().enumerate() {
            schema.check_cell(i, cell).map_err(|reason| CsvError::Cell {
                row: rows,
                line: 0,
                column: expected[i].clone(),
                reason,
            })?;
        }
    }
    if rows == 0 { Err(CsvError::Empty) } else { Ok(rows) }
}

fn agrees_with_the_csv_crate(
    bytes: &[u8],
    schema: &DatasetSchema,
    ours: Result<CsvSummary, CsvError>,
) -> Result<(), TestCaseError> {
    let ours = ours.map(|s| s.rows).map_err(|e| match e {
        CsvError::Cell { row, column, reason, .. } => CsvError::Cell { row, line: 0, column, reason },
        CsvError::FieldCount { row, found, expected, .. } => CsvError::FieldCount { row, line: 0, found, expected },
        CsvError::Malformed { reason, .. } => CsvError::Malformed { line: 0, reason },
        other => other,
    });
    prop_assert_eq!(ours, reference_check(bytes, schema), "{:?}", String::from_utf8_lossy(bytes));
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn names(cols: &[ColSpec]) -> Vec<String> {
    cols.iter().map(|c| c.name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Out-of-domain cells

/// 12 random digits: enough that a cell holding them cannot turn up in a message by chance.
fn noise() -> impl Strategy<Value = String> {
    "[1-9][0-9]{11}".prop_map(String::from)
}

/// A non-empty cell that does not fit `c`.
fn arb_bad_cell(c: &ColSpec) -> BoxedStrategy<String> {
    let words = (noise(), select(vec!["SECRET-", "x", "diagnosis=", " x ", "\"quoted\" "]))
        .prop_map(|(n, w)| format!("{w}{n}"))
        .boxed();
    match c.spec.clone() {
        Spec::Integer(min, max) => {
            let mut options: Vec<BoxedStrategy<String>> = vec![
                words,
                noise().prop_map(|n| format!("{n}.5")).boxed(),
                noise().prop_map(|n| format!("9223372036854775808{n}")).boxed(),
                noise().prop_map(|n| format!("-9223372036854775809{n}")).boxed(),
                noise().prop_map(|n| format!("{n}e3")).boxed(),
            ];
            let big = 1_000_000_000_000i64;
            if max < i64::MAX {
                let lo = max.saturating_add(big);
                options.push(int_in(lo, i64::MAX).prop_map(|v| v.to_string()).boxed());
            }
            if min > i64::MIN {
                let hi = min.saturating_sub(big);
                options.push(int_in(i64::MIN, hi).prop_map(|v| v.to_string()).boxed());
            }
            proptest::strategy::Union::new(options).boxed()
        }
        Spec::Float(min, max) => {
            let mut options: Vec<BoxedStrategy<String>> = vec![
                words,
                select(vec!["infinity", "-infinity", "1e999", "-1e999", "NaN"]).prop_map(String::from).boxed(),
            ];
            // Beyond a bound by at least its own magnitude (so at least 0 above the max, at most 0
            // below the min), with 12 random digits appended to the fraction: away from the domain.
            let span = |x: f64| x.abs().max(1.0);
            let spell = |v: f64, digits: String| {
                let t = format!("{v}");
                if t.contains('.') { format!("{t}{digits}") } else { format!("{t}.{digits}") }
            };
            if (max + 2.0 * span(max)).is_finite() {
                options.push((1.0f64..2.0, noise()).prop_map(move |(t, d)| spell(max + t * span(max), d)).boxed());
            }
            if (min - 2.0 * span(min)).is_finite() {
                options.push((1.0f64..2.0, noise()).prop_map(move |(t, d)| spell(min - t * span(min), d)).boxed());
            }
            proptest::strategy::Union::new(options).boxed()
        }
        Spec::Category(values) => words.prop_filter("not a declared value", move |w| !values.contains(w)).boxed(),
        // Longer than max_length, with 12 random digits so it is unmistakable.
        Spec::Str(n) if n <= 40 => (arb_text(n + 1..=n + 8), noise()).prop_map(|(t, d)| format!("{d}{t}")).boxed(),
        Spec::Str(n) => noise().prop_map(move |d| format!("{d}{}", "x".repeat(n))).boxed(),
    }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary schema configurations

fn arb_number_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::int),
        (-5i64..5).prop_map(Value::int),
        any::<f64>().prop_map(Value::float),
        select(vec![0.5, -0.0, 1e16, 9.5e15, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN])
            .prop_map(Value::float),
        // Decimal text of any magnitude (what Terraform sends for numbers neither an i64 nor an
        // exact f64 hold), and a few that are not decimals at all.
        "-?[0-9]{1,40}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?".prop_map(|s| Value::Number(Number::Big(s))),
        select(vec!["9223372036854775808", "-9223372036854775809", "1e400", "-1e400", "1e-400", "abc", ""])
            .prop_map(|s| Value::Number(Number::Big(s.into()))),
        // Near 2^63 and 2^53, where i64 → f64 rounds.
        (-3i64..=3).prop_map(|d| Value::int(i64::MAX - 3 + d.abs())),
        (-3i64..=3).prop_map(|d| Value::int((1 << 53) + d)),
    ]
}

/// Any value at all where an attribute is expected (Terraform checks types first, but the parser
/// must not rely on it).
fn arb_any_value(base: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => base,
        2 => Just(Value::Null),
        1 => Just(Value::Unknown),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => arb_text(0..=4).prop_map(Value::String),
        1 => Just(Value::List(vec![Value::int(1)])),
    ]
    .boxed()
}

/// A `column` block with arbitrary attribute values. `min` and `max` are numbers, null or unknown
/// (Terraform checks them against `Type::Number` before the provider sees them) unless
/// `wrongly_typed_bounds`, which lets any value through (see `wrongly_typed_bounds_are_reported`).
fn arb_config_column(wrongly_typed_bounds: bool) -> impl Strategy<Value = Value> {
    let bound = move || {
        if wrongly_typed_bounds {
            arb_any_value(arb_number_value().boxed())
        } else {
            prop_oneof![4 => arb_number_value(), 2 => Just(Value::Null), 1 => Just(Value::Unknown)].boxed()
        }
    };
    let name = prop_oneof![
        select(vec!["a", "b", "a", "", "x,y", "q\"", "l\n", "c\r", "\u{feff}a", " "]).prop_map(String::from),
        "[a-z]{129,140}",
        "[a-zé😀]{0,8}",
    ];
    let ty = prop_oneof![
        select(vec!["integer", "float", "category", "string"]).prop_map(String::from),
        select(vec!["datetime", "", "Integer", "int"]).prop_map(String::from),
    ];
    let values = prop::collection::vec(
        prop_oneof![
            4 => select(vec!["x", "y", "", "x"]).prop_map(Value::string),
            1 => Just(Value::Null),
            1 => Just(Value::int(3)),
        ],
        0..4,
    )
    .prop_map(Value::List)
    .boxed();
    let max_length = prop_oneof![
        (-2i64..3).prop_map(Value::int),
        select(vec![1_000_000i64, 1_000_001, i64::MAX, i64::MIN]).prop_map(Value::int),
        Just(Value::float(2.5)),
        Just(Value::Number(Number::Big("1e999".into()))),
    ]
    .boxed();
    (
        arb_any_value(name.prop_map(Value::String).boxed()),
        arb_any_value(ty.prop_map(Value::String).boxed()),
        bound(),
        bound(),
        arb_any_value(values),
        arb_any_value(max_length),
        arb_any_value(any::<bool>().prop_map(Value::Bool).boxed()),
    )
        .prop_map(|(name, ty, min, max, values, max_length, nullable)| {
            column_value(&[
                ("name", name),
                ("type", ty),
                ("min", min),
                ("max", max),
                ("values", values),
                ("max_length", max_length),
                ("nullable", nullable),
            ])
        })
}

/// The rules every accepted schema must satisfy. `exact_integers: false` skips `min <= max` for
/// integer bounds that f64 cannot tell apart (beyond 2^53; see `integer_bounds_are_compared_exactly`).
fn accepted_schema_is_sound(s: &DatasetSchema, columns: usize, exact_integers: bool) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.columns.len(), columns);
    let mut names = std::collections::BTreeSet::new();
    for c in &s.columns {
        prop_assert!(!c.name.is_empty() && c.name.len() <= 128 && !c.name.contains(['\n', '\r', ',', '"']));
        prop_assert!(names.insert(c.name.clone()), "duplicate name {:?}", c.name);
        match &c.kind {
            ColumnKind::Integer { min, max } => {
                if exact_integers || *min as f64 != *max as f64 {
                    prop_assert!(min <= max, "integer {:?}: min {} > max {}", c.name, min, max)
                }
            }
            ColumnKind::Float { min, max } => {
                prop_assert!(min.is_finite() && max.is_finite() && (max - min).is_finite() && min <= max)
            }
            ColumnKind::Category { values } => {
                prop_assert!(!values.is_empty());
                let set: std::collections::BTreeSet<_> = values.iter().collect();
                prop_assert_eq!(set.len(), values.len());
            }
            ColumnKind::String { max_length } => prop_assert!((1..=1_000_000).contains(max_length)),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(cases(128))]

    /// (a) Arbitrary bytes never panic the check, and whatever passes has rows and is hashed
    /// exactly as given. The bytes often start with the right header so that rows get checked.
    #[test]
    fn arbitrary_bytes_never_panic(
        cols in arb_schema(),
        header in prop_oneof![Just(None), Just(Some(false)), Just(Some(true))],
        body in prop::collection::vec(
            prop_oneof![
                2 => any::<u8>(),
                3 => select(b",\"\n\r0123456789-+.eE x\t".to_vec()),
                1 => select(vec![0xef, 0xbb, 0xbf, 0xff, 0xc3, 0x80]),
            ],
            0..4096,
        ),
        sizes in arb_sizes(),
    ) {
        let schema = parse_schema(&cols)?;
        let mut bytes = Vec::new();
        if let Some(bom) = header {
            let (h, _) = write_csv(&names(&cols), &[], Layout { crlf: false, bom, final_newline: true });
            bytes.extend_from_slice(&h);
        }
        bytes.extend_from_slice(&body);
        let r = check(&bytes, &schema, &sizes);
        if let Ok(s) = &r {
            prop_assert!(s.rows > 0);
            prop_assert_eq!(s.bytes, bytes.len() as u64);
            prop_assert_eq!(&s.sha256, &sha256_hex(&bytes));
        }
        agrees_with_the_csv_crate(&bytes, &schema, r)?;
    }

    /// (a') Conforming files with a few bytes replaced, inserted or deleted (delimiters, quotes,
    /// line ends, digits, broken UTF-8) are judged exactly as the `csv` crate reads them.
    #[test]
    fn damaged_files_are_read_as_the_csv_crate_reads_them(
        (cols, rows) in arb_schema().prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r) }),
        layout in arb_layout(),
        edits in prop::collection::vec(
            (any::<Index>(), 0u8..3, prop_oneof![
                3 => select(b",\"\n\r0123456789-+.e x".to_vec()),
                1 => select(vec![0xef, 0xbb, 0xbf, 0xff, 0xc3, 0x80]),
            ]),
            0..4,
        ),
        sizes in arb_sizes(),
    ) {
        let schema = parse_schema(&cols)?;
        let (mut bytes, _) = write_csv(&names(&cols), &rows, layout);
        for (at, edit, b) in edits {
            let i = at.index(bytes.len() + 1);
            match edit {
                _ if i == bytes.len() => bytes.insert(i, b),
                0 => bytes.insert(i, b),
                1 => bytes[i] = b,
                _ => { bytes.remove(i); }
            }
        }
        let r = check(&bytes, &schema, &sizes);
        agrees_with_the_csv_crate(&bytes, &schema, r)?;
    }

    /// (a'') A row with its last field dropped or repeated (every cell otherwise fitting its
    /// column) is refused for its field count, at that row, as the `csv` crate reads it.
    #[test]
    fn a_row_with_a_field_too_few_or_too_many_is_refused(
        (cols, mut rows) in arb_schema().prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r) }),
        layout in arb_layout(),
        which in any::<Index>(),
        drop in any::<bool>(),
        sizes in arb_sizes(),
    ) {
        let schema = parse_schema(&cols)?;
        let k = which.index(rows.len());
        let last = rows[k].last().cloned().unwrap_or_default();
        if drop { rows[k].pop(); } else { rows[k].push(last); }
        let (bytes, _) = write_csv(&names(&cols), &rows, layout);
        let r = check(&bytes, &schema, &sizes);
        // Dropping the only field of a row leaves a blank line (skipped) or a lone empty field.
        if cols.len() > 1 {
            let found = cols.len() - 1 + 2 * (!drop as usize);
            let row = k as u64 + 1;
            prop_assert!(
                matches!(&r, Err(CsvError::FieldCount { row: r, found: f, .. }) if *r == row && *f == found)
                    || matches!(&r, Err(CsvError::Cell { row: r, .. }) if *r < row),
                "{:?}", r
            );
        }
        agrees_with_the_csv_crate(&bytes, &schema, r)?;
    }

    /// (b) Rows written to fit the schema (commas, quotes and line breaks quoted by the `csv`
    /// writer) always pass, with the right row count, byte count and hash.
    #[test]
    fn conforming_files_pass(
        (cols, rows) in arb_schema().prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r) }),
        layout in arb_layout(),
        sizes in arb_sizes(),
    ) {
        let schema = parse_schema(&cols)?;
        let (bytes, _) = write_csv(&names(&cols), &rows, layout);
        let s = check(&bytes, &schema, &sizes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(s.rows, rows.len() as u64);
        prop_assert_eq!(s.bytes, bytes.len() as u64);
        prop_assert_eq!(s.sha256, sha256_hex(&bytes));
    }

    /// (c) One cell replaced by a value outside its column's domain fails at that row and column,
    /// and the message never quotes the cell.
    #[test]
    fn one_bad_cell_is_named_but_not_quoted(
        (cols, rows, r, c, bad) in arb_schema()
            .prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r, any::<Index>(), any::<Index>()) })
            .prop_flat_map(|(cols, rows, r, c)| {
                let (r, c) = (r.index(rows.len()), c.index(cols.len()));
                let bad = if cols[c].nullable {
                    arb_bad_cell(&cols[c])
                } else {
                    prop_oneof![1 => Just(String::new()), 5 => arb_bad_cell(&cols[c])].boxed()
                };
                (Just(cols), Just(rows), Just(r), Just(c), bad)
            }),
        layout in arb_layout(),
        sizes in arb_sizes(),
    ) {
        let schema = parse_schema(&cols)?;
        let mut rows = rows;
        rows[r][c] = bad.clone();
        let (bytes, lines) = write_csv(&names(&cols), &rows, layout);
        let e = match check(&bytes, &schema, &sizes) {
            Ok(s) => return Err(TestCaseError::fail(format!("{bad:?} in column {:?} passed: {s:?}", cols[c]))),
            Err(e) => e,
        };
        match &e {
            CsvError::Cell { row, line, column, reason: _ } => {
                prop_assert_eq!(*row, r as u64 + 1, "{}", e);
                prop_assert_eq!(column, &cols[c].name, "{}", e);
                prop_assert_eq!(*line, lines[r], "{}", e);
            }
            other => return Err(TestCaseError::fail(format!("expected a cell error, got {other:?}"))),
        }
        if !bad.is_empty() {
            let msg = e.to_string();
            prop_assert!(!msg.contains(&bad), "the message quotes the cell {:?}: {}", bad, msg);
            prop_assert!(!format!("{e:?}").contains(&bad), "the error quotes the cell {:?}: {:?}", bad, e);
        }
    }

    /// A header that differs from the schema's names (one renamed, dropped, added or moved)
    /// fails as a header error.
    #[test]
    fn a_wrong_header_is_refused(
        (cols, rows) in arb_schema().prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r) }),
        op in 0u8..4,
        at in any::<Index>(),
        extra in arb_name(),
    ) {
        let schema = parse_schema(&cols)?;
        let mut header = names(&cols);
        let i = at.index(header.len());
        match op {
            0 => header[i] = format!("{}{}", header[i], "_renamed"),
            1 => { header.remove(i); }
            2 => header.insert(i, extra),
            // Move one to the end (the last one to the front).
            _ if header.len() > 1 && i + 1 < header.len() => { let n = header.remove(i); header.push(n); }
            _ if header.len() > 1 => { let n = header.pop().unwrap(); header.insert(0, n); }
            _ => header[i].push('x'),
        }
        // An empty header line cannot be told from a header with one empty name: keep one.
        if header.is_empty() {
            header.push(format!("{}x", cols[0].name));
        }
        prop_assert!(header != names(&cols));
        let (bytes, _) = write_csv(&header, &rows, Layout { crlf: false, bom: false, final_newline: true });
        let e = check(&bytes, &schema, &[8192]).unwrap_err();
        prop_assert!(matches!(&e, CsvError::Header { found, expected } if *found == header && *expected == names(&cols)), "{:?}", e);
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Arbitrary schema configurations never panic; every error is reported at a
    /// `schema.column[i]` attribute; an unknown anywhere defers the check; an accepted schema
    /// has one column per block, and each column's domain is usable.
    #[test]
    fn arbitrary_schema_configurations(cols in prop::collection::vec(arb_config_column(false), 1..5)) {
        let block = schema_block(cols.clone());
        match dataset_schema(&block) {
            Ok(None) => prop_assert!(!block.is_wholly_known()),
            Ok(Some(s)) => {
                prop_assert!(block.is_wholly_known());
                accepted_schema_is_sound(&s, cols.len(), false)?;
            }
            Err(d) => {
                prop_assert!(block.is_wholly_known());
                prop_assert!(d.has_errors());
                for diag in d.iter() {
                    let path = diag.attribute.as_ref().map(|p| p.to_string()).unwrap_or_default();
                    prop_assert!(path.starts_with("schema.column["), "{:?} at {:?}", diag.summary, path);
                    prop_assert!(diag.summary.starts_with(&format!("Invalid {path}: ")), "{:?}", diag.summary);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(cases(256))]

    /// Was a bug, fixed: an accepted schema can declare an empty integer domain. `from_config` compares
    /// integer bounds as f64 (`lo > hi` on `i as f64`), so bounds beyond 2^53 that round to the
    /// same f64 pass with min > max: minimal input `min = 9007199254740993, max =
    /// 9007199254740992` (2^53 + 1, 2^53). Every cell then fails, and the stand-in generator
    /// panics on the empty range (`a_schema_with_min_above_max_is_refused`). Run with
    /// `cargo test -- --ignored`.
    #[test]
    fn integer_bounds_are_compared_exactly(
        x in prop_oneof![any::<i64>(), (1i64 << 53)..i64::MAX, i64::MIN..-(1i64 << 53)],
        d in -3i64..=3,
    ) {
        let (min, max) = (x, x.saturating_add(d));
        let block = schema_block(vec![column_value(&[
            ("name", Value::string("n")),
            ("type", Value::string("integer")),
            ("min", Value::int(min)),
            ("max", Value::int(max)),
        ])]);
        let r = dataset_schema(&block);
        prop_assert_eq!(r.is_ok(), min <= max, "min {} max {}: {:?}", min, max, r);
        if let Ok(Some(s)) = r {
            accepted_schema_is_sound(&s, 1, true)?;
        }
    }
}

proptest! {
    #![proptest_config(cases(512))]

    /// Was a bug, fixed (not reachable through Terraform, which type-checks `min`/`max` as numbers): a `min` or
    /// `max` that is neither null nor a number makes `from_config` drop the whole column without
    /// a diagnostic (`bound` returns on `v.as_number()?` before reporting), so a schema with fewer
    /// columns than blocks — even none — is accepted. Minimal input: one column `{name = "a",
    /// type = "integer", min = 0, max = false}` gives `Ok(Some(DatasetSchema { columns: [] }))`.
    /// Run with `cargo test -- --ignored`.
    #[test]
    fn wrongly_typed_bounds_are_reported(
        ty in select(vec!["integer", "float"]),
        bound in arb_number_value(),
        wrong in prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            arb_text(0..=4).prop_map(Value::String),
            Just(Value::List(vec![Value::int(1)])),
            Just(Value::object([("x", Value::int(1))])),
        ],
        wrong_is_min in any::<bool>(),
        others in prop::collection::vec(arb_config_column(true), 0..3),
    ) {
        let (min, max) = if wrong_is_min { (wrong, bound) } else { (bound, wrong) };
        let mut cols = vec![column_value(&[
            ("name", Value::string("wrongly_typed")),
            ("type", Value::string(ty)),
            ("min", min),
            ("max", max),
        ])];
        cols.extend(others);
        let block = schema_block(cols.clone());
        if let Ok(Some(s)) = dataset_schema(&block) {
            return Err(TestCaseError::fail(format!("accepted {} columns of {}: {s:?}", s.columns.len(), cols.len())));
        }
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// Stand-ins drawn from any schema `from_config` accepts pass that schema (stand-in floats are written as the
    /// shortest text of their value; they once used six decimals, so `min = max = 0.0000001` gave
    /// "0.000000", below the minimum). Empty category values are refused by `from_config`: an
    /// empty cell reads as null.
    #[test]
    fn stand_ins_pass_any_accepted_schema(
        cols in arb_schema_with(|| arb_float_bounds().boxed(), false),
        rows in 1u64..50,
        seed in any::<u64>(),
    ) {
        let schema = parse_schema(&cols)?;
        let mut out = Vec::new();
        random_csv(&schema, rows, &mut rand::rngs::StdRng::seed_from_u64(seed), &mut out).unwrap();
        let s = check(&out, &schema, &[8192]).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&out))))?;
        prop_assert_eq!(s.rows, rows);
    }
}

proptest! {
    #![proptest_config(cases(6))]

    /// A quote that never closes, after any number of good rows, is refused as a row over
    /// `MAX_ROW_BYTES` at that row, without reading the rest of a longer file (up to 2 MiB more).
    #[test]
    fn an_unclosed_quote_is_refused_at_its_row(
        (cols, rows) in arb_schema().prop_flat_map(|c| { let r = arb_rows(&c); (Just(c), r) }),
        extra in 0usize..(2 << 20),
    ) {
        let schema = parse_schema(&cols)?;
        let (mut bytes, _) = write_csv(&names(&cols), &rows, Layout { crlf: false, bom: false, final_newline: true });
        let start = bytes.len();
        bytes.push(b'"');
        // Past the limit and the reader's slack (64 KiB of read-ahead plus its buffer).
        bytes.resize(start + MAX_ROW_BYTES as usize + (80 << 10) + extra, b'x');
        let total = bytes.len() as u64;
        let mut counted = CountingReader { inner: &bytes[..], read: 0 };
        let e = check_csv(&mut counted, &schema).unwrap_err();
        prop_assert_eq!(e, CsvError::RowTooLong { row: rows.len() as u64 + 1 });
        prop_assert!(counted.read < start as u64 + MAX_ROW_BYTES + (512 << 10), "read {} of {}", counted.read, total);
        prop_assert!(counted.read <= total);
    }
}

struct CountingReader<'a> {
    inner: &'a [u8],
    read: u64,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

/// A header of more than `MAX_HEADER_BYTES` is refused as such.
#[test]
fn an_endless_header_is_refused() {
    let cols = vec![ColSpec { name: "a".into(), spec: Spec::Str(5), nullable: false, alt_spelling: false }];
    let schema = dataset_schema(&config_of(&cols)).unwrap().unwrap();
    let bytes = vec![b'a'; MAX_HEADER_BYTES as usize + (100 << 10)];
    assert_eq!(check_csv(&bytes[..], &schema).unwrap_err(), CsvError::HeaderTooLong);
}

// ---------------------------------------------------------------------------------------------
// Minimal inputs of the bugs found

/// Was a bug, fixed: see `accepted_schemas_have_usable_domains`. The stand-in generator then panics
/// ("cannot sample empty range").
#[test]
fn a_schema_with_min_above_max_is_refused() {
    let block = schema_block(vec![column_value(&[
        ("name", Value::string("n")),
        ("type", Value::string("integer")),
        ("min", Value::int((1 << 53) + 1)),
        ("max", Value::int(1 << 53)),
    ])]);
    let r = dataset_schema(&block);
    if let Ok(Some(s)) = &r {
        let stand_in = std::panic::catch_unwind(|| {
            random_csv(s, 1, &mut rand::rngs::StdRng::seed_from_u64(0), Vec::new()).unwrap();
        });
        panic!("accepted {:?}; the stand-in {}", s.columns[0].kind, if stand_in.is_err() { "panics" } else { "works" });
    }
    assert!(r.is_err());
}

/// Was a bug, fixed: see `stand_ins_pass_any_accepted_schema`.
#[test]
fn a_narrow_float_stand_in_fits_its_schema() {
    let cols = vec![ColSpec { name: "f".into(), spec: Spec::Float(1e-7, 1e-7), nullable: false, alt_spelling: false }];
    let schema = dataset_schema(&config_of(&cols)).unwrap().unwrap();
    let mut out = Vec::new();
    random_csv(&schema, 1, &mut rand::rngs::StdRng::seed_from_u64(0), &mut out).unwrap();
    let r = check_csv(&out[..], &schema);
    assert!(r.is_ok(), "{:?}: {r:?}", String::from_utf8_lossy(&out));
}

/// An empty category value would never match (an empty cell reads as null), and a column name
/// starting with U+FEFF never matches the header (a leading byte-order mark is stripped from it):
/// the schema refuses both, naming the attribute.
#[test]
fn unmatchable_category_values_and_names_are_refused() {
    let block = schema_block(vec![column_value(&[
        ("name", Value::string("c")),
        ("type", Value::string("category")),
        ("values", Value::List(vec![Value::string("")])),
    ])]);
    let e = dataset_schema(&block).unwrap_err();
    assert!(e.iter().any(|d| d.summary.contains("schema.column[0].values")), "{e:?}");
    let cols = vec![ColSpec { name: "\u{feff}a".into(), spec: Spec::Str(5), nullable: false, alt_spelling: false }];
    let e = dataset_schema(&config_of(&cols)).unwrap_err();
    assert!(e.iter().any(|d| d.summary.contains("schema.column[0].name")), "{e:?}");
}

/// Was a bug of the `csv` crate surfacing in dcr's messages, fixed by dcr's own scanner (which
/// counts lines itself): with CRLF line ends, a record's `position().line()` is the line of the
/// record before it, so `"_\r\nbad\r\n"` against a one-column integer schema said "row 1 (line
/// 1)"; the row is on line 2. Upstream: BurntSushi/rust-csv#395 (open; fix proposed in #433).
#[test]
fn crlf_files_report_the_right_line() {
    let cols = vec![ColSpec { name: "_".into(), spec: Spec::Integer(0, 9), nullable: false, alt_spelling: false }];
    let schema = dataset_schema(&config_of(&cols)).unwrap().unwrap();
    let e = check_csv(&b"_\r\nbad\r\n"[..], &schema).unwrap_err();
    assert!(matches!(e, CsvError::Cell { row: 1, line: 2, .. }), "{e}");
    let e = check_csv(&b"_\r\n1\r\n2\r\nbad\r\n"[..], &schema).unwrap_err();
    assert!(matches!(e, CsvError::Cell { row: 3, line: 4, .. }), "{e}");
}

/// Was a bug of csv-core reachable through `check_csv`'s `Read` parameter, fixed by dcr's own
/// scanner (which drops the mark itself, however the first bytes arrive): when the first read
/// returned exactly the 3-byte UTF-8 BOM, csv-core stripped it and took the empty rest for the
/// end of input, so a good file was refused with "the header row is []". Minimal input:
/// `"\u{feff}a\nx\n"` read 3 bytes at a time, schema one string column `a`.
#[test]
fn a_bom_read_on_its_own_keeps_the_header() {
    struct Threes<'a>(&'a [u8]);
    impl Read for Threes<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3);
            self.0.read(&mut buf[..n])
        }
    }
    let cols = vec![ColSpec { name: "a".into(), spec: Spec::Str(5), nullable: false, alt_spelling: false }];
    let schema = dataset_schema(&config_of(&cols)).unwrap().unwrap();
    let data = "\u{feff}a\nx\n".as_bytes();
    assert!(check_csv(data, &schema).is_ok());
    let r = check_csv(Threes(data), &schema);
    assert!(r.is_ok(), "{r:?}");
}
