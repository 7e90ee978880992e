//! `dcr lab`: JupyterLab on the stage-1 stand-ins, for exploring before a notebook is rehearsed
//! (`dcr run`) and submitted. The notebook finds its data as it will in the TEE: `DCR_INPUTS_DIR`
//! holds `INPUT.csv` (what `dcr pull` wrote) and files written to `DCR_OUTPUTS_DIR` are what the
//! output rules will look at. The kernel has the runtime image's pandas, numpy, ipykernel and
//! papermill versions.
//!
//! JupyterLab comes from an embedded lock (`lab/requirements.lock`: every wheel pinned by version
//! and hash), installed once into a venv named by the lock's hash under dcr's cache directory.
//! Other users of the machine are treated as attackers: the server listens on 127.0.0.1 only,
//! with a fresh random token handed to it in the environment (`JUPYTER_TOKEN`), never on its
//! command line, which every local user can read in `/proc`; kernels use Unix sockets in a 0700
//! directory rather than loopback ports; nothing is fetched from the internet while it runs.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{CliError, unavailable};

/// The lock `dcr lab` installs.
pub const LOCK: &str = include_str!("../lab/requirements.lock");

/// How long JupyterLab may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(180);

pub struct Lab {
    pub inputs: PathBuf,
    pub outputs: PathBuf,
    /// What the lab's file browser shows (where notebooks are opened and saved).
    pub notebook_dir: PathBuf,
    /// 0: any free port.
    pub port: u16,
    /// The CPython 3.11 to build the venv with.
    pub python: PathBuf,
    /// No progress on the terminal (`--json`).
    pub quiet: bool,
}

/// What `dcr lab` tells its user once the lab answers.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Serving {
    /// With the token: open it in a browser.
    pub url: String,
    pub inputs: String,
    pub outputs: String,
    pub notebook_dir: String,
    pub venv: String,
}

/// The venv of this lock: `CACHE/lab/<first 16 hex of the lock's SHA-256>`.
pub fn venv_dir(cache: &Path) -> PathBuf {
    cache.join("lab").join(&dcr_attestation::workload::hex_sha256(LOCK.as_bytes())[..16])
}

/// Starts JupyterLab and serves until it stops or dcr is interrupted (Ctrl-C, SIGTERM), which
/// stops it. `ready` is called once, when the lab answers.
pub async fn lab(l: &Lab, ready: impl FnOnce(&Serving)) -> Result<(), CliError> {
    let inputs = existing_dir(&l.inputs, "--inputs")?;
    let stand_ins = std::fs::read_dir(&inputs)
        .map_err(|e| unavailable(format!("cannot read {}: {e}", inputs.display())))?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".csv"))
        .count();
    if stand_ins == 0 {
        return Err(CliError::Usage(format!(
            "no INPUT.csv in {}: fetch the stand-ins with dcr pull BUCKET/NAME --to {}",
            inputs.display(),
            inputs.display()
        )));
    }
    std::fs::create_dir_all(&l.outputs)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", l.outputs.display())))?;
    let outputs = existing_dir(&l.outputs, "--outputs")?;
    let notebook_dir = existing_dir(&l.notebook_dir, "--notebook-dir")?;
    let venv = venv_dir(&dcr_image::build::cache_dir());
    // Held until dcr lab ends: a newer dcr's clean-up leaves this venv alone while it is in use.
    let _in_use = ensure_venv(&venv, &l.python, l.quiet).await?;
    quiet_page_config(&venv)?;

    // Connection files (with the kernels' keys) and sockets; removed when dcr lab ends.
    let runtime = crate::scratch::private_dir("dcr-lab-runtime-", None)?;
    let port = if l.port == 0 { free_port()? } else { l.port };
    let token = random_token()?;
    let mut child = tokio::process::Command::new(venv.join("bin/jupyter-lab"))
        .args(["--no-browser", "--ip=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg("--ServerApp.port_retries=0")
        // Jupyter refuses root unless told; dcr's local backend runs as root (runc needs it).
        .arg("--allow-root")
        // Nothing leaves the machine on its own: no update checks, news feed or extension
        // installs from PyPI (the analyst's data is in this lab).
        .args(["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"])
        .arg("--LabApp.extension_manager=readonly")
        // Kernels talk over Unix sockets in the private runtime directory below, not loopback TCP
        // ports any local user could subscribe to (a kernel's IOPub stream carries every output
        // unencrypted; its HMAC key only signs).
        .arg("--KernelManager.transport=ipc")
        .env("JUPYTER_RUNTIME_DIR", runtime.path())
        .arg(format!("--ServerApp.root_dir={}", notebook_dir.display()))
        .env("JUPYTER_TOKEN", &token)
        .env("DCR_INPUTS_DIR", &inputs)
        .env("DCR_OUTPUTS_DIR", &outputs)
        // As in the TEE: no bytecode written beside the analyst's files.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .current_dir(&notebook_dir)
        .stdin(std::process::Stdio::null())
        // JupyterLab's log goes to the terminal; stdout is dcr's (the URL, or --json).
        .stdout(std::io::stderr())
        // Its own process group: the terminal's Ctrl-C reaches dcr, which stops the whole lab.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| unavailable(format!("cannot start JupyterLab from {}: {e}", venv.display())))?;
    let pid = child.id();

    let started = Instant::now();
    loop {
        if answers(port) {
            // Between choosing the port and JupyterLab binding it, another local user could have
            // bound it: the URL, token included, must lead to our server only.
            if !listens_on(pid, port) {
                stop(pid, &mut child).await;
                return Err(unavailable(format!(
                    "another process answers on 127.0.0.1:{port}, not this lab: run dcr lab again (or pass --port)"
                )));
            }
            break;
        }
        if let Some(status) = child.try_wait().map_err(unavailable)? {
            return Err(unavailable(format!("JupyterLab exited before serving ({status}); its log is above")));
        }
        if started.elapsed() > START_TIMEOUT {
            stop(pid, &mut child).await;
            return Err(unavailable(format!(
                "JupyterLab did not answer on 127.0.0.1:{port} within {} s",
                START_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ready(&Serving {
        url: format!("http://127.0.0.1:{port}/lab?token={token}"),
        inputs: inputs.display().to_string(),
        outputs: outputs.display().to_string(),
        notebook_dir: notebook_dir.display().to_string(),
        venv: venv.display().to_string(),
    });

    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(unavailable)?;
    tokio::select! {
        status = child.wait() => {
            let status = status.map_err(unavailable)?;
            if !status.success() {
                return Err(unavailable(format!("JupyterLab stopped: {status}")));
            }
        }
        _ = tokio::signal::ctrl_c() => stop(pid, &mut child).await,
        _ = terminate.recv() => stop(pid, &mut child).await,
    }
    Ok(())
}

/// Turns off the lab's news prompt (the announcements plugin asks to fetch Jupyter's feed): the
/// venv's own page config, so the analyst's other Jupyter installs are untouched.
fn quiet_page_config(venv: &Path) -> Result<(), CliError> {
    let dir = venv.join("etc/jupyter/labconfig");
    std::fs::create_dir_all(&dir).map_err(|e| unavailable(format!("cannot create {}: {e}", dir.display())))?;
    let config = serde_json::json!({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}});
    std::fs::write(dir.join("page_config.json"), config.to_string())
        .map_err(|e| unavailable(format!("cannot write {}: {e}", dir.join("page_config.json").display())))
}

fn existing_dir(dir: &Path, flag: &str) -> Result<PathBuf, CliError> {
    if !dir.is_dir() {
        return Err(CliError::Usage(format!("{flag} {} is not a directory", dir.display())));
    }
    std::path::absolute(dir).map_err(|e| CliError::Usage(format!("{flag} {}: {e}", dir.display())))
}

/// Builds the venv once and returns its lock file, locked shared for as long as the lab uses the
/// venv. A stamp written after pip has installed every locked wheel marks it ready: an interrupted
/// install is removed and made again, and an exclusive lock keeps two `dcr lab` from building it at
/// once. Once built, the venvs of older locks are removed (each is about 400 MB).
async fn ensure_venv(venv: &Path, python: &Path, quiet: bool) -> Result<std::fs::File, CliError> {
    let parent = venv.parent().expect("the venv is under the lab cache");
    std::fs::create_dir_all(parent).map_err(|e| unavailable(format!("cannot create {}: {e}", parent.display())))?;
    let lock_path = venv.with_extension("lock");
    let lock_failed = |e: std::io::Error| unavailable(format!("cannot lock {}: {e}", lock_path.display()));
    let guard = std::fs::File::create(&lock_path)
        .map_err(|e| unavailable(format!("cannot create {}: {e}", lock_path.display())))?;
    let stamp = venv.join(".dcr-ready");
    guard.lock_shared().map_err(lock_failed)?;
    if stamp.is_file() {
        return Ok(guard);
    }
    guard.unlock().map_err(lock_failed)?;
    let version = tokio::process::Command::new(python)
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .await
        .map_err(|e| unavailable(format!("cannot run {}: {e} (pass --python)", python.display())))?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    if version != "3.11" {
        return Err(CliError::Usage(format!(
            "{} is Python {version}; dcr lab's lock is for CPython 3.11, the runtime image's (Debian 12's python3): pass --python",
            python.display()
        )));
    }
    guard.lock().map_err(lock_failed)?;
    if !stamp.is_file() {
        let _ = std::fs::remove_dir_all(venv);
        eprintln!("dcr lab: installing JupyterLab into {} (once)", venv.display());
        let spinner = crate::progress::spinner("installing JupyterLab and the runtime image's packages", quiet);
        run(tokio::process::Command::new(python).args(["-m", "venv"]).arg(venv), "python -m venv").await?;
        let requirements = venv.join("requirements.lock");
        std::fs::write(&requirements, LOCK)
            .map_err(|e| unavailable(format!("cannot write {}: {e}", requirements.display())))?;
        run(
            tokio::process::Command::new(venv.join("bin/python"))
                .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"])
                .args(["--require-hashes", "--only-binary", ":all:", "-r"])
                .arg(&requirements),
            "pip install of dcr lab's lock (PyPI must be reachable the first time)",
        )
        .await?;
        spinner.finish_and_clear();
        std::fs::write(&stamp, "").map_err(|e| unavailable(format!("cannot write {}: {e}", stamp.display())))?;
        for removed in remove_stale_venvs(venv) {
            eprintln!("dcr lab: removed {}, the venv of an older lock", removed.display());
        }
    }
    // flock(2) turns the exclusive lock into a shared one in place.
    guard.lock_shared().map_err(lock_failed)?;
    Ok(guard)
}

/// Removes the venvs beside `current` (named, as it is, by 16 hex digits) that no `dcr lab` is
/// using: those whose lock file can be locked exclusively. Their lock files stay (empty), so a
/// process still waiting on one never locks a file that another has already replaced.
fn remove_stale_venvs(current: &Path) -> Vec<PathBuf> {
    let Some(parent) = current.parent() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(parent) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let dir = entry.path();
        let name = entry.file_name();
        let is_venv_name = name.len() == 16 && name.to_string_lossy().bytes().all(|b| b.is_ascii_hexdigit());
        if dir == current || !is_venv_name || !dir.is_dir() {
            continue;
        }
        let Ok(lock) = std::fs::File::create(dir.with_extension("lock")) else { continue };
        if lock.try_lock().is_ok() && std::fs::remove_dir_all(&dir).is_ok() {
            removed.push(dir);
        }
    }
    removed
}

async fn run(cmd: &mut tokio::process::Command, what: &str) -> Result<(), CliError> {
    let status =
        cmd.stdin(std::process::Stdio::null()).status().await.map_err(|e| unavailable(format!("{what}: {e}")))?;
    if status.success() { Ok(()) } else { Err(unavailable(format!("{what} failed ({status})"))) }
}

fn free_port() -> Result<u16, CliError> {
    let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(unavailable)?;
    Ok(l.local_addr().map_err(unavailable)?.port())
}

/// 32 random bytes, hex.
fn random_token() -> Result<String, CliError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| unavailable("no randomness for the lab's token"))?;
    Ok(hex::encode(bytes))
}

/// Whether a Jupyter server answers `GET /api` (its version; no token needed) on the port.
fn answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), Duration::from_secs(1))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /api HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Whether a socket of process `pid` listens on 127.0.0.1:`port` (/proc/net/tcp's LISTEN rows,
/// matched by inode to the process's file descriptors).
fn listens_on(pid: Option<u32>, port: u16) -> bool {
    let Some(pid) = pid else { return false };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: Vec<String> = std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&wanted.as_str()) && f.get(3) == Some(&"0A")).then(|| f.get(9).map(|i| i.to_string()))?
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|target| {
        let target = target.to_string_lossy();
        inodes.iter().any(|i| target == format!("socket:[{i}]").as_str())
    })
}

/// SIGTERM to the lab's process group (the server and its kernels), then SIGKILL after 10 s.
async fn stop(pid: Option<u32>, child: &mut tokio::process::Child) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        // The group is the lab's own (`process_group(0)`): its leader's pid names it.
        // SAFETY: kill(2) reads no memory; a group that has already gone is an ESRCH, ignored.
        unsafe { libc::kill(-pid, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(lock: &str) -> std::collections::BTreeMap<&str, &str> {
        lock.lines().filter_map(|l| l.trim_end_matches(" \\").split_once("==")).collect()
    }

    #[test]
    fn the_lab_kernel_has_the_runtime_images_package_versions() {
        let image = versions(include_str!("../../../runtime-image/requirements.lock"));
        let lab = versions(LOCK);
        assert!(lab.contains_key("jupyterlab") && image.len() > 10, "{lab:?}");
        for (name, version) in &image {
            if let Some(v) = lab.get(name) {
                assert_eq!(v, version, "{name}: the lab pins {v}, the runtime image {version}");
            }
        }
        for needed in ["pandas", "numpy", "ipykernel", "papermill"] {
            assert_eq!(lab.get(needed), image.get(needed), "{needed}");
        }
        assert!(LOCK.lines().filter(|l| l.contains("==")).count() == LOCK.matches("--hash=sha256:").count());
    }

    #[test]
    fn a_listener_is_known_by_its_process() {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(Some(std::process::id()), port));
        assert!(!listens_on(Some(1), port), "pid 1 does not hold this test's socket");
        drop(listener);
        assert!(!listens_on(Some(std::process::id()), port));
    }

    #[test]
    fn only_unused_venvs_of_other_locks_are_removed() {
        let cache = crate::scratch::private_dir("dcr-lab-cache-", None).unwrap();
        let lab = cache.path().join("lab");
        let current = lab.join("00000000000000aa");
        let stale = lab.join("00000000000000bb");
        let in_use = lab.join("00000000000000cc");
        let not_a_venv = lab.join("notes");
        for dir in [&current, &stale, &in_use, &not_a_venv] {
            std::fs::create_dir_all(dir.join("bin")).unwrap();
        }
        let lab_running = std::fs::File::create(in_use.with_extension("lock")).unwrap();
        lab_running.lock_shared().unwrap();

        assert_eq!(remove_stale_venvs(&current), vec![stale.clone()]);
        assert!(!stale.exists());
        assert!(current.is_dir() && in_use.is_dir() && not_a_venv.is_dir());

        drop(lab_running);
        assert_eq!(remove_stale_venvs(&current), vec![in_use.clone()]);
        assert!(current.is_dir() && not_a_venv.is_dir());
    }

    #[test]
    fn the_venv_is_named_by_the_lock() {
        let dir = venv_dir(Path::new("/c"));
        assert_eq!(dir.parent(), Some(Path::new("/c/lab")));
        assert_eq!(dir.file_name().unwrap().len(), 16);
        assert_eq!(random_token().unwrap().len(), 64);
        assert_ne!(random_token().unwrap(), random_token().unwrap());
    }
}
