//! Running the notebook: papermill with the baked-in parameters, its log on our stdout (cell
//! outputs stay in the executed notebook, which never leaves), everything the kernel writes kept
//! in the memory-backed run directory, and a hard time limit.
//!
//! papermill prints a failing cell's traceback, exception message included, and an exception
//! message can quote data (`ValueError: bad value 'alice@example.com'`). The console is the
//! operator's, so from the first traceback on the log is withheld; only the failing cell's number
//! is kept, for the failure report.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::error::LauncherError;
use crate::settings::Settings;

pub async fn run(settings: &Settings, timeout_seconds: u64) -> Result<(), LauncherError> {
    let image = &settings.image_dir;
    let work = settings.work_dir();
    let home = work.join("home");
    std::fs::create_dir_all(&home)
        .map_err(|e| LauncherError::Setup(format!("cannot create {}: {e}", home.display())))?;
    let mut cmd = tokio::process::Command::new(&settings.python);
    cmd.args(["-m", "papermill"])
        .arg(image.join(dcr_attestation::workload::NOTEBOOK_FILE))
        .arg(work.join("executed.ipynb"))
        .arg("--parameters_file")
        .arg(image.join(dcr_attestation::workload::PARAMETERS_FILE))
        .arg("--cwd")
        .arg(&work)
        .args(["--kernel", "python3", "--no-progress-bar", "--log-level", "INFO"])
        .env("DCR_INPUTS_DIR", settings.inputs_dir())
        .env("DCR_OUTPUTS_DIR", settings.outputs_dir())
        // Kernel state (IPython profile, Jupyter runtime files, caches) stays in memory too.
        .env("HOME", &home)
        .env("JUPYTER_RUNTIME_DIR", home.join("jupyter"))
        .env("IPYTHONDIR", home.join("ipython"))
        .env("MPLCONFIGDIR", home.join("matplotlib"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout stops the kernel as well as papermill.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| LauncherError::Setup(format!("cannot start {} -m papermill: {e}", display(&settings.python))))?;
    let pid = child.id();
    let filter = Arc::new(Mutex::new(LogFilter::default()));
    let forwarders = [
        child.stdout.take().map(|o| tokio::spawn(forward(o, filter.clone()))),
        child.stderr.take().map(|e| tokio::spawn(forward(e, filter.clone()))),
    ];
    let waited = tokio::time::timeout(Duration::from_secs(timeout_seconds), child.wait()).await;
    if waited.is_ok() {
        for f in forwarders.into_iter().flatten() {
            let _ = f.await;
        }
    }
    let failed_cell = filter.lock().map(|f| f.failed_cell.clone()).unwrap_or_default();
    match waited {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(LauncherError::Notebook(match failed_cell {
            Some(cell) => format!(
                "cell {cell} raised an error (papermill exited with {status}); its message is withheld, \
                 since it may quote data, and the executed notebook stays inside the TEE"
            ),
            None => format!("papermill exited with {status}: a cell raised an error or the kernel died"),
        })),
        Ok(Err(e)) => Err(LauncherError::Notebook(format!("cannot wait for papermill: {e}"))),
        Err(_) => {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on the process group we created; no memory is involved.
                unsafe { libc::kill(-(pid as i32), libc::SIGKILL) };
            }
            let _ = child.wait().await;
            Err(LauncherError::Timeout(timeout_seconds))
        }
    }
}

/// What of papermill's log reaches the console.
#[derive(Default)]
struct LogFilter {
    withholding: bool,
    /// `In [3]`: the cell papermill reported as failing.
    failed_cell: Option<String>,
}

impl LogFilter {
    /// The line to print for `line`, if any.
    fn pass(&mut self, line: &str) -> Option<String> {
        if let Some(rest) = line.split("Exception encountered at \"").nth(1) {
            self.failed_cell = rest.split('"').next().map(str::to_string);
        }
        if self.withholding {
            return None;
        }
        if line.starts_with("Traceback")
            || line.contains("PapermillExecutionError")
            || line.contains("Exception encountered")
        {
            self.withholding = true;
            return Some("dcr-launcher: the rest of papermill's log is withheld: a traceback may quote data".into());
        }
        Some(line.to_string())
    }
}

async fn forward(stream: impl AsyncRead + Unpin, filter: Arc<Mutex<LogFilter>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let shown = filter.lock().ok().and_then(|mut f| f.pass(&line));
        if let Some(l) = shown {
            println!("{l}");
        }
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracebacks_are_withheld_and_the_failing_cell_kept() {
        let mut f = LogFilter::default();
        let log = [
            "Executing notebook with kernel: python3",
            "Traceback (most recent call last):",
            "papermill.exceptions.PapermillExecutionError: ",
            "Exception encountered at \"In [2]\":",
            "ValueError: secret-a1",
        ];
        let shown: Vec<String> = log.iter().filter_map(|l| f.pass(l)).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[1].contains("withheld"));
        assert!(!shown.iter().any(|l| l.contains("secret")));
        assert_eq!(f.failed_cell.as_deref(), Some("In [2]"));
    }
}
