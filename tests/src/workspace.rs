//! A Terraform working directory for one test: a fresh directory under
//! `std::env::temp_dir()/dcr-e2e/`, bound to one [`Terraform`], whose CLI configuration installs
//! `registry.terraform.io/dcr/dcr` from a local filesystem mirror and nothing from the network.
//!
//! Steps that a test expects to succeed (`init`, `apply`, `destroy`, `import`, `show_json`,
//! `plan_json`) panic when they do not, with the command, exit status, duration and Terraform's whole
//! stdout and stderr in the message: in CI that message is all there is to go on. `run` and `plan`
//! return the [`Output`] for tests that expect failures or inspect exit codes.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::terraform::Terraform;

/// The provider's address, as configs name it (`source = "dcr/dcr"`).
const PROVIDER_HOST_PATH: &str = "registry.terraform.io/dcr/dcr";
/// The mirror publishes the provider under the workspace's package version, which the provider
/// crate shares.
const PROVIDER_VERSION: &str = env!("CARGO_PKG_VERSION");
const PLATFORM: &str = "linux_amd64";

/// Environment variables from the caller's environment that would change what a Terraform command
/// does (extra arguments, variables, a plugin cache, providers reattached from elsewhere) or where
/// the provider goes (real Google credentials and projects). Tests that want any of them set them
/// with [`Workspace::env`].
const SCRUBBED_PREFIXES: &[&str] = &["TF_CLI_ARGS", "TF_VAR_", "GOOGLE_", "CLOUDSDK_"];
const SCRUBBED_VARS: &[&str] = &[
    "TF_WORKSPACE",
    "TF_INPUT",
    "TF_DATA_DIR",
    "TF_PLUGIN_CACHE_DIR",
    "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE",
    "TF_REATTACH_PROVIDERS",
    "TF_CLI_CONFIG_FILE",
];

/// Seconds a single Terraform command may take before it is killed (`DCR_TF_TIMEOUT_SECS`): a hung
/// command otherwise eats CI's whole time budget and explains nothing.
const DEFAULT_TIMEOUT_SECS: u64 = 900;

/// The directory collecting request logs across the suite, and the variable that tells the
/// provider's local cloud where to write its log.
pub const REQUEST_LOG_DIR_ENV: &str = "DCR_REQUEST_LOG_DIR";
pub const REQUEST_LOG_ENV: &str = "DCR_LOCAL_CLOUD_REQUEST_LOG";

/// What one Terraform command did.
#[derive(Debug)]
pub struct Output {
    /// The command as a person would type it: `terraform-1.15.5 apply -auto-approve ...`.
    pub command: String,
    /// The working directory it ran in.
    pub dir: PathBuf,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    /// Killed after `DCR_TF_TIMEOUT_SECS`.
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// The exit code; `None` when a signal ended Terraform.
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout then stderr, for searching diagnostics wherever Terraform printed them.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.timed_out { format!("timed out, {}", self.status) } else { self.status.to_string() };
        writeln!(f, "`{}` in {}: {how} after {:.1?}", self.command, self.dir.display(), self.duration)?;
        writeln!(f, "----- stdout -----\n{}", self.stdout.trim_end())?;
        write!(f, "----- stderr -----\n{}", self.stderr.trim_end())
    }
}

/// One Terraform working directory; removed on drop unless `DCR_KEEP_WORKSPACES=1`.
pub struct Workspace {
    dir: PathBuf,
    tf: Terraform,
    cli_config: PathBuf,
    home: PathBuf,
    /// Behind a lock so that a shared `&Workspace` (several applies on scoped threads) can still be
    /// given variables.
    env: Mutex<BTreeMap<String, String>>,
    keep: bool,
}

impl Workspace {
    /// A workspace whose Terraform installs the dcr provider built by cargo: `DCR_PROVIDER_BIN`, or
    /// `target/debug/terraform-provider-dcr` of this repository. Panics when that binary is missing.
    #[track_caller]
    pub fn new(tf: &Terraform) -> Workspace {
        let mirror = shared_mirror();
        Workspace::create(tf, |_| mirror.to_path_buf())
    }

    /// A workspace whose mirror publishes `provider_bin` as the dcr provider, for this workspace
    /// alone (a stand-in, or a provider built some other way).
    #[track_caller]
    pub fn with_provider_bin(tf: &Terraform, provider_bin: &Path) -> Workspace {
        Workspace::create(tf, |harness| {
            let mirror = harness.join("mirror");
            if let Err(e) = build_mirror(provider_bin, &mirror) {
                panic!("cannot publish {} in a provider mirror: {e}", provider_bin.display());
            }
            mirror
        })
    }

    /// A workspace for configs that use no dcr provider; its CLI configuration is the same but its
    /// mirror is empty, so it runs without a provider build.
    #[track_caller]
    pub fn without_provider(tf: &Terraform) -> Workspace {
        Workspace::create(tf, |harness| {
            let mirror = harness.join("mirror");
            std::fs::create_dir_all(&mirror).unwrap_or_else(|e| panic!("cannot create {}: {e}", mirror.display()));
            mirror
        })
    }

    fn create(tf: &Terraform, mirror: impl FnOnce(&Path) -> PathBuf) -> Workspace {
        let keep = keep_workspaces();
        let dir = unique_dir(&format!("ws-{}", std::process::id()), &format!("tf{}", tf.version));
        // Harness files live in a subdirectory: Terraform reads only the top level's *.tf files.
        let harness = dir.join(".e2e");
        let home = harness.join("home");
        std::fs::create_dir_all(&home).unwrap_or_else(|e| panic!("cannot create {}: {e}", home.display()));
        let mirror = mirror(&harness);
        let cli_config = harness.join("cli.tfrc");
        std::fs::write(&cli_config, cli_config_text(&mirror))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", cli_config.display()));
        let mut env = BTreeMap::new();
        // Every request the provider's local cloud serves in this workspace is logged for the
        // suite-wide conformance check (tests/run.sh sets the directory).
        if let Some(logs) = std::env::var_os(REQUEST_LOG_DIR_ENV).filter(|d| !d.is_empty()) {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let log = PathBuf::from(logs).join(format!("{name}.jsonl"));
            env.insert(REQUEST_LOG_ENV.to_string(), log.to_string_lossy().into_owned());
        }
        Workspace { dir, tf: tf.clone(), cli_config, home, env: Mutex::new(env), keep }
    }

    /// The working directory Terraform runs in.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn terraform(&self) -> &Terraform {
        &self.tf
    }

    /// Writes a text file (a config, a CSV) relative to the working directory, creating parent
    /// directories; returns its path.
    #[track_caller]
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        self.write_bytes(name, contents.as_bytes())
    }

    /// [`Workspace::write`] for bytes that need not be text.
    #[track_caller]
    pub fn write_bytes(&self, name: &str, contents: &[u8]) -> PathBuf {
        let rel = Path::new(name);
        assert!(
            rel.components().all(|c| matches!(c, std::path::Component::Normal(_))),
            "Workspace::write takes a plain relative path, got {name:?}"
        );
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Sets an environment variable for every later command (overriding the harness's own).
    pub fn env(&self, key: &str, value: &str) -> &Self {
        self.env.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), value.to_string());
        self
    }

    /// Runs `terraform <args>` in the workspace and returns what it did, whatever the exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let (cmd, command) = self.command(args);
        run_with_timeout(cmd, command, &self.dir, timeout())
    }

    /// [`Workspace::run`] in a process group of its own (as [`Workspace::spawn`]), calling `watch`
    /// with the running child every few milliseconds until it ends: a test acts on Terraform or the
    /// processes it started (signals them) while its output is still collected in full.
    pub fn run_watched(&self, args: &[&str], watch: impl FnMut(&Child)) -> Output {
        use std::os::unix::process::CommandExt;
        let (mut cmd, command) = self.command(args);
        cmd.process_group(0);
        run_watching(cmd, command, &self.dir, timeout(), watch)
    }

    /// Starts `terraform <args>` without waiting, its output piped, in a process group of its own
    /// (the child's pid is the group's id): a test interrupts it as a terminal's Ctrl-C does, by
    /// signalling the group. Terraform 1.0.3 runs under panicwrap, whose parent process ignores a
    /// SIGINT sent to it alone.
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let (mut cmd, command) = self.command(args);
        cmd.process_group(0);
        cmd.spawn().unwrap_or_else(|e| panic!("cannot start {command}: {e}"))
    }

    /// The command `terraform <args>` in the workspace, with the harness's environment, and how to
    /// show it.
    fn command(&self, args: &[&str]) -> (Command, String) {
        let extra_env = self.env.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut cmd = Command::new(&self.tf.bin);
        cmd.args(args).current_dir(&self.dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if SCRUBBED_VARS.contains(&key) || SCRUBBED_PREFIXES.iter().any(|p| key.starts_with(p)) {
                cmd.env_remove(key);
            }
        }
        cmd.env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            // Terraform and the plugins it starts write under HOME; a private one keeps a developer's
            // own ~/.terraform.d and cloud credentials out of the test.
            .env("HOME", &self.home)
            // ... but the base runtime image is the machine's, built once into the real cache.
            .env(
                "DCR_CACHE_DIR",
                crate::clean_room::base_layout().parent().and_then(|p| p.parent()).expect("cache dir"),
            )
            .envs(&extra_env);

        let command = std::iter::once(self.tf.bin.file_name().map_or("terraform".into(), |n| n.to_string_lossy()))
            .chain(args.iter().map(|a| (*a).into()))
            .collect::<Vec<_>>()
            .join(" ");
        let command = if extra_env.is_empty() { command } else { format!("{} {command}", render_env(&extra_env)) };
        (cmd, command)
    }

    /// Runs `terraform <args>` and panics with the full output unless it exits 0.
    #[track_caller]
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        if !out.success() {
            panic!("terraform {} failed:\n{out}", self.tf.version);
        }
        out
    }

    #[track_caller]
    pub fn init(&self) -> Output {
        self.run_ok(&["init", "-input=false", "-no-color"])
    }

    /// `terraform plan -input=false -no-color <extra>`, whatever its exit status: with
    /// `-detailed-exitcode`, 0 means no changes, 1 an error and 2 changes.
    pub fn plan(&self, extra: &[&str]) -> Output {
        let mut args = vec!["plan", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// Panics unless a plan shows no changes: what a user sees right after an apply or an import.
    #[track_caller]
    pub fn assert_no_changes(&self) {
        let out = self.plan(&["-detailed-exitcode"]);
        match out.code() {
            Some(0) if !out.timed_out => {}
            Some(2) => panic!("terraform {}: the plan is not empty:\n{out}", self.tf.version),
            _ => panic!("terraform {} plan failed:\n{out}", self.tf.version),
        }
    }

    #[track_caller]
    pub fn apply(&self) -> Output {
        self.apply_with(&[])
    }

    /// `terraform apply -auto-approve -input=false -no-color <extra>`; panics unless it succeeds.
    #[track_caller]
    pub fn apply_with(&self, extra: &[&str]) -> Output {
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color"];
        args.extend_from_slice(extra);
        self.run_ok(&args)
    }

    /// For tests of refusals: runs apply and panics if it succeeds.
    #[track_caller]
    pub fn apply_fails(&self) -> Output {
        let out = self.run(&["apply", "-auto-approve", "-input=false", "-no-color"]);
        if out.success() {
            panic!("terraform {}: apply succeeded but the test expected it to fail:\n{out}", self.tf.version);
        }
        out
    }

    #[track_caller]
    pub fn destroy(&self) -> Output {
        self.run_ok(&["destroy", "-auto-approve", "-input=false", "-no-color"])
    }

    #[track_caller]
    pub fn import(&self, addr: &str, id: &str) -> Output {
        self.run_ok(&["import", "-input=false", "-no-color", addr, id])
    }

    /// The state as `terraform show -json` renders it.
    #[track_caller]
    pub fn show_json(&self) -> Value {
        let out = self.run_ok(&["show", "-json", "-no-color"]);
        parse_json(&out, self)
    }

    /// Plans into `tfplan` and returns `terraform show -json tfplan`: the plan as a reviewer (or a
    /// secret scanner) sees it.
    #[track_caller]
    pub fn plan_json(&self) -> Value {
        self.run_ok(&["plan", "-input=false", "-no-color", "-out=tfplan"]);
        let out = self.run_ok(&["show", "-json", "-no-color", "tfplan"]);
        parse_json(&out, self)
    }

    /// The raw `terraform.tfstate`, or "" when Terraform has written none.
    #[track_caller]
    pub fn state_file_text(&self) -> String {
        let path = self.dir.join("terraform.tfstate");
        match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => panic!("cannot read {}: {e}", path.display()),
        }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("DCR_KEEP_WORKSPACES: kept {} (terraform {})", self.dir.display(), self.tf.version);
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("warning: cannot remove workspace {}: {e}", self.dir.display());
        }
    }
}

#[track_caller]
fn parse_json(out: &Output, ws: &Workspace) -> Value {
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("terraform {} printed no JSON ({e}):\n{out}", ws.tf.version))
}

fn render_env(env: &BTreeMap<String, String>) -> String {
    env.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(" ")
}

pub(crate) fn keep_workspaces() -> bool {
    std::env::var("DCR_KEEP_WORKSPACES").is_ok_and(|v| v == "1")
}

pub(crate) fn timeout() -> Duration {
    let secs = std::env::var("DCR_TF_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_TIMEOUT_SECS);
    Duration::from_secs(secs)
}

/// Runs `cmd` with stdout and stderr captured, killing it at `limit`.
pub(crate) fn run_with_timeout(cmd: Command, command: String, dir: &Path, limit: Duration) -> Output {
    run_watching(cmd, command, dir, limit, |_| {})
}

/// [`run_with_timeout`], calling `watch` with the child while it runs.
fn run_watching(
    mut cmd: Command,
    command: String,
    dir: &Path,
    limit: Duration,
    mut watch: impl FnMut(&Child),
) -> Output {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start `{command}` in {}: {e}; is the tools directory intact? run tests/install-tools.sh",
            dir.display()
        )
    });
    // Readers append to shared buffers and report EOF over a channel, so that after a kill a
    // grandchild that inherited a pipe and lives on cannot hold the test hostage or swallow what
    // was printed before it.
    let buffers = [Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new()))];
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let pipes: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout is piped")),
        Box::new(child.stderr.take().expect("stderr is piped")),
    ];
    for (mut pipe, buffer) in pipes.into_iter().zip(buffers.iter().cloned()) {
        let done_tx = done_tx.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                buffer.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&chunk[..n]);
            }
            let _ = done_tx.send(());
        });
    }
    drop(done_tx);

    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= limit => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().unwrap_or_else(|e| panic!("cannot wait for `{command}`: {e}"));
            }
            Ok(None) => {
                watch(&child);
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot wait for `{command}`: {e}"),
        }
    };
    let duration = start.elapsed();

    let grace = Instant::now() + Duration::from_secs(if timed_out { 5 } else { 60 });
    let mut closed = 0;
    while closed < 2 && done_rx.recv_timeout(grace.saturating_duration_since(Instant::now())).is_ok() {
        closed += 1;
    }
    let [stdout, stderr] =
        buffers.map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned());
    let mut stderr = stderr;
    if timed_out {
        stderr.push_str(&format!("\n[dcr-e2e: killed after {limit:?}; DCR_TF_TIMEOUT_SECS sets the limit]\n"));
    }
    if closed < 2 {
        stderr.push_str("\n[dcr-e2e: a process Terraform started still holds its output open; output may be cut]\n");
    }
    Output { command, dir: dir.to_path_buf(), status, stdout, stderr, duration, timed_out }
}

/// A new directory `<tmp>/dcr-e2e/<prefix>-<n>-<suffix>`, unique among concurrent test processes
/// (the prefix carries the pid) and threads (the counter).
pub(crate) fn unique_dir(prefix: &str, suffix: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let base = base_dir();
    loop {
        let dir = base.join(format!("{prefix}-{}-{suffix}", NEXT.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            // Left by an earlier process with the same pid (DCR_KEEP_WORKSPACES, or a crash).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create workspace {}: {e}", dir.display()),
        }
    }
}

fn base_dir() -> PathBuf {
    let base = std::env::temp_dir().join("dcr-e2e");
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("cannot create {}: {e}", base.display()));
    base
}

fn cli_config_text(mirror: &Path) -> String {
    // HCL strings take JSON escapes; a path is a string like any other.
    let mirror = serde_json::to_string(&mirror.to_string_lossy()).expect("a string serializes");
    format!(
        r#"provider_installation {{
  filesystem_mirror {{
    path    = {mirror}
    include = ["{PROVIDER_HOST_PATH}"]
  }}
  direct {{
    exclude = ["{PROVIDER_HOST_PATH}"]
  }}
}}
"#
    )
}

/// Lays out the unpacked mirror `HOST/NAMESPACE/TYPE/VERSION/OS_ARCH/terraform-provider-TYPE_vVERSION`
/// around a copy of `bin`. A copy, not a link: cargo may rebuild the binary while tests run, and a
/// binary that changes under Terraform fails its lock-file checksum.
fn build_mirror(bin: &Path, mirror: &Path) -> std::io::Result<()> {
    let dest = mirror.join(PROVIDER_HOST_PATH).join(PROVIDER_VERSION).join(PLATFORM);
    std::fs::create_dir_all(&dest)?;
    std::fs::copy(bin, dest.join(format!("terraform-provider-dcr_v{PROVIDER_VERSION}")))?;
    Ok(())
}

/// The provider binary the tests exercise.
pub fn provider_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DCR_PROVIDER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits inside the workspace root");
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        Some(t) => root.join(t),
        None => root.join("target"),
    };
    target.join("debug/terraform-provider-dcr")
}

/// The launcher binary (`cargo build -p dcr-launcher`, which tests/provider-env.sh runs).
pub fn launcher_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("DCR_LAUNCHER_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let bin = provider_bin().with_file_name("dcr-launcher");
    assert!(bin.is_file(), "{} does not exist: run `cargo build -p dcr-launcher`", bin.display());
    bin
}

/// The `dcr` command (`cargo build -p dcr-cli`, which tests/provider-env.sh runs).
pub fn dcr_bin() -> PathBuf {
    let bin = provider_bin().with_file_name("dcr");
    assert!(bin.is_file(), "{} does not exist: run `cargo build -p dcr-cli`", bin.display());
    bin
}

/// One mirror per test process: copying a debug provider binary for every workspace would cost
/// more than some of the tests.
#[track_caller]
fn shared_mirror() -> &'static Path {
    static MIRROR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let mirror = MIRROR.get_or_init(|| {
        let bin = provider_bin();
        if !bin.is_file() {
            return Err(format!(
                "the provider binary {} does not exist: run `cargo build -p terraform-provider-dcr` \
                 (or point DCR_PROVIDER_BIN at a build)",
                bin.display()
            ));
        }
        let base = base_dir();
        collect_stale_mirrors(&base);
        let pid = std::process::id();
        // Kept workspaces link into the mirror (Terraform symlinks unpacked mirror packages), so
        // a kept run's mirror is named so that collection leaves it alone.
        let name = if keep_workspaces() { format!("kept-mirror-{pid}") } else { format!("mirror-{pid}") };
        let mirror = base.join(name);
        let _ = std::fs::remove_dir_all(&mirror);
        build_mirror(&bin, &mirror).map_err(|e| {
            format!("cannot publish {} in the provider mirror {}: {e}", bin.display(), mirror.display())
        })?;
        Ok(mirror)
    });
    match mirror {
        Ok(path) => path,
        Err(msg) => panic!("{msg}"),
    }
}

/// Removes the mirrors of test processes that are gone: statics are never dropped, so each process
/// leaves its copy of the provider behind.
fn collect_stale_mirrors(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("mirror-")).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_config_names_the_mirror_and_excludes_the_provider_from_direct() {
        let text = cli_config_text(Path::new("/tmp/a \"b\"/mirror"));
        assert!(text.contains(r#"path    = "/tmp/a \"b\"/mirror""#), "{text}");
        assert!(text.contains(r#"include = ["registry.terraform.io/dcr/dcr"]"#), "{text}");
        assert!(text.contains(r#"exclude = ["registry.terraform.io/dcr/dcr"]"#), "{text}");
    }

    #[test]
    fn mirror_layout_is_terraforms_unpacked_layout() {
        let dir = unique_dir("unit", "mirror");
        let bin = dir.join("provider");
        std::fs::write(&bin, "stand-in").unwrap();
        build_mirror(&bin, &dir.join("m")).unwrap();
        let published = dir.join("m/registry.terraform.io/dcr/dcr/0.1.0/linux_amd64/terraform-provider-dcr_v0.1.0");
        assert_eq!(std::fs::read_to_string(&published).unwrap(), "stand-in");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn workspace_directories_are_unique_and_removed_on_drop() {
        let tf = Terraform::latest();
        let a = Workspace::without_provider(&tf);
        let b = Workspace::without_provider(&tf);
        assert_ne!(a.path(), b.path());
        assert!(a.path().starts_with(std::env::temp_dir().join("dcr-e2e")));
        let written = a.write("sub/dir/file.txt", "x");
        assert_eq!(std::fs::read_to_string(written).unwrap(), "x");
        assert_eq!(a.state_file_text(), "");
        let path = a.path().to_path_buf();
        drop(a);
        assert_eq!(path.exists(), keep_workspaces());
    }

    #[test]
    fn a_failing_command_reports_its_whole_output() {
        let tf = Terraform::latest();
        let ws = Workspace::without_provider(&tf);
        ws.write("main.tf", "this is not HCL {");
        let out = ws.run(&["validate", "-no-color"]);
        assert!(!out.success());
        let report = out.to_string();
        assert!(report.contains("validate -no-color"), "{report}");
        assert!(report.contains("----- stderr -----") && out.text().contains("main.tf"), "{report}");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| ws.init()))
            .expect_err("init of a broken config must panic");
        let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("init -input=false -no-color") && msg.contains("main.tf"), "{msg}");
    }

    #[test]
    fn a_command_past_its_limit_is_killed_and_reported() {
        let mut cmd = Command::new("sh");
        // The sleep outlives the killed shell and keeps the pipes open, as a stray plugin would.
        cmd.args(["-c", "echo started; sleep 8; true"]).stdout(Stdio::piped()).stderr(Stdio::piped());
        let start = Instant::now();
        let out = run_with_timeout(cmd, "sh -c ...".into(), Path::new("."), Duration::from_millis(300));
        assert!(start.elapsed() < Duration::from_secs(15), "{out}");
        assert!(out.timed_out && !out.success(), "{out}");
        assert_eq!(out.stdout, "started\n");
        assert!(out.stderr.contains("DCR_TF_TIMEOUT_SECS") && out.stderr.contains("may be cut"), "{out}");
    }
}
