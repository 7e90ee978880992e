//! Running an image's entrypoint offline in runc: what `dcr run` rehearses a notebook in. The root
//! file system is prepared as a simulated VM's (the base layers unpacked once into a cache, the
//! run's writes in an overlay of its own) and the container has a simulated VM's settings, but its
//! network namespace is new and empty (a loopback that is down): no local cloud, no TEE, no
//! network at all.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use dcr_image::build::BaseImage;
use serde_json::Value;

use crate::launch_spec::{Container, container_spec, private_tmpfs};
use crate::rootfs::RunRoot;

/// A host directory in the container.
#[derive(Clone, Debug)]
pub struct Bind {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// What to run: the image's entrypoint with `args` after it, its environment and working
/// directory, with `binds` and memory-backed `tmpfs` directories mounted.
#[derive(Clone, Debug)]
pub struct Isolated {
    pub args: Vec<String>,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<String>,
    pub hostname: String,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Runs `what` in `image` and returns the entrypoint's exit code. `work` (created, private) holds
/// the bundle and runc's state, and is emptied after; `cache` keeps unpacked base layers between
/// runs. The container's stdout and stderr both go to this process's stderr (it is a log).
pub async fn run(image: &BaseImage, what: &Isolated, work: &Path, cache: &Path) -> Result<i32, String> {
    let config = &image.config["config"];
    let mut args = strings(&config["Entrypoint"]);
    args.extend(what.args.iter().cloned());
    args.extend(if what.args.is_empty() { strings(&config["Cmd"]) } else { Vec::new() });
    if args.is_empty() {
        return Err("the image has no entrypoint and nothing to run was given".into());
    }
    let env = strings(&config["Env"]);
    let cwd = config["WorkingDir"].as_str().filter(|d| !d.is_empty()).unwrap_or("/").to_string();

    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(work)
        .map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let bundle = work.join("bundle");
    crate::rootfs::reclaim(&bundle);
    let (layout, manifest, b, c) = (image.layout.clone(), image.manifest.clone(), bundle.clone(), cache.to_path_buf());
    let root = tokio::task::spawn_blocking(move || RunRoot::prepare(&layout, &manifest, &b, &c))
        .await
        .map_err(|e| e.to_string())??;
    let rootfs = root.path();
    let mut mounts: Vec<Value> = what.tmpfs.iter().map(|d| private_tmpfs(d, None)).collect();
    for b in &what.binds {
        let mut options = vec!["rbind", "nosuid", "nodev"];
        if b.read_only {
            options.push("ro");
        }
        mounts.push(
            serde_json::json!({"destination": b.destination, "type": "bind", "source": b.source, "options": options}),
        );
    }
    let spec = container_spec(&Container {
        args: &args,
        env: &env,
        cwd: &cwd,
        rootfs: &rootfs,
        hostname: &what.hostname,
        mounts,
        network: None,
    });
    std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&spec).expect("json"))
        .map_err(|e| format!("cannot write the runtime spec: {e}"))?;

    let id = format!("dcr-run-{}", std::process::id());
    let runc = |args: &[&str]| {
        let mut c = tokio::process::Command::new("runc");
        c.arg("--root").arg(work.join("runc")).args(args);
        c
    };
    let mut cmd = runc(&["run", "--bundle"]);
    cmd.arg(&bundle).arg(&id).stdin(Stdio::null()).stdout(Stdio::from(std::io::stderr())).kill_on_drop(true);
    let status = cmd.status().await.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "runc is not installed: install Debian's runc package".to_string(),
        _ => format!("cannot start runc: {e}"),
    });
    let _ = runc(&["delete", "--force", &id]).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
    drop(root);
    crate::rootfs::reclaim(&bundle);
    Ok(status?.code().unwrap_or(128 + 9))
}
