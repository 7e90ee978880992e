//! The simulated Confidential Space VM: what happens between `instances.insert` and TERMINATED.
//!
//! A supervisor task in the local cloud's process resolves the image (local store or registry),
//! applies the launch policy ([`crate::launch_spec`]), unpacks the image into an OCI bundle, serves
//! the teeserver API for exactly that image digest ([`crate::teeserver`]), and runs the container
//! with runc — host network, so the workload reaches the local cloud on loopback. Status moves
//! PROVISIONING → STAGING → RUNNING → TERMINATED; the serial console (`serial.log`) gets the
//! launcher's lines and, when the launch policy allows log redirection, the container's output.
//!
//! The supervisor lives as long as the process that booted the VM (on the local backend the
//! provider waits for the run inside `terraform apply`). A VM whose supervisor is gone reads as
//! TERMINATED, and its container is killed.

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
use crate::store::{Store, sql};
use crate::teeserver::TeeSimulator;

/// The serial console keeps the last 1 MiB, as Compute's does.
const SERIAL_WINDOW: u64 = 1 << 20;
const TOKEN_FILE: &str = "attestation_verifier_claims_token";
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
}

pub struct SerialOutput {
    pub contents: String,
    pub start: u64,
    pub next: u64,
}

/// `PID:START_TIME` of a process: identifies it even after its PID is reused.
fn process_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 22 (starttime) counts from after the command name, which may hold spaces.
    let after = stat.rsplit_once(')')?.1;
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid}:{start}"))
}

fn alive(supervisor: &str) -> bool {
    let Some(pid) = supervisor.split(':').next().and_then(|p| p.parse::<u32>().ok()) else { return false };
    process_identity(pid).as_deref() == Some(supervisor)
}

/// The host side of the container's `/run/container_launcher` (teeserver socket, token file).
fn launcher_dir(id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dcr-tee-{id}"))
}

/// The local image store of a state directory.
pub fn image_store(state_dir: &Path) -> PathBuf {
    state_dir.join("images")
}

impl Vms {
    pub fn new(store: Store, issuer: SimulatedIssuer) -> Vms {
        let dir = store.dir.join("compute");
        let images = image_store(&store.dir);
        Vms {
            store,
            issuer,
            dir,
            images,
            active: Mutex::new(HashSet::new()),
            me: process_identity(std::process::id()).unwrap_or_default(),
        }
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
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(self.dir.join("runc"))
                .args(["delete", "--force", &Self::container_id(&id)])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
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
        // The unpacked image is large and no longer needed; the serial log stays with the VM.
        let _ = tokio::fs::remove_dir_all(dir.join("bundle")).await;
        let _ = tokio::fs::remove_dir_all(launcher_dir(&id)).await;
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
        let rootfs = bundle.join("rootfs");
        let _ = std::fs::remove_dir_all(&bundle);
        let (st, m, r) = (store.clone(), manifest.clone(), rootfs.clone());
        tokio::task::spawn_blocking(move || crate::rootfs::unpack(&st, &m, &r)).await.map_err(|e| e.to_string())??;

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
        // Unix socket paths are limited to 108 bytes, so the launcher directory lives at a short
        // path of its own rather than in the state directory.
        let launcher_dir = launcher_dir(id);
        std::fs::create_dir_all(&launcher_dir).map_err(|e| format!("cannot create {}: {e}", launcher_dir.display()))?;
        let tee = TeeSimulator::start(&launcher_dir.join("teeserver.sock"), self.issuer.clone(), launch.clone())
            .await
            .map_err(|e| e.to_string())?;
        let default = AttestationClaims::simulated(&launch, unix_now(), STS_AUDIENCE, &[]);
        let token = self.issuer.mint(&default).map_err(|e| e.to_string())?;
        std::fs::write(launcher_dir.join(TOKEN_FILE), token)
            .map_err(|e| format!("cannot write the token file: {e}"))?;
        let runtime = crate::launch_spec::runtime_spec(&spec, &rootfs, &launcher_dir, name);
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
}
