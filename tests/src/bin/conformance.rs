//! Checks every request log in a directory (one JSONL file per provider process, written by the
//! local cloud during the test suite) against Google's discovery documents. Fails on any violation,
//! and on an empty directory: a check that saw nothing proves nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: conformance DIR_OF_REQUEST_LOGS");
        return ExitCode::from(2);
    };
    let discovery = dcr_e2e::conformance::discovery_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut total = 0usize;
    let mut by_method: BTreeMap<String, usize> = BTreeMap::new();
    let mut violations = 0usize;
    for f in &files {
        let report = dcr_e2e::conformance::check_log(f, &discovery)
            .unwrap_or_else(|e| panic!("cannot check {}: {e}", f.display()));
        total += report.requests;
        for (m, n) in report.by_method {
            *by_method.entry(m).or_default() += n;
        }
        for v in &report.violations {
            eprintln!("{}: {v}", f.display());
        }
        violations += report.violations.len();
    }
    for (m, n) in &by_method {
        println!("{n:>6}  {m}");
    }
    println!(
        "{} request logs, {total} requests, {} API methods, {violations} violations",
        files.len(),
        by_method.len()
    );
    if total == 0 {
        eprintln!("no requests were logged: the conformance check saw nothing");
        return ExitCode::FAILURE;
    }
    if violations > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
