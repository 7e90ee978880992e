//! `terraform-provider-dcr`: launched by Terraform it serves the plugin protocol; run by hand it
//! offers a few maintenance commands (docs generation, a standalone local cloud for tests).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "The dcr Terraform provider. Terraform starts it; the subcommands are for maintainers.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Renders docs/ from the provider's schemas (or, with --check, fails when docs/ is stale).
    Docs {
        #[arg(long, default_value = "docs")]
        out: PathBuf,
        #[arg(long, default_value = "examples")]
        examples: PathBuf,
        #[arg(long)]
        check: bool,
    },
    /// Runs the embedded local cloud on its own, printing its endpoint and an admin token as JSON,
    /// until stdin closes.
    LocalCloud {
        #[arg(long, default_value = ".dcr")]
        state_dir: PathBuf,
        #[arg(long, default_value = "dcr-local")]
        project: String,
        /// Also mint a token for this principal (e.g. user:bob@example.com); repeatable.
        #[arg(long)]
        token_for: Vec<String>,
        /// Lifetime of the federated tokens STS issues, in seconds (default 3600, as Google's).
        #[arg(long)]
        federated_token_seconds: Option<u64>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        None => {
            tfplugin6::logging::init();
            runtime.block_on(async {
                // Terraform handles Ctrl-C and tells us to stop over gRPC; do not die on SIGINT.
                tokio::spawn(async {
                    loop {
                        if tokio::signal::ctrl_c().await.is_err() {
                            break;
                        }
                    }
                });
                tfplugin6::serve(Arc::new(terraform_provider_dcr::DcrProvider::new())).await
            })?;
            Ok(())
        }
        Some(Command::Docs { out, examples, check }) => {
            if check {
                let stale = terraform_provider_dcr::docs::stale(&out, &examples);
                if !stale.is_empty() {
                    bail!(
                        "docs are stale: {}. Run `cargo run -p terraform-provider-dcr -- docs` and commit the result.",
                        stale.join(", ")
                    );
                }
                println!("docs are up to date");
                return Ok(());
            }
            for (rel, body) in terraform_provider_dcr::docs::render(&examples) {
                let path = out.join(&rel);
                std::fs::create_dir_all(path.parent().expect("docs path has a parent"))?;
                std::fs::write(&path, body).with_context(|| format!("writing {}", path.display()))?;
                println!("wrote {}", path.display());
            }
            Ok(())
        }
        Some(Command::LocalCloud { state_dir, project, token_for, federated_token_seconds }) => runtime.block_on(async {
            let cloud = dcr_local_cloud::LocalCloud::start(dcr_local_cloud::LocalCloudConfig {
                state_dir,
                project,
                admin_principal: dcr_local_cloud::default_admin_principal(),
                request_log: std::env::var_os(terraform_provider_dcr::clients::REQUEST_LOG_ENV).map(Into::into),
                federated_token_ttl: federated_token_seconds.map(std::time::Duration::from_secs),
            })
            .await?;
            let mut tokens = serde_json::Map::new();
            for p in &token_for {
                tokens.insert(p.clone(), cloud.mint_token(p, std::time::Duration::from_secs(3600))?.into());
            }
            println!(
                "{}",
                serde_json::json!({"endpoint": cloud.endpoint(), "admin_token": cloud.admin_token(), "tokens": tokens})
            );
            // Serve until whoever started us closes our stdin.
            tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await??;
            cloud.shutdown().await;
            Ok(())
        }),
    }
}
