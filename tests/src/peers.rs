//! Implementations nobody here wrote, to check dcr against: cel-python (an independent CEL engine)
//! and gcp-storage-emulator (an independent Cloud Storage JSON API server), both pinned and
//! installed into `$DCR_TOOLS_DIR/peers-venv` by `tests/install-tools.sh`.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn venv_bin(name: &str) -> PathBuf {
    let bin = crate::tools_dir().join("peers-venv/bin").join(name);
    assert!(bin.exists(), "{} is missing: run tests/install-tools.sh", bin.display());
    bin
}

/// Runs `tests/independent/cel_eval.py` under cel-python on `request` (see the script for the
/// shapes) and returns its answer.
pub fn cel_python(request: &Value) -> Value {
    let script = crate::fixtures::repo_root().join("tests/independent/cel_eval.py");
    let mut child = Command::new(venv_bin("python"))
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let input = serde_json::to_vec(request).expect("request serialises");
    let mut stdin = child.stdin.take().expect("stdin");
    // Written from a thread: a large answer must not block the script while we still write.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("cel_eval.py runs");
    writer.join().expect("writer thread").expect("cel_eval.py reads its request");
    assert!(out.status.success(), "cel_eval.py failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("cel_eval.py printed no JSON ({e}):\n{}", String::from_utf8_lossy(&out.stdout)))
}

/// A gcp-storage-emulator serving from memory on a free loopback port; stopped on drop.
pub struct StorageEmulator {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl StorageEmulator {
    /// Starts the emulator, its request log (one line per request) going to `log`.
    pub fn start(log: &Path) -> StorageEmulator {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free loopback port").port();
        let out = std::fs::File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = Command::new(venv_bin("gcp-storage-emulator"))
            .args(["start", "--host", "127.0.0.1", "--port", &port.to_string(), "--in-memory"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .expect("gcp-storage-emulator starts");
        eprintln!("gcp-storage-emulator on port {port}, log in {}", log.display());
        let mut emulator = StorageEmulator { child, base: format!("http://127.0.0.1:{port}") };
        emulator.wait_ready();
        emulator
    }

    /// Polls the emulator's health check until it answers (it needs a moment to import and bind).
    fn wait_ready(&mut self) {
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/", self.base)).send()
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gcp-storage-emulator exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "gcp-storage-emulator did not answer on {} within 60 s", self.base);
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for StorageEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
