//! Running Google's own Python client libraries against a local cloud: the venv
//! `tests/install-tools.sh` installs (`google-clients-venv/`, pinned by
//! `tests/google-clients/requirements.txt`), the pytest suite in `tests/google-clients/`, and the
//! Python block README.md shows for reading a released result.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::fixtures::repo_root;
use crate::workspace::Output;

/// Variables of the caller's environment that would point Google's libraries elsewhere (real
/// credentials, another emulator, a proxy between them and loopback).
const SCRUBBED: &[&str] = &[
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_UNIVERSE_DOMAIN",
    "STORAGE_EMULATOR_HOST",
    "API_ENDPOINT_OVERRIDE",
    "CLOUDSDK_CONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// The venv's Python; panics, saying how to install it, when it is missing.
pub fn python() -> PathBuf {
    let python = crate::tools_dir().join("google-clients-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run tests/install-tools.sh (it installs Google's client libraries pinned by \
         tests/google-clients/requirements.txt)",
        python.display()
    );
    python
}

/// `tests/google-clients/`: the pytest suite.
pub fn suite_dir() -> PathBuf {
    repo_root().join("tests/google-clients")
}

/// Runs the venv's Python with `args` in `dir`, with `env` on top of a scrubbed environment;
/// killed after `DCR_TF_TIMEOUT_SECS` like every command the harness runs.
pub fn run_python(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Output {
    let python = python();
    let mut cmd = Command::new(&python);
    cmd.args(args).current_dir(dir).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    // Nothing from these runs belongs in the repository: no bytecode next to the suite.
    cmd.env("PYTHONDONTWRITEBYTECODE", "1").env("NO_PROXY", "127.0.0.1,localhost");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let command = format!("{} {}", python.display(), args.join(" "));
    crate::workspace::run_with_timeout(cmd, command, dir, crate::workspace::timeout())
}

/// The first fenced ```python block after the line containing `marker` in README.md: README's
/// examples are run by the tests, so they cannot drift from what works.
pub fn readme_python(marker: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let after = readme.split_once(marker).unwrap_or_else(|| panic!("README.md has no {marker:?}")).1;
    let block = after
        .split_once("```python\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("README.md has no ```python block after {marker:?}"))
        .0;
    format!("{block}\n")
}

/// A directory under the harness's temporary root, removed on drop unless `DCR_KEEP_WORKSPACES=1`.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(label: &str) -> ScratchDir {
        ScratchDir(crate::workspace::unique_dir(&format!("{label}-{}", std::process::id()), "scratch"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if crate::workspace::keep_workspaces() {
            eprintln!("DCR_KEEP_WORKSPACES: kept {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
