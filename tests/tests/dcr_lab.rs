//! `dcr lab` on the quickstart's stand-in, loaded in a real browser: Debian's headless Chromium,
//! driven by Playwright (tests/browser/lab_page.py), opens the quickstart notebook in the lab,
//! runs every cell and reads back the table the last one renders. The table must be the stand-in's
//! aggregates (recomputed here from the file `dcr pull` wrote), and the notebook's `summary.csv`
//! must land in the lab's outputs directory: the notebook found its data through
//! `DCR_INPUTS_DIR` and wrote through `DCR_OUTPUTS_DIR`, as in the TEE. The page's screenshot is
//! kept in `target/test-artifacts/dcr-lab.png`.
//!
//! And what other users of the machine could reach: the lab listens on 127.0.0.1 only, refuses
//! requests without its token, the token is on no process's command line, and the kernel's
//! channels are Unix sockets in a 0700 directory (over TCP, any local user could subscribe to its
//! IOPub stream, which carries every output). When another process answers on the lab's port,
//! dcr lab refuses rather than hand out a URL with the token that leads there.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dcr_e2e::fixtures::{quickstart, repo_root, resource_values};
use dcr_e2e::google_clients::ScratchDir;
use dcr_e2e::terraform::Terraform;
use dcr_e2e::workspace::dcr_bin;
use serde_json::Value;

/// `dcr lab`, stopped (SIGTERM, as a terminal's Ctrl-C is handled alike) when dropped.
struct RunningLab {
    child: Child,
    serving: Value,
}

impl RunningLab {
    fn start(state_dir: &Path, inputs: &Path, outputs: &Path, notebooks: &Path) -> RunningLab {
        let mut child = Command::new(dcr_bin())
            .arg("--state-dir")
            .arg(state_dir)
            .args(["--json", "lab", "--inputs"])
            .arg(inputs)
            .arg("--outputs")
            .arg(outputs)
            .arg("--notebook-dir")
            .arg(notebooks)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dcr lab starts");
        // The first run installs JupyterLab from the embedded lock; the line comes once it answers.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let serving: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: dcr lab printed {line:?}"));
        assert!(serving["url"].is_string(), "{serving}");
        RunningLab { child, serving }
    }

    fn url(&self) -> &str {
        self.serving["url"].as_str().unwrap()
    }

    fn port(&self) -> u16 {
        let rest = self.url().strip_prefix("http://127.0.0.1:").expect("a loopback URL");
        rest.split('/').next().unwrap().parse().unwrap()
    }

    fn token(&self) -> &str {
        self.url().split("token=").nth(1).unwrap()
    }

    /// SIGTERM; the exit status within 20 s.
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
            let _ = self.child.kill();
        }
    }
}

/// The local addresses listening on `port` (IPv4 and IPv6), from /proc/net.
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table).unwrap_or_default().lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else { continue };
            let Some((addr, p)) = local.rsplit_once(':') else { continue };
            if *state == "0A" && u16::from_str_radix(p, 16) == Ok(port) {
                found.push(addr.to_string());
            }
        }
    }
    found
}

/// The pids of processes whose command line holds `needle`.
fn pids_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// Every process whose command line holds `needle`.
fn command_lines_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}

/// `region -> rows` of a CSV with a `region` column.
fn rows_per_region(csv: &str) -> BTreeMap<String, usize> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "region").expect("a region column");
    let mut counts = BTreeMap::new();
    for l in lines.filter(|l| !l.is_empty()) {
        *counts.entry(l.split(',').nth(at).unwrap().to_string()).or_default() += 1;
    }
    counts
}

fn artifacts_dir() -> PathBuf {
    let dir = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn dcr_lab_serves_the_stand_in_to_a_browser_as_the_tee_lays_it_out() {
    let ws = quickstart(&Terraform::latest());
    ws.init();
    // The dataset and its stand-in are all a lab needs.
    ws.apply_with(&["-target=dcr_dataset.patients"]);
    let state_dir = ws.path().join(".dcr");
    let dataset = resource_values(&ws.show_json(), "dcr_dataset", "patients")["id"].as_str().unwrap().to_string();
    let scratch = ScratchDir::new("dcr-lab");
    let (inputs, outputs, notebooks) =
        (scratch.path().join("inputs"), scratch.path().join("outputs"), scratch.path().join("notebooks"));
    let pulled = Command::new(dcr_bin())
        .arg("--state-dir")
        .arg(&state_dir)
        .args(["pull", &dataset, "--to"])
        .arg(&inputs)
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", String::from_utf8_lossy(&pulled.stderr));
    std::fs::create_dir_all(&notebooks).unwrap();
    std::fs::copy(ws.path().join("analysis.ipynb"), notebooks.join("analysis.ipynb")).unwrap();

    let mut lab = RunningLab::start(&state_dir, &inputs, &outputs, &notebooks);
    assert_eq!(listening_addresses(lab.port()), ["0100007F"], "the lab listens on 127.0.0.1 only");
    assert!(command_lines_with(lab.token()).is_empty(), "the lab's token is on a command line");
    let api = format!("http://127.0.0.1:{}/api/contents", lab.port());
    let http = reqwest::blocking::Client::new();
    assert_eq!(http.get(&api).send().unwrap().status().as_u16(), 403, "the lab answered without its token");
    let authorised = http.get(&api).header("Authorization", format!("token {}", lab.token())).send().unwrap();
    assert_eq!(authorised.status().as_u16(), 200);

    let screenshot = artifacts_dir().join("dcr-lab.png");
    let python = dcr_e2e::tools_dir().join("browser-venv/bin/python");
    assert!(python.is_file(), "{} is missing: run tests/install-tools.sh", python.display());
    let page = Command::new(&python)
        .arg(repo_root().join("tests/browser/lab_page.py"))
        .args([lab.url(), "analysis.ipynb", screenshot.to_str().unwrap()])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&page.stdout);
    assert!(page.status.success(), "{out}\n{}", String::from_utf8_lossy(&page.stderr));
    let report: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(screenshot.metadata().unwrap().len() > 10_000, "no screenshot at {}", screenshot.display());
    assert_eq!(report["title"], "analysis.ipynb - JupyterLab", "{report}");
    assert_eq!(report["files"], serde_json::json!(["analysis.ipynb"]), "{report}");
    assert_eq!(report["kernel"], "Python 3 (ipykernel)", "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");

    // The notebook's kernel (still running) talks over Unix sockets in a directory only this user
    // can enter, not loopback TCP ports: any local user could subscribe to a TCP IOPub stream.
    let venv = lab.serving["venv"].as_str().unwrap().to_string();
    let kernels: Vec<String> =
        pids_with("ipykernel_launcher").into_iter().filter(|p| pids_with(&venv).contains(p)).collect();
    assert_eq!(kernels.len(), 1, "one kernel of the lab's venv: {kernels:?}");
    let cmdline = String::from_utf8(std::fs::read(format!("/proc/{}/cmdline", kernels[0])).unwrap()).unwrap();
    let connection_file = cmdline.split('\0').skip_while(|a| *a != "-f").nth(1).expect("the kernel's -f");
    let connection: Value = serde_json::from_slice(&std::fs::read(connection_file).unwrap()).unwrap();
    assert_eq!(connection["transport"], "ipc", "{connection}");
    let runtime = Path::new(connection_file).parent().unwrap();
    assert!(connection["ip"].as_str().unwrap().starts_with(runtime.to_str().unwrap()), "{connection}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(runtime.metadata().unwrap().permissions().mode() & 0o777, 0o700, "{}", runtime.display());

    // What the page shows is the stand-in's data: the groups of at least min_group_size (10)
    // rows, counted here from the file dcr pull wrote.
    let stand_in = rows_per_region(&std::fs::read_to_string(inputs.join("patients.csv")).unwrap());
    let expected: BTreeMap<String, usize> = stand_in.into_iter().filter(|(_, n)| *n >= 10).collect();
    assert!(!expected.is_empty());
    let table = report["table"].as_array().unwrap();
    assert_eq!((&table[0][1], &table[0][2]), (&Value::from("region"), &Value::from("patients")), "{report}");
    let shown: BTreeMap<String, usize> = table[1..]
        .iter()
        .map(|row| (row[1].as_str().unwrap().to_string(), row[2].as_str().unwrap().parse().unwrap()))
        .collect();
    assert_eq!(shown, expected, "{report}");
    // And the notebook wrote where the TEE's output rules will look.
    let summary = std::fs::read_to_string(outputs.join("summary.csv")).unwrap();
    assert!(summary.starts_with("region,patients,"), "{summary}");
    assert_eq!(summary.lines().count(), expected.len() + 1, "{summary}");

    let port = lab.port();
    let status = lab.stop().expect("dcr lab stops on SIGTERM");
    assert!(status.success(), "{status}");
    assert!(listening_addresses(port).is_empty(), "JupyterLab still listens after dcr lab stopped");

    // A server of someone else's on the port the lab is to use: dcr lab refuses to hand out the
    // token with a URL that leads there.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let impostor_port = impostor.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in impostor.incoming().flatten() {
            use std::io::{Read, Write};
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        }
    });
    let refused = Command::new(dcr_bin())
        .args(["--json", "lab", "--port", &impostor_port.to_string(), "--inputs"])
        .arg(&inputs)
        .arg("--outputs")
        .arg(&outputs)
        .arg("--notebook-dir")
        .arg(&notebooks)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("another process answers on 127.0.0.1:") && !said.contains("token="), "{said}");

    ws.destroy();
}
