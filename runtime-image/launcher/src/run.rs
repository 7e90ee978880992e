//! The stages of a run, in order. Anything that fails after the output location is reachable
//! leaves a failure report there; outputs are written only after every rule passed, the output
//! manifest after the outputs, and the attestation token (bound to the manifest) last, so a run
//! whose token is present is complete.

use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use dcr_attestation::policy::OutputRules;
use dcr_attestation::workload::Backend;
use dcr_attestation::workload::{
    FAILURE_FORMAT, FAILURE_OBJECT, FailureReport, MANIFEST_FILE, OUTPUT_FORMAT, OUTPUT_MANIFEST_OBJECT, OUTPUTS_DIR,
    OutputFile, OutputManifest, TOKEN_OBJECT, WorkloadManifest, output_nonce,
};
use dcr_gcp::retry::RetryPolicy;
use dcr_gcp::sts::StsClient;
use dcr_gcp::{Endpoints, Transport};

use crate::error::LauncherError;
use crate::release::Release;
use crate::settings::Settings;
use crate::teeserver::{Attestation, REFRESH_AFTER, TeeClient, attested_image_digest};
use crate::{inputs, notebook, progress, propagation, rules};

/// `statfs` magic numbers of the memory-backed file systems.
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

pub async fn run(s: &Settings) -> Result<(), LauncherError> {
    progress::start();
    progress::say("started");
    let manifest = read_manifest(&s.image_dir)?;
    prepare_run_dir(s)?;
    let mut attestation = Attestation::fetch(TeeClient::new(&s.teeserver_socket, &s.token_file)).await?;
    let digest = attested_image_digest(attestation.token())?;
    progress::say(format_args!("workload {:?}, image {digest}", manifest.name));
    let endpoints = endpoints(&manifest, s)?;
    let patience = s.iam_patience.unwrap_or(match manifest.backend {
        Backend::Gcp => propagation::GCP_BUDGET,
        Backend::Local => propagation::LOCAL_BUDGET,
    });
    let anonymous = Transport::anonymous(RetryPolicy::default()).map_err(|e| LauncherError::Setup(e.to_string()))?;
    let sts = StsClient::new(Arc::new(anonymous), &endpoints.sts);
    let mut release = Release::connect(&manifest, &digest, attestation.token(), &sts, &endpoints, patience).await?;
    release.clear(patience).await?;

    let ctx = Ctx { s, manifest: &manifest, digest: &digest, sts: &sts, endpoints: &endpoints, patience };
    let outcome = stages(&ctx, &mut attestation, &mut release).await;
    let _ = std::fs::remove_dir_all(s.inputs_dir());
    if let Err(e) = &outcome {
        let report = FailureReport {
            format: FAILURE_FORMAT.into(),
            workload: manifest.name.clone(),
            image_digest: digest.clone(),
            stage: e.stage().into(),
            message: e.to_string(),
            exit_code: e.exit_code(),
        };
        let bytes = serde_json::to_vec_pretty(&report).expect("json");
        // After a long run the output token may have expired: renew it first (best effort).
        if let Err(w) = release.renew_if_older(REFRESH_AFTER, &mut attestation, &sts).await {
            progress::say(format_args!("could not renew the output token: {w}"));
        }
        match release.put_bytes(FAILURE_OBJECT, bytes, "application/json").await {
            Ok(()) => progress::say(format_args!("failure report written to {}", release.uri(FAILURE_OBJECT))),
            Err(w) => progress::say(format_args!("could not write the failure report: {w}")),
        }
    }
    outcome
}

/// What every stage reads.
struct Ctx<'a> {
    s: &'a Settings,
    manifest: &'a WorkloadManifest,
    digest: &'a str,
    sts: &'a StsClient,
    endpoints: &'a Endpoints,
    patience: std::time::Duration,
}

async fn stages(ctx: &Ctx<'_>, attestation: &mut Attestation, release: &mut Release) -> Result<(), LauncherError> {
    let (s, manifest, digest) = (ctx.s, ctx.manifest, ctx.digest);
    let mut fetched = Vec::new();
    for (name, input) in &manifest.inputs {
        // Inputs fetched after a long while (a slow download before) get a fresh token.
        let token = attestation.refreshed_if_older(REFRESH_AFTER).await?.to_string();
        let f = inputs::fetch(name, input, &token, ctx.sts, ctx.endpoints, &s.inputs_dir(), ctx.patience).await?;
        progress::say(format_args!(
            "input {name:?}: policy {:?} version {} allows it; decrypted",
            input.policy, f.record.policy_version
        ));
        fetched.push(f);
    }

    progress::say("starting papermill");
    notebook::run(s, manifest.timeout_seconds).await?;
    progress::say("notebook finished");

    let policies: Vec<_> = fetched.iter().map(|f| (f.record.policy.clone(), f.rules.clone())).collect();
    let candidates = checked_outputs(s, &policies)?;

    let mut outputs = Vec::new();
    for c in &candidates {
        let path = s.outputs_dir().join(&c.name);
        outputs.push(OutputFile { name: c.name.clone(), size: c.size, sha256: file_sha256(&path)? });
    }
    let output_manifest = OutputManifest {
        format: OUTPUT_FORMAT.into(),
        workload: manifest.name.clone(),
        image_digest: digest.to_string(),
        inputs: fetched.into_iter().map(|f| f.record).collect(),
        outputs,
    };
    // The notebook may have run for up to max_run_seconds: release with a fresh attestation token
    // and a fresh exchange, never with the ones from before the run.
    release.renew_if_older(std::time::Duration::ZERO, attestation, ctx.sts).await?;
    for c in &candidates {
        release.put_file(&format!("{OUTPUTS_DIR}{}", c.name), &s.outputs_dir().join(&c.name)).await?;
    }
    let manifest_bytes = output_manifest.to_bytes();
    let nonce = output_nonce(&manifest_bytes);
    release.put_bytes(OUTPUT_MANIFEST_OBJECT, manifest_bytes, "application/json").await?;
    let bound = attestation.custom_token(&manifest.run_prefix(digest), &[nonce]).await?;
    release.put_bytes(TOKEN_OBJECT, bound.into_bytes(), "application/jwt").await?;
    progress::say(format_args!("released {} file(s) to {}", candidates.len(), release.uri("")));
    Ok(())
}

/// The output files, when every one passes every policy's output rules (the rehearsal checks
/// them with this same function).
pub(crate) fn checked_outputs(
    s: &Settings,
    policies: &[(String, OutputRules)],
) -> Result<Vec<rules::Candidate>, LauncherError> {
    let candidates = rules::collect(&s.outputs_dir()).map_err(LauncherError::OutputRules)?;
    let violations = rules::violations(&candidates, policies);
    if !violations.is_empty() {
        return Err(LauncherError::OutputRules(format!("nothing was released: {}", violations.join("; "))));
    }
    Ok(candidates)
}

fn read_manifest(image_dir: &Path) -> Result<WorkloadManifest, LauncherError> {
    let path = image_dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|e| {
        LauncherError::Setup(format!(
            "cannot read the workload manifest {}: {e}. Is this a dcr workload image?",
            path.display()
        ))
    })?;
    WorkloadManifest::from_bytes(&bytes).map_err(|e| LauncherError::Setup(format!("{}: {e}", path.display())))
}

/// The run directory must be memory-backed: decrypted data never touches a disk.
pub(crate) fn prepare_run_dir(s: &Settings) -> Result<(), LauncherError> {
    let dir = &s.run_dir;
    let setup = |m: String| LauncherError::Setup(m);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| setup(format!("cannot create {}: {e}", dir.display())))?;
    let fs_type = statfs_type(dir).map_err(|e| setup(format!("cannot inspect {}: {e}", dir.display())))?;
    if fs_type != TMPFS_MAGIC && fs_type != RAMFS_MAGIC {
        return Err(setup(format!(
            "{} is not memory-backed (file system type {fs_type:#x}); refusing to decrypt data onto a disk. \
             Mount a tmpfs there (tee-mount on Confidential Space)",
            dir.display()
        )));
    }
    for sub in [s.inputs_dir(), s.outputs_dir(), s.work_dir()] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&sub)
            .map_err(|e| setup(format!("cannot create {} (it must not exist yet): {e}", sub.display())))?;
    }
    Ok(())
}

fn statfs_type(dir: &Path) -> std::io::Result<i64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `buf` is a plain struct statfs fills in.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(buf.f_type as i64)
}

fn endpoints(manifest: &WorkloadManifest, s: &Settings) -> Result<Endpoints, LauncherError> {
    match manifest.backend {
        Backend::Gcp => Ok(Endpoints::google()),
        Backend::Local => s.local_cloud.as_deref().map(Endpoints::local).ok_or_else(|| {
            LauncherError::Setup(
                "a local workload needs DCR_LOCAL_CLOUD (the local cloud's URL) in its environment".into(),
            )
        }),
    }
}

fn file_sha256(path: &Path) -> Result<String, LauncherError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| LauncherError::OutputRules(format!("cannot read {}: {e}", path.display())))?;
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n =
            f.read(&mut buf).map_err(|e| LauncherError::OutputRules(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}
