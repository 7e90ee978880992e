//! `cargo run --release -p dcr-synth --example standin_bench -- ROWS COLUMNS [FILE]`: writes a
//! source CSV of ROWS rows and COLUMNS columns (integers, floats, categories, a nullable column,
//! with correlations) to FILE (default /tmp/dcr-synth-source.csv) unless it exists with that
//! shape, then times a DP-synthetic stand-in of it (ε = 1, δ = 1e-9) streamed from the file.
//! Prints one JSON line; run it under /usr/bin/time -v for the peak RSS.

use std::io::{BufWriter, Write};
use std::time::Instant;

use dcr_dataset::DatasetSchema;
use dcr_dataset::schema::{Column, ColumnKind};
use dcr_synth::standin::{Settings, dp_synthetic_csv};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let columns: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(30);
    let path = args.get(3).cloned().unwrap_or_else(|| format!("/tmp/dcr-synth-source-{rows}x{columns}.csv"));
    let kind = |i: usize| match i % 3 {
        0 => ColumnKind::Integer { min: 0, max: 1000 },
        1 => ColumnKind::Float { min: 0.0, max: 100.0 },
        _ => ColumnKind::Category { values: (0..12).map(|v| format!("c{v}")).collect() },
    };
    let schema =
        DatasetSchema { columns: (0..columns).map(|i| Column::new(&format!("col{i}"), kind(i), i % 7 == 6)).collect() };
    if !std::path::Path::new(&path).exists() {
        let mut w = BufWriter::new(std::fs::File::create(&path).expect("source file"));
        writeln!(w, "{}", schema.names().join(",")).unwrap();
        let mut s = 1u64;
        let mut line = String::new();
        for _ in 0..rows {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let base = s >> 40; // shared by every column: correlations to find
            line.clear();
            for (i, c) in schema.columns.iter().enumerate() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = (s >> 33) % 100;
                if i > 0 {
                    line.push(',');
                }
                if c.nullable && noise < 5 {
                    continue;
                }
                match &c.kind {
                    ColumnKind::Integer { .. } => line.push_str(&((base + noise * 3) % 1001).to_string()),
                    ColumnKind::Float { .. } => {
                        line.push_str(&format!("{:.2}", ((base % 100) as f64 * 0.7 + noise as f64 * 0.3)))
                    }
                    ColumnKind::Category { values } => line.push_str(&values[((base / 7 + noise / 50) % 12) as usize]),
                    ColumnKind::String { .. } => {}
                }
            }
            writeln!(w, "{line}").unwrap();
        }
        w.flush().unwrap();
    }
    let start = Instant::now();
    let source = std::io::BufReader::new(std::fs::File::open(&path).expect("source"));
    let settings =
        Settings { epsilon: 1.0, delta: 1e-9, bins: None, rows: None, max_rows_per_unit: 1, unit_column: None };
    let release = dp_synthetic_csv(&schema, source, &settings, std::io::sink()).expect("stand-in");
    println!(
        "{{\"rows\": {rows}, \"columns\": {columns}, \"seconds\": {:.2}, \"synthetic_rows\": {}, \"epsilon_spent\": {:.4}}}",
        start.elapsed().as_secs_f64(),
        release.rows,
        release.epsilon
    );
}
