//! `dcr run`: stage 1's rehearsal of a notebook. It runs in the base runtime image stage 2 builds
//! on (same digest), in runc with no network, started as `dcr-launcher rehearse`: the launcher
//! prepares the same memory-backed run directory, copies the stand-ins where stage 2 decrypts the
//! data, runs papermill as stage 2 does and applies the same output rules with the same code. A
//! notebook that fails here fails there, with the same stage, message and exit code.

use std::path::{Path, PathBuf};

use dcr_attestation::policy::PolicyDocument;
use dcr_attestation::workload::{NOTEBOOK_FILE, PARAMETERS_FILE, REHEARSAL_DIR, REHEARSAL_FILE, Rehearsal};
use dcr_image::build::{BaseImage, parse_base_reference};
use dcr_local_cloud::isolated::{Bind, Isolated};

use crate::cloud::Cloud;
use crate::error::{CliError, unavailable};

/// What to rehearse.
pub struct Rehearse {
    pub notebook: PathBuf,
    pub inputs: PathBuf,
    /// The workload's `parameters` (a JSON object), as `jsonencode` gives them.
    pub parameters: Option<String>,
    /// Policy documents, as files or gs:// URIs (a `dcr_policy`'s `policy_uri`).
    pub policies: Vec<String>,
    pub outputs: PathBuf,
    pub executed: Option<PathBuf>,
    pub timeout_seconds: u64,
    /// `oci:LAYOUT:TAG`.
    pub base_image: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Rehearsed {
    /// The launcher's exit code: 0, or the stage-2 exit code of the stage that failed.
    pub exit_code: i32,
    pub base_image_digest: String,
    pub policies: Vec<String>,
    /// What the output rules let out, by name under `outputs`.
    pub outputs: Vec<String>,
    pub executed: Option<String>,
}

/// Runs the rehearsal. A failed notebook or output rule is an `Ok` with the launcher's exit code:
/// it is the answer the analyst asked for, not an error of the command.
pub async fn rehearse(cloud: &Cloud, r: &Rehearse) -> Result<Rehearsed, CliError> {
    let notebook = std::fs::read(&r.notebook)
        .map_err(|e| CliError::Usage(format!("cannot read the notebook {}: {e}", r.notebook.display())))?;
    if serde_json::from_slice::<serde_json::Value>(&notebook).map(|v| v.get("cells").is_none()).unwrap_or(true) {
        return Err(CliError::Usage(format!("{} is not a Jupyter notebook", r.notebook.display())));
    }
    let parameters = r.parameters.clone().unwrap_or_else(|| "{}".into());
    if !serde_json::from_str::<serde_json::Value>(&parameters).is_ok_and(|v| v.is_object()) {
        return Err(CliError::Usage("--parameters must be a JSON object, as jsonencode({ … }) gives".into()));
    }
    if !r.inputs.is_dir() {
        return Err(CliError::Usage(format!(
            "--inputs {} is not a directory (dcr pull fills one)",
            r.inputs.display()
        )));
    }
    let policies = read_policies(cloud, &r.policies).await?;
    let (layout, tag) = parse_base_reference(&r.base_image)
        .ok_or_else(|| CliError::Usage(format!("--base-image {:?} is not oci:LAYOUT_DIR:TAG", r.base_image)))?;
    let base = BaseImage::from_layout(&layout, Some(&tag)).map_err(|e| {
        unavailable(format!("cannot read the base image {}: {e} (runtime-image/build.sh builds it)", r.base_image))
    })?;

    let staging = crate::scratch::private_dir("dcr-run-", None)?;
    let (image_dir, released) = (staging.path().join("image"), staging.path().join("released"));
    let write =
        |p: PathBuf, bytes: &[u8]| std::fs::write(&p, bytes).map_err(|e| unavailable(format!("{}: {e}", p.display())));
    for d in [&image_dir, &released] {
        std::fs::create_dir_all(d).map_err(|e| unavailable(format!("{}: {e}", d.display())))?;
    }
    write(image_dir.join(NOTEBOOK_FILE), &notebook)?;
    write(image_dir.join(PARAMETERS_FILE), parameters.as_bytes())?;
    let spec = Rehearsal {
        timeout_seconds: r.timeout_seconds,
        policies: policies.iter().map(|p| (p.name.clone(), p.output.clone())).collect(),
    };
    write(image_dir.join(REHEARSAL_FILE), &serde_json::to_vec_pretty(&spec).expect("json"))?;
    let inputs = std::path::absolute(&r.inputs).unwrap_or_else(|_| r.inputs.clone());
    let what = Isolated {
        args: vec!["rehearse".into()],
        binds: vec![
            Bind {
                source: image_dir,
                destination: format!("/{}", dcr_attestation::workload::IMAGE_DIR),
                read_only: true,
            },
            Bind { source: inputs, destination: format!("{REHEARSAL_DIR}/inputs"), read_only: true },
            Bind { source: released.clone(), destination: format!("{REHEARSAL_DIR}/released"), read_only: false },
        ],
        tmpfs: vec!["/run/dcr".into()],
        hostname: "dcr-rehearsal".into(),
    };
    let exit_code = dcr_local_cloud::isolated::run(&base, &what, &staging.path().join("work"), &rootfs_cache())
        .await
        .map_err(|e| unavailable(format!("cannot run the rehearsal: {e}")))?;

    let executed = match (&r.executed, released.join("executed.ipynb")) {
        (Some(to), from) if from.is_file() => {
            std::fs::copy(&from, to).map_err(|e| unavailable(format!("cannot write {}: {e}", to.display())))?;
            Some(to.display().to_string())
        }
        _ => None,
    };
    let mut outputs = Vec::new();
    if exit_code == 0 {
        move_outputs(&released.join("outputs"), &r.outputs, "", &mut outputs)?;
    }
    outputs.sort();
    Ok(Rehearsed {
        exit_code,
        base_image_digest: base.digest,
        policies: policies.iter().map(|p| format!("{} (version {})", p.name, p.version)).collect(),
        outputs,
        executed,
    })
}

async fn read_policies(cloud: &Cloud, given: &[String]) -> Result<Vec<PolicyDocument>, CliError> {
    if given.is_empty() {
        return Err(CliError::Usage(
            "give the policies that will hold the run: --policy gs://…/policy.json (a dcr_policy's policy_uri) or --policy policy.json"
                .into(),
        ));
    }
    let mut docs = Vec::new();
    for p in given {
        let bytes = if p.starts_with("gs://") {
            cloud.read(p).await?
        } else {
            std::fs::read(p).map_err(|e| unavailable(format!("cannot read policy {p}: {e}")))?
        };
        docs.push(PolicyDocument::from_bytes(&bytes).map_err(|e| CliError::Usage(format!("policy {p}: {e}")))?);
    }
    Ok(docs)
}

/// Unpacked base layers, kept between rehearsals.
fn rootfs_cache() -> PathBuf {
    dcr_image::build::cache_dir().join("rehearsal/rootfs")
}

fn move_outputs(from: &Path, to: &Path, prefix: &str, names: &mut Vec<String>) -> Result<(), CliError> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    std::fs::create_dir_all(to).map_err(|e| unavailable(format!("cannot create {}: {e}", to.display())))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            move_outputs(&e.path(), &to.join(&name), &format!("{prefix}{name}/"), names)?;
        } else {
            std::fs::copy(e.path(), to.join(&name))
                .map_err(|err| unavailable(format!("cannot write {}: {err}", to.join(&name).display())))?;
            names.push(format!("{prefix}{name}"));
        }
    }
    Ok(())
}
