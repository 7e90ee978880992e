use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use dcr_cli::cloud::{Backend, Cloud};
use dcr_cli::pull::Wanted;
use dcr_cli::rehearse::Rehearse;
use dcr_cli::report;
use dcr_cli::verify::{Expectations, RunSource};
use serde_json::json;

/// dcr: confidential data clean rooms, for the people around the Terraform provider.
#[derive(Parser)]
#[command(name = "dcr", version)]
struct Cli {
    /// The local cloud's state directory, as the provider's `local { state_dir }`.
    #[arg(long, global = true, env = "DCR_STATE_DIR", default_value = ".dcr")]
    state_dir: PathBuf,
    /// The local cloud's project, as the provider's `local { project }`.
    #[arg(long, global = true, default_value = "dcr-local")]
    project: String,
    /// Read Google Cloud (Application Default Credentials) instead of the local cloud.
    #[arg(long, global = true)]
    gcp: bool,
    /// Print one JSON document on stdout instead of text, and no progress.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Download datasets' stage-1 stand-ins into a directory, laid out as the launcher lays out a
    /// workload's inputs (INPUT.csv), to explore and test a notebook before stage 2.
    Pull {
        /// A dcr_dataset id (BUCKET/NAME), or INPUT=BUCKET/NAME to name the file as the workload's
        /// input names it.
        #[arg(required = true, value_name = "DATASET")]
        datasets: Vec<String>,
        /// Where the files go (created if missing).
        #[arg(long)]
        to: PathBuf,
    },
    /// Rehearse a notebook on stand-ins as stage 2 will run it: the base runtime image stage 2
    /// builds on, runc without network, the launcher's run directory, papermill invocation and
    /// output rules. Exits with the launcher's exit code: 0, or the one stage 2 would fail with
    /// (5 notebook, 6 timeout, 7 output rules; docs/guides/launcher.md).
    Run {
        /// The notebook (.ipynb).
        notebook: PathBuf,
        /// The stand-ins, as INPUT.csv (dcr pull fills it).
        #[arg(long, value_name = "DIR")]
        inputs: PathBuf,
        /// The workload's parameters, a JSON object (what `parameters = jsonencode({…})` gives).
        #[arg(long, value_name = "JSON")]
        parameters: Option<String>,
        /// A policy that will hold the run, for its output rules: a file, or its gs:// policy_uri.
        /// Repeatable; at least one.
        #[arg(long = "policy", value_name = "FILE|gs://…")]
        policies: Vec<String>,
        /// Where the files the output rules let out go (created if missing).
        #[arg(long, value_name = "DIR", default_value = "outputs")]
        outputs: PathBuf,
        /// Where to save the executed notebook (with its tracebacks: the data is a stand-in).
        #[arg(long, value_name = "FILE")]
        executed: Option<PathBuf>,
        /// The stage-2 time limit (the workload's max_run_seconds).
        #[arg(long, default_value_t = 3600)]
        timeout_seconds: u64,
        /// The base runtime image, oci:LAYOUT_DIR:TAG (default: the one runtime-image/build.sh
        /// builds, as the provider's).
        #[arg(long, value_name = "oci:LAYOUT:TAG")]
        base_image: Option<String>,
    },
    /// Explore the stand-ins in JupyterLab (pinned; the runtime image's pandas and numpy), with
    /// DCR_INPUTS_DIR and DCR_OUTPUTS_DIR set as in the TEE. Serves on 127.0.0.1 with a random
    /// token until interrupted; the first run installs JupyterLab into dcr's cache (from PyPI).
    Lab {
        /// The stand-ins, as INPUT.csv (dcr pull fills it).
        #[arg(long, value_name = "DIR")]
        inputs: PathBuf,
        /// DCR_OUTPUTS_DIR: what the notebook writes for release (created if missing).
        #[arg(long, value_name = "DIR", default_value = "outputs")]
        outputs: PathBuf,
        /// The directory the lab opens and saves notebooks in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        notebook_dir: PathBuf,
        /// The port on 127.0.0.1 (default: any free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// The CPython 3.11 to install JupyterLab with.
        #[arg(long, env = "DCR_PYTHON", default_value = "python3")]
        python: PathBuf,
    },
    /// List every run released under an output location, each verified as `dcr verify` does,
    /// and the runs that released nothing with the stage they failed at.
    Runs {
        /// gs://BUCKET/ or gs://BUCKET/PREFIX/ (a dcr_workload's output bucket or prefix).
        location: String,
        /// Only runs with an input under this policy.
        #[arg(long)]
        policy: Option<String>,
    },
    /// Verify a released run (a directory, or its gs:// location): the token's signature and
    /// issuer, its nonce against the output manifest, the policy documents the inputs were held
    /// to, the attested image digest, the hardware, and every released file's hash.
    #[command(after_long_help = report::exit_codes_help())]
    Verify {
        /// A run directory (output-manifest.json, attestation-token.jwt, outputs/) or the run's
        /// gs:// location (a dcr_workload's output_uri).
        run: String,
        #[command(flatten)]
        expect: ExpectArgs,
        #[command(flatten)]
        rebuild: RebuildArgs,
    },
    /// Download a run's released files, manifest and token into a directory, and verify them.
    /// Nothing lands in the directory unless every check passes.
    #[command(after_long_help = report::exit_codes_help())]
    Results {
        /// The run's gs:// location (a dcr_workload's output_uri).
        output_uri: String,
        /// Where the files go (created if missing; an earlier download's files are replaced).
        #[arg(long)]
        to: PathBuf,
        #[command(flatten)]
        expect: ExpectArgs,
    },
}

#[derive(Args)]
struct ExpectArgs {
    /// A policy document (policy.json) to hold the run to; repeat for several. Inputs whose
    /// policy is not given are checked against the document at the policy's location.
    #[arg(long = "policy", value_name = "FILE")]
    policies: Vec<PathBuf>,
    /// A JWK set to verify the token's signature with, instead of the issuer's published keys.
    #[arg(long, value_name = "FILE")]
    jwks: Option<PathBuf>,
    /// The issuer the token must come from (default: the policies' issuer).
    #[arg(long)]
    issuer: Option<String>,
    /// An image digest you pin: the attested one must be among yours too. Repeatable.
    #[arg(long = "image-digest", value_name = "sha256:…")]
    image_digests: Vec<String>,
    /// Require confidential hardware and a production image even where the policies do not.
    #[arg(long)]
    require_confidential_hardware: bool,
}

/// Rebuilding the image to pin its digest.
#[derive(Args)]
struct RebuildArgs {
    /// Rebuild the workload image from this notebook (with --workload-manifest) and require the
    /// attested digest to be the rebuilt one.
    #[arg(long, value_name = "NOTEBOOK", requires = "workload_manifest")]
    notebook: Option<PathBuf>,
    /// The workload manifest the image was built with (`data "dcr_image_digest"`'s `manifest`).
    #[arg(long, value_name = "FILE", requires = "notebook")]
    workload_manifest: Option<PathBuf>,
    /// The workload's parameters, exactly as given to it (`jsonencode({…})` output).
    #[arg(long, value_name = "JSON", default_value = "{}", requires = "notebook")]
    parameters: String,
    /// The base runtime image, oci:LAYOUT_DIR:TAG (default: the one runtime-image/build.sh builds).
    #[arg(long, value_name = "oci:LAYOUT:TAG", requires = "notebook")]
    base_image: Option<String>,
}

impl RebuildArgs {
    /// The rebuilt image's digest, when a notebook is given: one more pin.
    fn digest(self, json: bool) -> Result<Option<String>, dcr_cli::CliError> {
        let (Some(notebook), Some(workload_manifest)) = (self.notebook, self.workload_manifest) else {
            return Ok(None);
        };
        let r = dcr_cli::rebuild::Rebuild {
            notebook,
            workload_manifest,
            parameters: self.parameters,
            base_image: self.base_image.unwrap_or_else(dcr_image::build::default_base_image),
        };
        let digest = dcr_cli::rebuild::image_digest(&r)?;
        if !json {
            eprintln!("rebuilt the workload image from {}: {digest}", r.notebook.display());
        }
        Ok(Some(digest))
    }
}

impl ExpectArgs {
    fn expectations(self) -> Expectations {
        Expectations {
            policy_files: self.policies,
            jwks_file: self.jwks,
            issuer: self.issuer,
            image_digests: self.image_digests,
            require_confidential_hardware: self.require_confidential_hardware,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(1);
        }
    };
    std::process::exit(runtime.block_on(run(cli)));
}

async fn run(cli: Cli) -> i32 {
    let backend =
        if cli.gcp { Backend::Gcp } else { Backend::Local { state_dir: cli.state_dir, project: cli.project } };
    let cloud = Cloud::new(backend);
    let json = cli.json;
    let (result, extra) = match cli.command {
        Command::Pull { datasets, to } => return pull(&cloud, &datasets, &to, json).await,
        Command::Runs { location, policy } => {
            let result = audit_trail(&cloud, &location, policy.as_deref()).await;
            report::runs(&result, json);
            return result.map_or_else(|e| e.exit_code(), |_| 0);
        }
        Command::Lab { inputs, outputs, notebook_dir, port, python } => {
            let l = dcr_cli::lab::Lab { inputs, outputs, notebook_dir, port, python, quiet: json };
            let result = dcr_cli::lab::lab(&l, |serving| report::lab_serving(serving, json)).await;
            if let Err(e) = &result {
                report::failed(e, json);
            }
            return result.map_or_else(|e| e.exit_code(), |_| 0);
        }
        Command::Run { notebook, inputs, parameters, policies, outputs, executed, timeout_seconds, base_image } => {
            let r = Rehearse {
                notebook,
                inputs,
                parameters,
                policies,
                outputs,
                executed,
                timeout_seconds,
                base_image: base_image.unwrap_or_else(dcr_image::build::default_base_image),
            };
            let result = dcr_cli::rehearse::rehearse(&cloud, &r).await;
            report::rehearsed(&result, json);
            return result.map_or_else(|e| e.exit_code(), |r| r.exit_code);
        }
        Command::Verify { run, expect, rebuild } => {
            let mut expect = expect.expectations();
            match rebuild.digest(json) {
                Ok(rebuilt) => expect.image_digests.extend(rebuilt),
                Err(e) => {
                    report::failed(&e, json);
                    return e.exit_code();
                }
            }
            let source = RunSource::parse(&run);
            (dcr_cli::verify::verify(&cloud, &source, &expect, json).await, json!({"source": run}))
        }
        Command::Results { output_uri, to, expect } => {
            let r = dcr_cli::verify::results(&cloud, &output_uri, &to, &expect.expectations(), json).await;
            (r, json!({"source": output_uri, "directory": to.display().to_string()}))
        }
    };
    report::verification(&result, json, extra);
    result.map_or_else(|e| e.exit_code(), |_| 0)
}

async fn pull(cloud: &Cloud, datasets: &[String], to: &std::path::Path, json: bool) -> i32 {
    let result = match datasets.iter().map(|d| Wanted::parse(d)).collect::<Result<Vec<_>, _>>() {
        Ok(wanted) => dcr_cli::pull::pull(cloud, &wanted, to, json).await,
        Err(e) => Err(e),
    };
    report::pulled(&result, json);
    result.map_or_else(|e| e.exit_code(), |_| 0)
}

/// The runs under `location` and every use of their datasets' keys. Key accesses that cannot be
/// read (no audit log access) leave the runs listed, with a warning saying why.
async fn audit_trail(
    cloud: &Cloud,
    location: &str,
    policy: Option<&str>,
) -> Result<report::AuditTrail, dcr_cli::CliError> {
    let unavailable = |e: dcr_audit::AuditError| dcr_cli::CliError::Unavailable(e.to_string());
    let storage = cloud.storage().await?;
    let runs = dcr_audit::list_runs(storage, location, cloud, policy).await.map_err(unavailable)?;
    let (key_accesses, warning) = match dcr_audit::key_accesses(storage, cloud.logging().await?, &runs).await {
        Ok(a) => (a, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    Ok(report::AuditTrail { runs, key_accesses, warning })
}
