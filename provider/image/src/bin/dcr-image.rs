//! `dcr-image`: the image builder's command line, for recipes that run outside Terraform
//! (runtime-image/build.sh turns mmdebstrap's rootfs into the base runtime image with it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use dcr_image::build::{RootfsImage, RuntimeConfig};
use dcr_image::layout::Layout;
use dcr_image::registry::{Destination, docker_config_auth, push_from_layout};

#[derive(Parser)]
#[command(version, about = "Reproducible OCI images for dcr")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Makes a single-layer image from a root file system tarball and stores it in an OCI layout;
    /// prints the image digest.
    FromRootfs {
        #[arg(long)]
        rootfs: PathBuf,
        #[arg(long)]
        layout: PathBuf,
        #[arg(long)]
        tag: String,
        #[arg(long)]
        entrypoint: String,
        /// `KEY=VALUE`, repeatable.
        #[arg(long)]
        env: Vec<String>,
        /// `KEY=VALUE`, repeatable.
        #[arg(long)]
        label: Vec<String>,
        #[arg(long)]
        working_dir: Option<String>,
        /// Recorded in the image history.
        #[arg(long, default_value = "dcr-image from-rootfs")]
        created_by: String,
    },
    /// Pushes the image tagged TAG in an OCI layout to a registry (credentials from the Docker
    /// config); prints the reference pinned by digest.
    Push {
        #[arg(long)]
        layout: PathBuf,
        #[arg(long)]
        tag: String,
        /// `HOST[:PORT]/REPOSITORY[:TAG]`.
        #[arg(long)]
        to: String,
        /// Registry hosts spoken to over plain HTTP (a registry on loopback).
        #[arg(long)]
        plain_http: Vec<String>,
    },
}

fn key_values(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("--{what} {kv:?} is not KEY=VALUE"),
        })
        .collect()
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::FromRootfs { rootfs, layout, tag, entrypoint, env, label, working_dir, created_by } => {
            key_values(&env, "env")?;
            let file = std::fs::File::open(&rootfs).with_context(|| format!("cannot open {}", rootfs.display()))?;
            let layer = dcr_image::layer_from_rootfs(std::io::BufReader::new(file))
                .with_context(|| format!("cannot turn {} into a layer", rootfs.display()))?;
            let runtime =
                RuntimeConfig { entrypoint: vec![entrypoint], env, working_dir, labels: key_values(&label, "label")? };
            let image = RootfsImage::new(layer, &runtime, &created_by);
            let store = Layout::create(&layout)?;
            image.write_to(&store, &tag)?;
            println!("{}", image.digest);
            eprintln!(
                "dcr-image: {} tagged {tag} in {} (layer {} bytes compressed)",
                image.digest,
                layout.display(),
                image.layer.blob.len()
            );
        }
        Command::Push { layout, tag, to, plain_http } => {
            let host = to.split('/').next().unwrap_or_default().to_string();
            let dest = Destination { auth: docker_config_auth(&host)?, reference: to, plain_http };
            let store = Layout::open(&layout)?;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            println!("{}", runtime.block_on(push_from_layout(&store, &tag, &dest))?);
        }
    }
    Ok(())
}
