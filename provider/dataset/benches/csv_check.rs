//! `cargo bench -p dcr-dataset --bench csv_check [MIB]`: the schema check of a CSV held
//! in memory (no file system), beside SHA-256 alone over the same bytes, on one thread. The check
//! hashes as it reads, so the difference is what splitting and checking cost. The file has the
//! shape of `tests/bench/dataset-upload.sh`'s: an id, an integer, a decimal and a category.

use std::time::Instant;

use dcr_dataset::schema::{Column, ColumnKind};
use dcr_dataset::{DatasetSchema, check_csv};

fn main() {
    let mib: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(256);
    let col = |name: &str, kind: ColumnKind| Column::new(name, kind, false);
    let schema = DatasetSchema {
        columns: vec![
            col("id", ColumnKind::Integer { min: 0, max: 1_000_000_000 }),
            col("count", ColumnKind::Integer { min: 0, max: 1000 }),
            col("score", ColumnKind::Float { min: 0.0, max: 100.0 }),
            col("kind", ColumnKind::Category { values: ["a", "b", "c", "d"].map(String::from).to_vec() }),
        ],
    };

    // A deterministic block of rows (a small LCG), repeated to the size asked for.
    let mut state = 1u64;
    let mut next = |m: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % m
    };
    let mut block = String::new();
    for i in 0..20_000 {
        let kind = ["a", "b", "c", "d"][next(4) as usize];
        block.push_str(&format!("{i},{},{:.4},{kind}\n", next(1001), next(1_000_000) as f64 / 10_000.0));
    }
    let mut data = b"id,count,score,kind\n".to_vec();
    while data.len() < mib << 20 {
        data.extend_from_slice(block.as_bytes());
    }
    let mb = data.len() as f64 / 1e6;

    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let sha = best(&mut || {
        std::hint::black_box(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &data));
    });
    let mut rows = 0;
    let check = best(&mut || {
        rows = check_csv(&data[..], &schema).expect("the bench file conforms").rows;
    });
    println!("{mb:.0} MB, {rows} rows (best of 3, one thread)");
    println!("sha256 alone      {:7.3} s {:8.1} MB/s", sha, mb / sha);
    println!("check_csv         {:7.3} s {:8.1} MB/s  ({:.1} ns/row)", check, mb / check, check * 1e9 / rows as f64);
    println!("  of which split + check ≈ {:.1} ns/row", (check - sha) * 1e9 / rows as f64);
}
