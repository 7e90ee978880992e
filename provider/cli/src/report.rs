//! What the commands print: a line per check for people, one JSON document with `--json`.

use dcr_attestation::run::{RunCheck, VerifiedRun};
use serde_json::json;

use crate::error::CliError;
use crate::pull::Pulled;
use crate::rehearse::Rehearsed;

/// The outcome of a verification, printed to stdout (success) or stderr (failure).
pub fn verification(result: &Result<VerifiedRun, CliError>, json: bool, extra: serde_json::Value) {
    let failed = match result {
        Err(CliError::Check(f)) => Some(f.check),
        _ => None,
    };
    // Checks run in order: those before the failed one passed.
    let passed: Vec<RunCheck> = match result {
        Ok(_) => RunCheck::ALL.to_vec(),
        Err(_) => match failed {
            Some(f) => RunCheck::ALL.iter().copied().take_while(|c| *c != f).collect(),
            None => Vec::new(),
        },
    };
    if json {
        let checks: Vec<_> = RunCheck::ALL
            .iter()
            .filter(|c| passed.contains(c) || Some(**c) == failed)
            .map(|c| json!({"check": c.name(), "passed": passed.contains(c), "what": c.what()}))
            .collect();
        let mut doc = json!({"verified": result.is_ok(), "checks": checks});
        match result {
            Ok(run) => doc["run"] = serde_json::to_value(run).unwrap_or_default(),
            Err(e) => {
                doc["error"] = json!({"message": e.to_string(), "exit_code": e.exit_code(),
                                      "check": failed.map(RunCheck::name)})
            }
        }
        if let (Some(d), Some(x)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(x.clone());
        }
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    let line = |c: &RunCheck, ok: bool| format!("{} {:<13} {}", if ok { "ok  " } else { "FAIL" }, c.name(), c.what());
    match result {
        Ok(run) => {
            for c in &passed {
                println!("{}", line(c, true));
            }
            let policies: Vec<String> = run.policies.iter().map(|(n, v)| format!("{n} (version {v})")).collect();
            println!("verified: workload {:?}, image {}", run.workload, run.image_digest);
            println!("  held to: {}", policies.join(", "));
            println!("  on: {} / {} / {}", run.claims.hwmodel, run.claims.swname, run.claims.dbgstat);
            println!("  outputs: {}", run.outputs.join(", "));
            if let Some(dir) = extra["directory"].as_str() {
                println!("  saved in: {dir}");
            }
            if run.simulated {
                println!(
                    "note: the token is from dcr's simulated TEE (local backend): it shows the flow, not confidentiality"
                );
            }
        }
        Err(e) => {
            for c in &passed {
                eprintln!("{}", line(c, true));
            }
            if let Some(c) = failed {
                eprintln!("{}", line(&c, false));
            }
            eprintln!("error: {e}");
        }
    }
}

/// What `dcr pull` wrote.
pub fn pulled(result: &Result<Vec<Pulled>, CliError>, json: bool) {
    match (result, json) {
        (Ok(p), true) => println!("{}", serde_json::to_string_pretty(&json!({"pulled": p})).unwrap_or_default()),
        (Ok(p), false) => {
            for f in p {
                println!("{}: {} ({} bytes) from {}", f.input, f.path, f.bytes, f.uri);
            }
        }
        (Err(e), _) => failed(e, json),
    }
}

/// How a rehearsal ended.
pub fn rehearsed(result: &Result<Rehearsed, CliError>, json: bool) {
    match (result, json) {
        (Ok(r), true) => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"passed": r.exit_code == 0, "rehearsal": r})).unwrap_or_default()
        ),
        (Ok(r), false) => {
            if r.exit_code == 0 {
                println!(
                    "rehearsal passed on base image {}: the output rules of {} let out {}",
                    r.base_image_digest,
                    r.policies.join(", "),
                    r.outputs.join(", ")
                );
            } else {
                eprintln!(
                    "rehearsal failed with exit code {}: stage 2 would fail the same way (the launcher's log above says why)",
                    r.exit_code
                );
            }
            if let Some(e) = &r.executed {
                eprintln!("executed notebook: {e}");
            }
        }
        (Err(e), _) => failed(e, json),
    }
}

/// What `dcr runs` found: the runs, and the accesses to their datasets' keys.
#[derive(serde::Serialize)]
pub struct AuditTrail {
    pub runs: Vec<dcr_audit::RunRecord>,
    pub key_accesses: Vec<dcr_audit::KeyAccess>,
    /// Why the key accesses could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

pub fn runs(result: &Result<AuditTrail, CliError>, json: bool) {
    match (result, json) {
        (Ok(trail), true) => println!("{}", serde_json::to_string_pretty(trail).unwrap_or_default()),
        (Ok(trail), false) => {
            for r in &trail.runs {
                let state = match (&r.failed_check, r.verified) {
                    (_, true) => "verified".to_string(),
                    (Some(c), false) => format!("NOT VERIFIED ({c}): {}", r.detail),
                    (None, false) => "not verified".to_string(),
                };
                println!("{}  {}  {}  {state}", r.uri, r.workload, r.image_digest);
                for i in &r.inputs {
                    println!(
                        "    input {}: {} generation {}, policy {} version {}",
                        i.name, i.dataset, i.generation, i.policy, i.policy_version
                    );
                }
            }
            if trail.runs.is_empty() {
                println!("no run found");
            }
            if !trail.key_accesses.is_empty() {
                println!("key accesses:");
            }
            for a in &trail.key_accesses {
                let outcome = if a.granted { "decrypted".to_string() } else { format!("REFUSED: {}", a.status) };
                println!("  {}  {}  {}  {outcome}  ({})", a.time, a.principal, a.key, a.datasets.join(", "));
            }
            if let Some(w) = &trail.warning {
                eprintln!("warning: {w}");
            }
        }
        (Err(e), _) => failed(e, json),
    }
}

/// Where the lab serves; stdout is flushed, since a script waits for this line.
pub fn lab_serving(s: &crate::lab::Serving, json: bool) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
    } else {
        println!("JupyterLab serves the stand-ins in {} (DCR_INPUTS_DIR):", s.inputs);
        println!("  {}", s.url);
        println!("What the notebook writes to DCR_OUTPUTS_DIR lands in {}. Ctrl-C stops the lab.", s.outputs);
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// A command's error, as text on stderr or JSON on stdout.
pub fn failed(e: &CliError, json: bool) {
    if json {
        println!("{}", json!({"error": {"message": e.to_string(), "exit_code": e.exit_code()}}));
    } else {
        eprintln!("error: {e}");
    }
}

/// The exit codes, for `--help`.
pub fn exit_codes_help() -> String {
    let mut s = String::from(
        "Exit codes:\n  0   verified\n  1   could not verify (unreachable cloud, unreadable file)\n  2   usage error\n\
         and one per failed check, named by what must hold:\n",
    );
    for c in RunCheck::ALL {
        s.push_str(&format!("  {:<3} {}: {}\n", c.exit_code(), c.name(), c.what()));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The guide's exit-code table is the one the command uses.
    #[test]
    fn the_guide_lists_every_exit_code() {
        let guide = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guides/verify-a-result.md");
        let text = std::fs::read_to_string(guide).unwrap();
        for c in RunCheck::ALL {
            let row = format!("| {} | {} |", c.exit_code(), c.name());
            assert!(text.contains(&row), "the guide lacks {row:?}");
        }
        assert!(exit_codes_help().contains("17  outputs: every released file"), "{}", exit_codes_help());
    }
}
