//! What the simulated Confidential Space launcher starts, decided from the VM's metadata and the
//! image's config as Google's launcher decides it: `tee-*` metadata keys, checked against the
//! image's `tee.launch_policy.*` labels (any violation aborts the launch), then the OCI runtime
//! spec runc runs. Pure functions; the VM supervisor ([`crate::vm`]) does the I/O.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

/// Where the launcher's files (teeserver socket, default token) appear in the container.
pub const LAUNCHER_DIR: &str = "/run/container_launcher";

/// A launch the policy allows.
#[derive(Clone, Debug, PartialEq)]
pub struct LaunchSpec {
    pub image_reference: String,
    pub image_digest: String,
    /// Entrypoint followed by the command.
    pub args: Vec<String>,
    /// The image's environment with the allowed overrides applied, `KEY=VALUE`.
    pub env: Vec<String>,
    /// Only the overrides (`tee-env-*`): what tokens list in `submods.container.env`.
    pub env_overrides: BTreeMap<String, String>,
    pub cwd: String,
    /// tmpfs mounts: destination and size in bytes (`None`: the default).
    pub tmpfs: Vec<(String, Option<u64>)>,
    /// Whether the container's output reaches the serial console.
    pub redirect_logs: bool,
}

fn items(metadata: &Value) -> BTreeMap<String, String> {
    metadata["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| Some((i["key"].as_str()?.to_string(), i["value"].as_str().unwrap_or("").to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

/// Decides the launch. `config` is the image config (`config.Entrypoint`, `Labels`, ...); `debug`
/// says whether the VM runs a debug image (a simulated TEE always does).
pub fn decide(metadata: &Value, config: &Value, debug: bool) -> Result<LaunchSpec, String> {
    let md = items(metadata);
    let reference = md.get("tee-image-reference").cloned().unwrap_or_default();
    if reference.is_empty() {
        return Err("metadata tee-image-reference is required".into());
    }
    let Some((_, digest)) = reference.split_once('@') else {
        return Err(format!(
            "tee-image-reference {reference:?} is not pinned by digest: the simulated TEE runs REPOSITORY@sha256:DIGEST only"
        ));
    };
    if !dcr_attestation::claims::is_sha256_digest(digest) {
        return Err(format!("tee-image-reference {reference:?} does not end in a sha256 digest"));
    }
    let c = &config["config"];
    let labels: BTreeMap<String, String> = c["Labels"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect())
        .unwrap_or_default();
    let label = |k: &str| labels.get(&format!("tee.launch_policy.{k}")).cloned().unwrap_or_default();

    match md.get("tee-restart-policy").map(String::as_str).unwrap_or("Never") {
        "Never" => {}
        other => {
            return Err(format!(
                "tee-restart-policy {other:?} is not simulated: the local cloud runs each workload once (Never)"
            ));
        }
    }

    let entrypoint = strings(&c["Entrypoint"]);
    if entrypoint.is_empty() {
        return Err("the image has no ENTRYPOINT; Confidential Space requires one".into());
    }
    let cmd = match md.get("tee-cmd") {
        Some(json_cmd) => {
            if !label("allow_cmd_override").eq_ignore_ascii_case("true") {
                return Err("tee-cmd is set but the image's launch policy does not allow_cmd_override".into());
            }
            serde_json::from_str::<Vec<String>>(json_cmd)
                .map_err(|_| format!("tee-cmd {json_cmd:?} is not a JSON array of strings"))?
        }
        None => strings(&c["Cmd"]),
    };

    let allowed_env: Vec<String> =
        label("allow_env_override").split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
    let mut env_overrides = BTreeMap::new();
    for (k, v) in &md {
        if let Some(name) = k.strip_prefix("tee-env-") {
            if !allowed_env.iter().any(|a| a == name) {
                return Err(format!(
                    "env override {name} is not allowed by the image's launch policy (tee.launch_policy.allow_env_override = {:?})",
                    allowed_env.join(",")
                ));
            }
            env_overrides.insert(name.to_string(), v.clone());
        }
    }
    let mut env: Vec<String> = strings(&c["Env"])
        .into_iter()
        .filter(|e| !env_overrides.keys().any(|k| e.starts_with(&format!("{k}="))))
        .collect();
    env.extend(env_overrides.iter().map(|(k, v)| format!("{k}={v}")));

    let mount_roots: Vec<String> =
        label("allow_mount_destinations").split(':').filter(|s| !s.is_empty()).map(str::to_string).collect();
    let mut tmpfs = Vec::new();
    for m in md.get("tee-mount").map(String::as_str).unwrap_or("").split(';').filter(|m| !m.trim().is_empty()) {
        let fields: BTreeMap<&str, &str> = m.split(',').filter_map(|kv| kv.trim().split_once('=')).collect();
        if fields.get("type") != Some(&"tmpfs") || fields.get("source") != Some(&"tmpfs") {
            return Err(format!("tee-mount {m:?}: only type=tmpfs,source=tmpfs mounts are supported"));
        }
        let dest = fields.get("destination").copied().unwrap_or("");
        if !dest.starts_with('/') || dest.split('/').any(|c| c == "..") {
            return Err(format!("tee-mount {m:?}: destination must be an absolute path"));
        }
        let allowed =
            mount_roots.iter().any(|r| dest == r || dest.starts_with(&format!("{}/", r.trim_end_matches('/'))));
        if !allowed {
            return Err(format!(
                "tee-mount destination {dest} is not allowed by the image's launch policy (tee.launch_policy.allow_mount_destinations = {:?})",
                mount_roots.join(":")
            ));
        }
        let size = match fields.get("size") {
            Some(s) => Some(s.parse::<u64>().map_err(|_| format!("tee-mount {m:?}: size must be a number of bytes"))?),
            None => None,
        };
        tmpfs.push((dest.to_string(), size));
    }

    let redirect =
        md.get("tee-container-log-redirect").map(|v| v.to_ascii_lowercase()).unwrap_or_else(|| "false".into());
    let wants_logs = matches!(redirect.as_str(), "true" | "serial");
    if !matches!(redirect.as_str(), "true" | "false" | "serial" | "cloud_logging") {
        return Err(format!("tee-container-log-redirect {redirect:?} must be true, false, serial or cloud_logging"));
    }
    let policy = label("log_redirect").to_ascii_lowercase();
    let logs_allowed = match policy.as_str() {
        "always" => true,
        "never" => false,
        _ => debug, // debugonly, the default
    };
    if wants_logs && !logs_allowed {
        return Err(format!(
            "tee-container-log-redirect is {redirect} but the image's launch policy log_redirect is {:?} on a {} image",
            if policy.is_empty() { "debugonly" } else { policy.as_str() },
            if debug { "debug" } else { "production" }
        ));
    }

    let mut args = entrypoint;
    args.extend(cmd);
    Ok(LaunchSpec {
        image_reference: reference.clone(),
        image_digest: digest.to_string(),
        args,
        env,
        env_overrides,
        cwd: c["WorkingDir"].as_str().filter(|w| !w.is_empty()).unwrap_or("/").to_string(),
        tmpfs,
        redirect_logs: wants_logs,
    })
}

/// The OCI runtime spec for `launch`: its own PID, IPC, UTS and mount namespaces, the network
/// namespace at `network` (the VM's, see [`crate::vm_network`]), runc's default capabilities and
/// masked paths, the launcher directory bind-mounted read-only, and the tmpfs mounts the launch
/// allowed.
pub fn runtime_spec(launch: &LaunchSpec, rootfs: &Path, launcher_dir: &Path, network: &Path, hostname: &str) -> Value {
    let mut mounts =
        vec![json!({"destination": LAUNCHER_DIR, "type": "bind", "source": launcher_dir, "options": ["rbind", "ro"]})];
    for (dest, size) in &launch.tmpfs {
        mounts.push(private_tmpfs(dest, *size));
    }
    container_spec(&Container {
        args: &launch.args,
        env: &launch.env,
        cwd: &launch.cwd,
        rootfs,
        hostname,
        mounts,
        network: Some(network),
    })
}

/// A memory-backed directory only the container's root may enter.
pub(crate) fn private_tmpfs(destination: &str, size: Option<u64>) -> Value {
    let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "mode=700".to_string()];
    if let Some(s) = size {
        options.push(format!("size={s}"));
    }
    json!({"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options})
}

/// What one container runs, and on what.
pub(crate) struct Container<'a> {
    pub args: &'a [String],
    pub env: &'a [String],
    pub cwd: &'a str,
    pub rootfs: &'a Path,
    pub hostname: &'a str,
    /// Mounts besides the standard ones (`/proc`, `/dev`, `/sys`, ...).
    pub mounts: Vec<Value>,
    /// The network namespace to join; `None`: a new one, which has only a loopback that is down.
    pub network: Option<&'a Path>,
}

/// The OCI runtime spec of every container dcr starts: few capabilities, no new privileges, its
/// own pid, ipc, uts and mount namespaces, and the masked and read-only paths of runc's default.
pub(crate) fn container_spec(c: &Container<'_>) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    mounts.extend(c.mounts.iter().cloned());
    let network = match c.network {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    };
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": c.args,
            "env": c.env,
            "cwd": c.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": c.rootfs, "readonly": false},
        "hostname": c.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, network],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn config() -> Value {
        json!({"config": {
            "Entrypoint": ["/usr/local/bin/dcr-launcher"],
            "Env": ["PATH=/usr/bin", "DCR_LOCAL_CLOUD=unset"],
            "WorkingDir": "/dcr",
            "Labels": {
                "tee.launch_policy.allow_env_override": "DCR_LOCAL_CLOUD",
                "tee.launch_policy.allow_mount_destinations": "/run/dcr",
            }
        }})
    }

    fn md(extra: &[(&str, &str)]) -> Value {
        let mut items = vec![json!({"key": "tee-image-reference", "value": format!("images.local/study@{DIGEST}")})];
        items.extend(extra.iter().map(|(k, v)| json!({"key": k, "value": v})));
        json!({"items": items})
    }

    #[test]
    fn allowed_overrides_and_mounts_make_the_launch() {
        let l = decide(
            &md(&[
                ("tee-env-DCR_LOCAL_CLOUD", "http://127.0.0.1:1"),
                ("tee-mount", "type=tmpfs,source=tmpfs,destination=/run/dcr,size=1048576"),
                ("tee-container-log-redirect", "true"),
            ]),
            &config(),
            true,
        )
        .unwrap();
        assert_eq!(l.image_digest, DIGEST);
        assert_eq!(l.args, vec!["/usr/local/bin/dcr-launcher"]);
        assert_eq!(l.env, vec!["PATH=/usr/bin", "DCR_LOCAL_CLOUD=http://127.0.0.1:1"]);
        assert_eq!(l.tmpfs, vec![("/run/dcr".to_string(), Some(1_048_576))]);
        assert!(l.redirect_logs);
        assert_eq!(l.cwd, "/dcr");
    }

    #[test]
    fn launch_policy_violations_abort_the_launch() {
        let cases: Vec<(Value, bool, &str)> = vec![
            (md(&[("tee-env-SECRET_OVERRIDE", "x")]), true, "env override SECRET_OVERRIDE is not allowed"),
            (md(&[("tee-mount", "type=tmpfs,source=tmpfs,destination=/etc")]), true, "destination /etc is not allowed"),
            (md(&[("tee-cmd", "[\"sh\"]")]), true, "allow_cmd_override"),
            (md(&[("tee-restart-policy", "Always")]), true, "not simulated"),
            (md(&[("tee-container-log-redirect", "true")]), false, "production image"),
            (
                json!({"items": [{"key": "tee-image-reference", "value": "images.local/study:latest"}]}),
                true,
                "not pinned by digest",
            ),
            (json!({"items": []}), true, "tee-image-reference is required"),
        ];
        for (metadata, debug, says) in cases {
            let e = decide(&metadata, &config(), debug).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn the_runtime_spec_joins_the_vms_network_and_mounts_the_launcher_read_only() {
        let l = decide(&md(&[("tee-mount", "type=tmpfs,source=tmpfs,destination=/run/dcr")]), &config(), true).unwrap();
        let spec =
            runtime_spec(&l, Path::new("/b/rootfs"), Path::new("/b/launcher"), Path::new("/proc/1/fd/9"), "dcr-study");
        let ns = spec["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network" && n["path"] == "/proc/1/fd/9"), "{ns:?}");
        let mounts = spec["mounts"].as_array().unwrap();
        let launcher = mounts.iter().find(|m| m["destination"] == LAUNCHER_DIR).unwrap();
        assert_eq!(launcher["options"], json!(["rbind", "ro"]));
        assert!(mounts.iter().any(|m| m["destination"] == "/run/dcr" && m["type"] == "tmpfs"));
    }
}
