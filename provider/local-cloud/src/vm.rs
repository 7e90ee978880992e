//! The simulated Confidential Space VM: what happens between `instances.insert` and TERMINATED.
//!
//! A supervisor task in the local cloud's process resolves the image (local store or registry),
//! applies the launch policy ([`crate::launch_spec`]), lays out the image as an OCI bundle
//! ([`crate::rootfs`]), serves the teeserver API for exactly that image digest
//! ([`crate::teeserver`]) in a directory only the VM may enter ([`crate::launcher_dir`]), and runs
//! the container with runc in a network namespace of its own that reaches the local cloud and
//! nothing else ([`crate::vm_network`]). Status moves PROVISIONING → STAGING → RUNNING →
//! TERMINATED; the serial console (`serial.log`) gets the launcher's lines and, when the launch
//! policy allows log redirection, the container's output.
//!
//! The supervisor lives as long as the process that booted the VM (on the local backend the
//! provider waits for the run inside `terraform apply`). A VM whose supervisor is gone reads as
//! TERMINATED, and its container is killed; the next local cloud to start on the state directory
//! reclaims what such a run left (container, mounted root, launcher directory): [`Vms::reap`].

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use dcr_attestation::AttestationClaims;
use dcr_attestation::claims::{STS_AUDIENCE, SimulatedLaunch};
use dcr_image::layout::Layout;
use rusqlite::Connection;
use serde_json::{Value, json};

use crate::api::{ApiResult, now_rfc3339, unix_now};
use crate::compute::{load_instance, metadata, save_instance};
use crate::issuer::SimulatedIssuer;
use crate::launcher_dir::LauncherDir;
use crate::store::{Store, sql};
use crate::teeserver::TeeSimulator;
use crate::vm_network::VmNetwork;

/// The serial console keeps the last 1 MiB, as Compute's does.
const SERIAL_WINDOW: u64 = 1 << 20;
const SUPERVISOR_FILE: &str = "supervisor";
/// Unpacked base images no run used for this long are reclaimed.
const ROOTFS_CACHE_UNUSED: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
const LIVE: [&str; 3] = ["PROVISIONING", "STAGING", "RUNNING"];

pub struct Vms {
    store: Store,
    issuer: SimulatedIssuer,
    /// `STATE_DIR/compute`: instance directories and runc's state.
    dir: PathBuf,
    /// `STATE_DIR/images`: the local image store (an OCI layout).
    images: PathBuf,
    /// Instances this process supervises.
    active: Mutex<HashSet<String>>,
    me: String,
    /// The local cloud's own address: the one place a VM's network leads.
    cloud: std::net::SocketAddr,
}

pub struct SerialOutput {
    pub contents: String,
    pub start: u64,
    pub next: u64,
}

/// `PID:START_TIME` of a living process: identifies it even after its PID is reused. A zombie
/// (killed, not yet waited for by its parent) has died: it supervises nothing.
fn process_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields count from after the command name, which may hold spaces: state (3), starttime (22).
    let mut after = stat.rsplit_once(')')?.1.split_whitespace();
    if matches!(after.next()?, "Z" | "X" | "x") {
        return None;
    }
    let start = after.nth(18)?;
    Some(format!("{pid}:{start}"))
}

pub(crate) fn alive(supervisor: &str) -> bool {
    let Some(pid) = supervisor.split(':').next().and_then(|p| p.parse::<u32>().ok()) else { return false };
    process_identity(pid).as_deref() == Some(supervisor)
}

/// The local image store of a state directory.
pub fn image_store(state_dir: &Path) -> PathBuf {
    state_dir.join("images")
}

impl Vms {
    pub fn new(store: Store, issuer: SimulatedIssuer, cloud: std::net::SocketAddr) -> Vms {
        let dir = store.dir.join("compute");
        let images = image_store(&store.dir);
        Vms {
            store,
            issuer,
            dir,
            images,
            active: Mutex::new(HashSet::new()),
            me: process_identity(std::process::id()).unwrap_or_default(),
            cloud,
        }
    }

    /// Reclaims what runs of dead supervisors left: their containers, mounted roots and bundles
    /// under this state directory, and launcher directories (with their tokens) of this user.
    /// Blocking; runs once when the local cloud starts.
    pub fn reap(&self) {
        crate::launcher_dir::reap(alive);
        if let Ok(entries) = std::fs::read_dir(self.dir.join("instances")) {
            for entry in entries.flatten() {
                let dir = entry.path();
                let supervisor = std::fs::read_to_string(dir.join(SUPERVISOR_FILE)).unwrap_or_default();
                if supervisor.is_empty() || alive(supervisor.trim()) {
                    continue;
                }
                let id = entry.file_name().to_string_lossy().into_owned();
                if self.dir.join("runc").join(Self::container_id(&id)).exists() {
                    self.kill_orphaned_container(&id);
                }
                crate::rootfs::reclaim(&dir.join("bundle"));
                let _ = std::fs::remove_file(dir.join(SUPERVISOR_FILE));
            }
        }
        crate::rootfs::reclaim_cache(&self.rootfs_cache(), ROOTFS_CACHE_UNUSED);
    }

    /// Kills and deletes the container of a VM whose supervisor died (blocking; best effort: a
    /// container already gone is what we want).
    fn kill_orphaned_container(&self, id: &str) {
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(self.dir.join("runc"))
            .args(["delete", "--force", &Self::container_id(id)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// `STATE_DIR/compute/rootfs`: base images unpacked once, shared by runs.
    fn rootfs_cache(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Who supervises VMs this process boots.
    pub fn me(&self) -> &str {
        &self.me
    }

    fn instance_dir(&self, id: &str) -> PathBuf {
        self.dir.join("instances").join(id)
    }

    fn runc(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("runc");
        c.arg("--root").arg(self.dir.join("runc"));
        c
    }

    fn container_id(id: &str) -> String {
        format!("dcr-{id}")
    }

    /// The instance as stored, with a VM whose supervisor died marked TERMINATED (and its
    /// container killed).
    pub fn refreshed(&self, c: &Connection, project: &str, zone: &str, name: &str) -> ApiResult<Option<Value>> {
        let Some((mut i, supervisor)) = load_instance(c, project, zone, name)? else { return Ok(None) };
        let status = i["status"].as_str().unwrap_or("");
        if LIVE.contains(&status) && !alive(&supervisor) {
            let id = i["id"].as_str().unwrap_or("").to_string();
            self.kill_orphaned_container(&id);
            i["status"] = json!("TERMINATED");
            i["statusMessage"] = json!(format!(
                "The local cloud process that ran this VM ({supervisor}) has exited, so the workload was stopped."
            ));
            i["lastStopTimestamp"] = json!(now_rfc3339());
            save_instance(c, project, zone, &i)?;
        }
        Ok(Some(i))
    }

    pub fn serial_output(&self, id: &str, start: i64) -> ApiResult<SerialOutput> {
        let path = self.instance_dir(id).join("serial.log");
        let bytes = std::fs::read(&path).unwrap_or_default();
        let len = bytes.len() as u64;
        let mut start = (start.max(0) as u64).min(len);
        if len - start > SERIAL_WINDOW {
            start = len - SERIAL_WINDOW;
        }
        Ok(SerialOutput { contents: String::from_utf8_lossy(&bytes[start as usize..]).into_owned(), start, next: len })
    }

    /// Starts the VM's supervisor.
    pub fn boot(self: &Arc<Self>, project: String, zone: String, instance: Value) {
        let this = self.clone();
        tokio::spawn(async move { this.supervise(project, zone, instance).await });
    }

    /// Stops the VM's container (stop or delete); a deleted VM that no one supervises loses its
    /// directory here.
    pub async fn halt(&self, id: &str, deleting: bool) {
        let _ = self
            .runc()
            .args(["kill", &Self::container_id(id), "KILL"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        let supervised = self.active.lock().map(|a| a.contains(id)).unwrap_or(false);
        if deleting && !supervised {
            let _ = std::fs::remove_dir_all(self.instance_dir(id));
        }
    }

    async fn supervise(&self, project: String, zone: String, instance: Value) {
        let id = instance["id"].as_str().unwrap_or("").to_string();
        let name = instance["name"].as_str().unwrap_or("").to_string();
        let dir = self.instance_dir(&id);
        if let Ok(mut a) = self.active.lock() {
            a.insert(id.clone());
        }
        let serial = Serial(dir.join("serial.log"));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join(SUPERVISOR_FILE), &self.me);
        serial.line(&format!(
            "dcr simulated Confidential Space: booting {name} ({}, {})",
            instance["confidentialInstanceConfig"]["confidentialInstanceType"].as_str().unwrap_or("SEV"),
            instance["machineType"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("")
        ));
        self.update(&project, &zone, &name, &id, |i| i["status"] = json!("STAGING")).await;
        let outcome = self.launch(&project, &zone, &instance, &dir, &serial).await;
        let message = match &outcome {
            Ok(code) => {
                serial.line(&format!("workload task ended and returned {code}"));
                format!("The workload exited with code {code}.")
            }
            Err(why) => {
                serial.line(&format!("launch failed: {why}"));
                format!("The launch failed: {why}")
            }
        };
        serial.line(&format!(
            "TEE container launcher exiting with exit code: {}",
            if matches!(outcome, Ok(0)) { 0 } else { 1 }
        ));
        let _ = self
            .runc()
            .args(["delete", "--force", &Self::container_id(&id)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        let still_there = self
            .update(&project, &zone, &name, &id, move |i| {
                if i["status"] != "TERMINATED" {
                    i["status"] = json!("TERMINATED");
                    i["statusMessage"] = json!(message);
                }
                i["lastStopTimestamp"] = json!(now_rfc3339());
            })
            .await;
        // The image's root is large and no longer needed; the serial log stays with the VM.
        let bundle = dir.join("bundle");
        let _ = tokio::task::spawn_blocking(move || crate::rootfs::reclaim(&bundle)).await;
        let _ = std::fs::remove_file(dir.join(SUPERVISOR_FILE));
        if !still_there {
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        if let Ok(mut a) = self.active.lock() {
            a.remove(&id);
        }
    }

    /// Changes the stored instance if it is still this VM; false when it was deleted.
    async fn update(
        &self,
        project: &str,
        zone: &str,
        name: &str,
        id: &str,
        edit: impl FnOnce(&mut Value) + Send + 'static,
    ) -> bool {
        let (p, z, n, i) = (project.to_string(), zone.to_string(), name.to_string(), id.to_string());
        self.store
            .call(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sql)?;
                let Some((mut v, _)) = load_instance(&tx, &p, &z, &n)? else { return Ok(false) };
                if v["id"] != i.as_str() {
                    return Ok(false);
                }
                edit(&mut v);
                save_instance(&tx, &p, &z, &v)?;
                tx.commit().map_err(sql)?;
                Ok(true)
            })
            .await
            .unwrap_or(false)
    }

    /// Everything from image to exit code; an error is a launch that did not happen.
    async fn launch(
        &self,
        project: &str,
        zone: &str,
        instance: &Value,
        dir: &Path,
        serial: &Serial,
    ) -> Result<i32, String> {
        let id = instance["id"].as_str().unwrap_or("");
        let name = instance["name"].as_str().unwrap_or("");
        let reference = metadata(instance, "tee-image-reference").unwrap_or_default();
        let digest = reference.split_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        if !dcr_attestation::claims::is_sha256_digest(&digest) {
            return Err(format!(
                "tee-image-reference {reference:?} is not pinned by digest: the simulated TEE runs REPOSITORY@sha256:DIGEST only"
            ));
        }
        serial.line(&format!("Image Ref: {reference}"));
        let store = Layout::create(&self.images).map_err(|e| e.to_string())?;
        let (manifest, config) = crate::rootfs::resolve(&store, &reference, &digest).await?;
        serial.line(&format!("Image Digest: {digest}"));
        let spec = crate::launch_spec::decide(&instance["metadata"], &config, true)?;
        serial.line(&format!(
            "Launch Policy: allowed (env overrides: {:?})",
            spec.env_overrides.keys().collect::<Vec<_>>()
        ));

        let bundle = dir.join("bundle");
        crate::rootfs::reclaim(&bundle);
        let (st, m, b, cache) = (store.clone(), manifest.clone(), bundle.clone(), self.rootfs_cache());
        let preparing = std::time::Instant::now();
        let root = tokio::task::spawn_blocking(move || crate::rootfs::RunRoot::prepare(&st, &m, &b, &cache))
            .await
            .map_err(|e| e.to_string())??;
        let rootfs = root.path();
        let how = if root.shares_cache() { "cached base image + overlay" } else { "unpacked" };
        serial.line(&format!("Root: {how} in {} ms", preparing.elapsed().as_millis()));

        let number = crate::project_number(project);
        let launch = SimulatedLaunch {
            image_reference: reference.clone(),
            image_digest: digest.clone(),
            project_id: project.to_string(),
            project_number: number,
            zone: zone.to_string(),
            instance_name: name.to_string(),
            instance_id: id.to_string(),
            args: spec.args.clone(),
            env: spec.env_overrides.clone(),
            service_accounts: instance["serviceAccounts"]
                .as_array()
                .map(|a| a.iter().filter_map(|s| s["email"].as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        };
        // Removed when this function returns, however the run ended.
        let launcher_dir = LauncherDir::create(id, &self.me)?;
        let tee = TeeSimulator::start(
            &launcher_dir.path().join(crate::launcher_dir::TEESERVER_SOCKET),
            self.issuer.clone(),
            launch.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let default = AttestationClaims::simulated(&launch, unix_now(), STS_AUDIENCE, &[]);
        let token = self.issuer.mint(&default).map_err(|e| e.to_string())?;
        launcher_dir.write_token(&token)?;
        let network = VmNetwork::create(self.cloud).await?;
        let runtime = crate::launch_spec::runtime_spec(&spec, &rootfs, launcher_dir.path(), &network.path(), name);
        std::fs::write(bundle.join("config.json"), serde_json::to_vec_pretty(&runtime).expect("json"))
            .map_err(|e| format!("cannot write the runtime spec: {e}"))?;

        let out = if spec.redirect_logs { serial.append_handle() } else { None };
        let err = out.as_ref().and_then(|f| f.try_clone().ok());
        let mut cmd = self.runc();
        cmd.args(["run", "--bundle"])
            .arg(&bundle)
            .arg(Self::container_id(id))
            .stdin(Stdio::null())
            .stdout(out.map(Stdio::from).unwrap_or_else(Stdio::null))
            .stderr(err.map(Stdio::from).unwrap_or_else(Stdio::null))
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                "runc is not installed: install Debian's runc package to run workloads locally".to_string()
            }
            _ => format!("cannot start runc: {e}"),
        })?;
        self.update(project, zone, name, id, |i| {
            i["status"] = json!("RUNNING");
            i["lastStartTimestamp"] = json!(now_rfc3339());
        })
        .await;
        serial.line("workload task started");
        let status = child.wait().await.map_err(|e| format!("cannot wait for runc: {e}"))?;
        tee.shutdown().await;
        drop(network);
        // The container and its root go in `supervise`, on every path.
        drop(root);
        Ok(status.code().unwrap_or(128 + 9))
    }
}

/// The VM's serial console file.
struct Serial(PathBuf);

impl Serial {
    fn line(&self, text: &str) {
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.0) {
            let _ = writeln!(f, "{text}");
        }
    }

    fn append_handle(&self) -> Option<std::fs::File> {
        std::fs::OpenOptions::new().create(true).append(true).open(&self.0).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_identified_by_pid_and_start_time() {
        let me = process_identity(std::process::id()).unwrap();
        assert!(alive(&me));
        let (pid, _) = me.split_once(':').unwrap();
        assert!(!alive(&format!("{pid}:1")), "a reused PID is another process");
        assert!(!alive(""));
    }

    #[test]
    fn a_killed_process_not_yet_waited_for_is_dead() {
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let identity = process_identity(child.id()).unwrap();
        assert!(alive(&identity));
        child.kill().unwrap();
        let started = std::time::Instant::now();
        while alive(&identity) {
            assert!(started.elapsed().as_secs() < 10, "a killed child stayed alive");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // Still a zombie until now: its parent had not waited for it.
        assert!(std::fs::metadata(format!("/proc/{}", child.id())).is_ok());
        child.wait().unwrap();
    }
}
