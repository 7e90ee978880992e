//! A Google Cloud-compatible local cloud, embedded in the dcr provider: the subsets dcr uses of the
//! Cloud Storage JSON API, Cloud KMS v1, IAM v1 workload identity federation, STS v1 and Resource
//! Manager v1, served on 127.0.0.1 with Google's paths, error shapes, naming rules, preconditions
//! and real IAM (bearer tokens → principals and principal sets → role bindings). It also runs a
//! simulated attestation issuer (OIDC discovery + JWKS) whose tokens say they are simulated.
//!
//! State is a SQLite database (WAL) plus object files in a state directory, so several provider
//! processes — several Terraform runs — can share it at the same time. It is product code: the
//! provider talks to it through exactly the clients it uses for Google Cloud.

mod aip_iam;
mod api;
mod app;
mod artifact_registry;
mod checksums;
mod compute;
mod error;
mod fields;
mod iam;
pub mod isolated;
mod issuer;
mod kms;
mod launch_spec;
mod launcher_dir;
mod logging;
mod request_log;
mod resource_manager;
mod rootfs;
mod server;
mod storage;
mod store;
mod sts;
mod system;
mod teeserver;
mod tokens;
mod vm;
mod vm_network;
mod wif;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::LocalCloudError;
pub use issuer::{SimulatedIssuer, published_jwks_path, read_published_jwks};
pub use teeserver::TeeSimulator;
pub use vm::image_store;

/// Environment variable naming a file that receives one JSON line per request the local cloud
/// serves, in whichever process it runs (the conformance test checks them against Google's
/// discovery documents).
pub const REQUEST_LOG_ENV: &str = "DCR_LOCAL_CLOUD_REQUEST_LOG";

pub struct LocalCloudConfig {
    pub state_dir: PathBuf,
    pub project: String,
    /// The principal the person running Terraform acts as; owner of `project`.
    pub admin_principal: String,
    /// When set, one JSON line per request is appended to this file.
    pub request_log: Option<PathBuf>,
    /// How long the federated tokens STS issues live; `None`: an hour, as Google's (`expires_in`
    /// 3600). Shorter lifetimes let tests see a long run outlive its first tokens.
    pub federated_token_ttl: Option<Duration>,
}

/// A running local cloud; dropping it (or [`LocalCloud::shutdown`]) stops the server.
pub struct LocalCloud {
    endpoint: String,
    admin_token: String,
    store: store::Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// `user:LOGIN@dcr.local`, the principal the person running Terraform acts as.
pub fn default_admin_principal() -> String {
    let login = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty() && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    format!("user:{}@dcr.local", login.unwrap_or_else(|| "admin".into()))
}

/// A stable project number derived from the project id (Google assigns numbers; we derive one).
fn project_number(project: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, project.as_bytes());
    let n = u64::from_be_bytes(d.as_ref()[..8].try_into().expect("8 bytes")) % 900_000_000_000 + 100_000_000_000;
    n.to_string()
}

impl LocalCloud {
    pub async fn start(cfg: LocalCloudConfig) -> Result<LocalCloud, LocalCloudError> {
        if !iam::valid_principal(&cfg.admin_principal) {
            return Err(LocalCloudError::Principal(cfg.admin_principal));
        }
        let dir = cfg.state_dir.clone();
        let (project, admin_principal) = (cfg.project.clone(), cfg.admin_principal.clone());
        let (store, admin_token) = tokio::task::spawn_blocking(move || -> Result<_, LocalCloudError> {
            let store = store::Store::open(&dir)?;
            let conn = store.connect()?;
            // The admin owns the project; a second admin (another login) is added, not swapped in.
            let cfg = LocalCloudConfig {
                state_dir: dir.clone(),
                project,
                admin_principal,
                request_log: None,
                federated_token_ttl: None,
            };
            let existing: Option<String> = conn
                .query_row("SELECT policy FROM projects WHERE id = ?1", [&cfg.project], |r| r.get(0))
                .ok();
            let mut policy: serde_json::Value =
                existing.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or(serde_json::json!({"version": 1, "bindings": []}));
            let owners = policy["bindings"].as_array().and_then(|b| b.iter().find(|b| b["role"] == "roles/owner")).is_some();
            // A new project logs key use (Data Access logs of Cloud KMS), as dcr asks of Google
            // projects; an existing policy's audit configuration is the owner's and kept.
            if policy.get("auditConfigs").is_none() {
                policy["auditConfigs"] = logging::default_audit_configs();
            }
            if !owners {
                policy["bindings"].as_array_mut().expect("bindings").push(serde_json::json!({"role": "roles/owner", "members": []}));
            }
            for b in policy["bindings"].as_array_mut().expect("bindings") {
                if b["role"] == "roles/owner" {
                    let ms = b["members"].as_array_mut().expect("members");
                    if !ms.iter().any(|m| m == &serde_json::json!(cfg.admin_principal)) {
                        ms.push(serde_json::json!(cfg.admin_principal));
                    }
                }
            }
            conn.execute(
                "INSERT INTO projects (id, number, policy) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET policy = excluded.policy",
                rusqlite::params![cfg.project, project_number(&cfg.project), policy.to_string()],
            )
            .map_err(|e| store.db_err(e))?;
            let token = tokens::mint(&store, &cfg.admin_principal, 12 * 3600)?;
            Ok((store, token))
        })
        .await
        .map_err(|e| LocalCloudError::Listen(std::io::Error::other(e)))??;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(LocalCloudError::Listen)?;
        let addr = listener.local_addr().map_err(LocalCloudError::Listen)?;
        issuer::publish(&store)?;
        let http = dcr_gcp::Transport::anonymous(dcr_gcp::retry::RetryPolicy { max_attempts: 3, ..Default::default() })
            .map_err(|e| LocalCloudError::Listen(std::io::Error::other(e.to_string())))?;
        let vm = Arc::new(vm::Vms::new(store.clone(), SimulatedIssuer::from_store(store.clone()), addr));
        let reaper = vm.clone();
        // What killed processes left on this state directory goes before anything new runs.
        tokio::task::spawn_blocking(move || reaper.reap())
            .await
            .map_err(|e| LocalCloudError::Listen(std::io::Error::other(e)))?;
        let federated_token_secs =
            cfg.federated_token_ttl.map(|d| d.as_secs().max(1) as i64).unwrap_or(sts::FEDERATED_TOKEN_SECS);
        let endpoint = format!("http://{addr}");
        let app = Arc::new(app::App {
            store: store.clone(),
            request_log: cfg.request_log,
            http: Arc::new(http),
            vm,
            federated_token_secs,
            endpoint: endpoint.clone(),
            upload_hashes: Default::default(),
        });
        let router = axum::Router::new().fallback(server::handle).with_state(app);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(LocalCloud { endpoint, admin_token, store, stop: Some(tx), task: Some(task) })
    }

    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    pub fn admin_token(&self) -> String {
        self.admin_token.clone()
    }

    /// The simulated attestation issuer of this local cloud's state directory.
    pub fn issuer(&self) -> SimulatedIssuer {
        SimulatedIssuer::from_store(self.store.clone())
    }

    /// The project number the local cloud assigned to `project`.
    pub fn project_number(project: &str) -> String {
        project_number(project)
    }

    /// A token for another principal (tests; later, tokens STS issues).
    pub fn mint_token(&self, principal: &str, ttl: Duration) -> Result<String, LocalCloudError> {
        if !iam::valid_principal(principal) {
            return Err(LocalCloudError::Principal(principal.to_string()));
        }
        tokens::mint(&self.store, principal, ttl.as_secs() as i64)
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for LocalCloud {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
