//! Stage 1's rehearsal (`dcr run`): the notebook run as stage 2 runs it — the same image, run
//! directory, papermill invocation and output rules — on the stand-ins `dcr pull` fetched instead
//! of decrypted data, so a notebook that passes here runs there.
//!
//! It is reached only as `dcr-launcher rehearse`. Confidential Space cannot start that: the base
//! image's launch policy allows no command override, so on Google Cloud the launcher always runs
//! the workload. A rehearsal reads no cloud, holds no credential and releases nothing: what the
//! rules let out is copied to the mounted rehearsal directory, with the executed notebook (which
//! in stage 2 never leaves the TEE, since its tracebacks may quote data; here the data is a
//! stand-in and the traceback is what the analyst needs).

use std::path::Path;

use dcr_attestation::workload::{REHEARSAL_FILE, Rehearsal, is_input_name};

use crate::error::LauncherError;
use crate::settings::Settings;
use crate::{notebook, progress, run};

/// Runs the rehearsal; the number of output files the rules let out.
pub async fn rehearse(s: &Settings) -> Result<usize, LauncherError> {
    progress::start();
    progress::say("rehearsal started (stage 1: stand-ins, nothing is released)");
    let path = s.image_dir.join(REHEARSAL_FILE);
    let spec: Rehearsal = std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| LauncherError::Setup(format!("cannot read the rehearsal {}: {e}", path.display())))?;
    run::prepare_run_dir(s)?;
    let copied = copy_inputs(&s.rehearsal_dir.join("inputs"), &s.inputs_dir())?;
    progress::say(format_args!("inputs: {}", copied.join(", ")));

    progress::say("starting papermill");
    let ran = notebook::run(s, spec.timeout_seconds).await;
    let released = s.rehearsal_dir.join("released");
    let executed = s.work_dir().join("executed.ipynb");
    if executed.is_file() {
        let _ = std::fs::copy(&executed, released.join("executed.ipynb"));
    }
    ran?;
    progress::say("notebook finished");
    let candidates = run::checked_outputs(s, &spec.policies)?;
    for c in &candidates {
        let to = released.join("outputs").join(&c.name);
        let copy = |e: std::io::Error| LauncherError::Setup(format!("cannot copy outputs/{} out: {e}", c.name));
        std::fs::create_dir_all(to.parent().unwrap_or(&released)).map_err(copy)?;
        std::fs::copy(s.outputs_dir().join(&c.name), &to).map_err(copy)?;
    }
    progress::say(format_args!("the output rules let out {} file(s)", candidates.len()));
    Ok(candidates.len())
}

/// Copies the stand-ins (`NAME.csv`, NAME an input name) into the run's inputs directory, where
/// stage 2 decrypts the real data.
fn copy_inputs(from: &Path, to: &Path) -> Result<Vec<String>, LauncherError> {
    let setup = |m: String| LauncherError::Setup(m);
    let entries = std::fs::read_dir(from).map_err(|e| setup(format!("cannot list {}: {e}", from.display())))?;
    let mut names = Vec::new();
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(name) = file.strip_suffix(".csv").filter(|n| is_input_name(n)) else { continue };
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        std::fs::copy(entry.path(), to.join(&file)).map_err(|e| setup(format!("cannot copy input {file}: {e}")))?;
        names.push(name.to_string());
    }
    names.sort();
    if names.is_empty() {
        return Err(setup(format!("no input: {} holds no NAME.csv (dcr pull puts them there)", from.display())));
    }
    Ok(names)
}
