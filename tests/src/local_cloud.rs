//! A local cloud running on its own (`terraform-provider-dcr local-cloud`) over a state directory a
//! test's Terraform runs used, so the test can look at what they left behind through the same
//! REST APIs, as the admin or as any other principal.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

pub struct LocalCloudProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Where it logs every request it serves, if anywhere.
    pub request_log: Option<PathBuf>,
    pub endpoint: String,
    pub admin_token: String,
    tokens: serde_json::Map<String, Value>,
    http: Client,
}

/// Where the next local cloud logs its requests when tests/run.sh collects them
/// (`DCR_REQUEST_LOG_DIR`), so that what tests send is checked against the discovery documents too.
/// `dcr` commands, which start the local cloud in their own process, log there as well.
pub fn suite_request_log() -> Option<PathBuf> {
    let dir = std::env::var_os(crate::workspace::REQUEST_LOG_DIR_ENV).filter(|d| !d.is_empty())?;
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(PathBuf::from(dir).join(format!("local-cloud-{}-{n}.jsonl", std::process::id())))
}

impl LocalCloudProcess {
    /// Starts a local cloud on `state_dir`, minting tokens for `principals` too.
    pub fn start(provider_bin: &Path, state_dir: &Path, principals: &[&str]) -> LocalCloudProcess {
        Self::start_with_log(provider_bin, state_dir, principals, suite_request_log(), &[])
    }

    /// [`start`](Self::start) with more `local-cloud` arguments (`--federated-token-seconds 3`).
    pub fn start_with(provider_bin: &Path, state_dir: &Path, principals: &[&str], args: &[&str]) -> LocalCloudProcess {
        Self::start_with_log(provider_bin, state_dir, principals, suite_request_log(), args)
    }

    /// Like [`LocalCloudProcess::start`], but always logging requests: into the suite's log
    /// directory when tests/run.sh set one, else to `fallback`. The log's path is
    /// [`LocalCloudProcess::request_log`].
    pub fn start_logged(
        provider_bin: &Path,
        state_dir: &Path,
        principals: &[&str],
        fallback: &Path,
    ) -> LocalCloudProcess {
        Self::start_logged_with(provider_bin, state_dir, principals, fallback, &[])
    }

    /// [`start_logged`](Self::start_logged) with more `local-cloud` arguments (`--project P`).
    pub fn start_logged_with(
        provider_bin: &Path,
        state_dir: &Path,
        principals: &[&str],
        fallback: &Path,
        args: &[&str],
    ) -> LocalCloudProcess {
        let log = suite_request_log().unwrap_or_else(|| fallback.to_path_buf());
        Self::start_with_log(provider_bin, state_dir, principals, Some(log), args)
    }

    fn start_with_log(
        provider_bin: &Path,
        state_dir: &Path,
        principals: &[&str],
        request_log: Option<PathBuf>,
        args: &[&str],
    ) -> LocalCloudProcess {
        let mut cmd = Command::new(provider_bin);
        cmd.arg("local-cloud").arg("--state-dir").arg(state_dir).args(args);
        if let Some(log) = &request_log {
            cmd.env(crate::workspace::REQUEST_LOG_ENV, log);
        }
        for p in principals {
            cmd.arg("--token-for").arg(p);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} local-cloud: {e}", provider_bin.display()));
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("local cloud banner");
        let banner: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad banner {line:?}: {e}"));
        LocalCloudProcess {
            child,
            stdin,
            request_log,
            endpoint: banner["endpoint"].as_str().expect("endpoint").to_string(),
            admin_token: banner["admin_token"].as_str().expect("admin_token").to_string(),
            tokens: banner["tokens"].as_object().cloned().unwrap_or_default(),
            http: Client::new(),
        }
    }

    /// The attributes of a provider `gcp` block that send every API dcr uses to this local cloud,
    /// one per line (indented for a block nested in `provider`).
    pub fn gcp_endpoints(&self) -> String {
        let ep = &self.endpoint;
        [
            ("storage_endpoint", "storage/v1"),
            ("kms_endpoint", "cloudkms/v1"),
            ("iam_endpoint", "iam/v1"),
            ("sts_endpoint", "sts/v1"),
            ("resource_manager_endpoint", "cloudresourcemanager/v1"),
            ("compute_endpoint", "compute/v1"),
            ("artifact_registry_endpoint", "artifactregistry/v1"),
            ("logging_endpoint", "logging/v2"),
        ]
        .iter()
        .map(|(attr, path)| format!("    {attr} = \"{ep}/{path}/\"\n"))
        .collect()
    }

    /// The requests this local cloud logged so far (`start_logged`), as `METHOD PATH` lines.
    pub fn logged_requests(&self) -> Vec<String> {
        let log = self.request_log.as_ref().expect("a local cloud started with a request log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|r| format!("{} {}", r["method"].as_str().unwrap_or("?"), r["path"].as_str().unwrap_or("?")))
            .collect()
    }

    pub fn token_for(&self, principal: &str) -> String {
        self.tokens.get(principal).and_then(|t| t.as_str()).unwrap_or_else(|| panic!("no token for {principal}")).into()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    pub fn get(&self, token: &str, path: &str) -> Response {
        self.http.get(self.url(path)).bearer_auth(token).send().expect("request")
    }

    pub fn delete(&self, token: &str, path: &str) -> Response {
        self.http.delete(self.url(path)).bearer_auth(token).send().expect("request")
    }

    pub fn put_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.http.put(self.url(path)).bearer_auth(token).json(body).send().expect("request")
    }

    pub fn post_json(&self, token: &str, path: &str, body: &Value) -> Response {
        self.http.post(self.url(path)).bearer_auth(token).json(body).send().expect("request")
    }

    /// Destroy keeps each dataset's privacy ledger, and the bucket it is in. Checks that ledgers
    /// are all that is left in `project`'s buckets, then deletes them, as an owner starting over
    /// on purpose would; returns the ledgers' names.
    pub fn remove_ledgers(&self, project: &str) -> Vec<String> {
        let mut removed = Vec::new();
        for bucket in self.buckets(project) {
            let r = self.get(&self.admin_token, &format!("/storage/v1/b/{bucket}/o"));
            assert!(r.status().is_success(), "list objects of {bucket}: {}", r.status());
            let v: Value = r.json().expect("json");
            let names: Vec<String> = v["items"]
                .as_array()
                .map(|a| a.iter().map(|o| o["name"].as_str().unwrap_or("").to_string()).collect())
                .unwrap_or_default();
            let ledger = |n: &String| n.ends_with(dcr_attestation::names::LEDGER_SUFFIX);
            assert!(
                !names.is_empty() && names.iter().all(ledger),
                "bucket {bucket} holds more than a privacy ledger after destroy: {names:?}"
            );
            for n in &names {
                let r = self.delete(&self.admin_token, &format!("/storage/v1/b/{bucket}/o/{}", encode(n)));
                assert!(r.status().is_success(), "delete {n}: {}", r.status());
            }
            let r = self.delete(&self.admin_token, &format!("/storage/v1/b/{bucket}"));
            assert!(r.status().is_success(), "delete bucket {bucket}: {}", r.status());
            removed.extend(names);
        }
        removed
    }

    /// Names of the buckets of `project` (as the admin).
    pub fn buckets(&self, project: &str) -> Vec<String> {
        let r = self.get(&self.admin_token, &format!("/storage/v1/b?project={project}"));
        assert!(r.status().is_success(), "list buckets: {}", r.status());
        let v: Value = r.json().expect("json");
        v["items"]
            .as_array()
            .map(|a| a.iter().map(|b| b["name"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    }

    /// Writes an object (as `token`, `uploadType=media`); the HTTP status when refused.
    pub fn upload(&self, token: &str, bucket: &str, object: &str, bytes: &[u8]) -> Result<(), u16> {
        let url = self.url(&format!("/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}", encode(object)));
        let r = self.http.post(url).bearer_auth(token).body(bytes.to_vec()).send().expect("request");
        if r.status().is_success() { Ok(()) } else { Err(r.status().as_u16()) }
    }

    /// The bytes of an object (as `token`), or the HTTP status when refused.
    pub fn download(&self, token: &str, bucket: &str, object: &str) -> Result<Vec<u8>, u16> {
        let r = self.get(token, &format!("/storage/v1/b/{bucket}/o/{}?alt=media", encode(object)));
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        Ok(r.bytes().expect("body").to_vec())
    }

    /// KMS decrypt (as `token`): the plaintext, or the HTTP status when refused.
    pub fn kms_decrypt(&self, token: &str, key: &str, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>, u16> {
        let body = json!({"ciphertext": B64.encode(ciphertext), "additionalAuthenticatedData": B64.encode(aad)});
        let r = self.post_json(token, &format!("/cloudkms/v1/{key}:decrypt"), &body);
        if !r.status().is_success() {
            return Err(r.status().as_u16());
        }
        let v: Value = r.json().expect("json");
        Ok(B64.decode(v["plaintext"].as_str().unwrap_or("")).expect("base64"))
    }
}

/// What STS answered: a federated access token, or the refusal (status and OAuth error body).
pub type StsOutcome = Result<String, (u16, Value)>;

impl LocalCloudProcess {
    /// Exchanges `subject_token` at `audience` as Google's auth libraries do (a form post, no
    /// credentials of our own).
    pub fn sts_exchange(&self, audience: &str, subject_token: &str) -> StsOutcome {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", audience),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("subject_token", subject_token),
        ];
        let r = self.http.post(self.url("/sts/v1/token")).form(&form).send().expect("request");
        let status = r.status().as_u16();
        let body: Value = r.json().unwrap_or(Value::Null);
        match body["access_token"].as_str() {
            Some(t) if status == 200 => Ok(t.to_string()),
            _ => Err((status, body)),
        }
    }

    /// The workload identity pools of `project`, soft-deleted ones included (as the admin).
    pub fn pools(&self, project: &str) -> Vec<Value> {
        let r = self.get(
            &self.admin_token,
            &format!("/iam/v1/projects/{project}/locations/global/workloadIdentityPools?showDeleted=true"),
        );
        assert!(r.status().is_success(), "list pools: {}", r.status());
        let v: Value = r.json().expect("json");
        v["workloadIdentityPools"].as_array().cloned().unwrap_or_default()
    }

    /// The Compute instances of `project` in `zone` (as the admin).
    pub fn instances(&self, project: &str, zone: &str) -> Vec<Value> {
        let r = self.get(&self.admin_token, &format!("/compute/v1/projects/{project}/zones/{zone}/instances"));
        assert!(r.status().is_success(), "list instances: {}", r.status());
        let v: Value = r.json().expect("json");
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// Percent-encodes an object name for a URL path segment.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Drop for LocalCloudProcess {
    fn drop(&mut self) {
        // Closing stdin tells it to stop; make sure it does.
        if let Some(mut s) = self.stdin.take() {
            let _ = s.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulated VMs' containers runc knows under `state_dir` (`dcr-INSTANCE_ID`), running or not.
pub fn vm_containers(state_dir: &Path) -> Vec<String> {
    Command::new("runc")
        .arg("--root")
        .arg(state_dir.join("compute/runc"))
        .args(["list", "-q"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The host PID of a VM container's first process, while it runs.
pub fn vm_container_pid(state_dir: &Path, container: &str) -> Option<u32> {
    let out = Command::new("runc")
        .arg("--root")
        .arg(state_dir.join("compute/runc"))
        .args(["state", container])
        .output()
        .ok()?;
    let state: Value = serde_json::from_slice(&out.stdout).ok()?;
    if state["status"] != "running" {
        return None;
    }
    state["pid"].as_u64().and_then(|p| u32::try_from(p).ok()).filter(|p| *p > 0)
}

/// Mount points under `dir` (the overlay roots of runs), from the kernel's mount table.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    table.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).map(str::to_string).collect()
}
