//! The simulated TEE against the other users of the machine (issue 10, item 1). Every check runs a
//! command as an unprivileged user (`nobody`, through `setpriv`) while a workload runs, and again
//! after its provider was killed: the attestation token, the teeserver socket and the ports the
//! workload opens (the Jupyter kernel's among them) must be out of reach, and what a killed run
//! left must be gone once the next local cloud starts on the state directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dcr_e2e::clean_room::{AGGREGATE, base_image, notebook};
use dcr_e2e::fixtures::SMALL_CSV;
use dcr_e2e::local_cloud::{LocalCloudProcess, mounts_under, vm_container_pid, vm_containers};
use dcr_e2e::terraform::Terraform;
use dcr_e2e::trial_study::config;
use dcr_e2e::workspace::{Workspace, provider_bin};

/// Runs `args` as `nobody`; true when the command succeeded.
fn as_nobody(args: &[&str]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run setpriv (util-linux): {e}"))
        .status
        .success()
}

/// The host side of a VM's `/run/container_launcher`, as the local cloud lays it out.
fn launcher_dir(instance_id: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    std::env::temp_dir().join(format!("dcr-tee-{uid}")).join(instance_id)
}

/// Whether the container `pid` listens on 127.0.0.1:`port` in its own view of the network.
fn listens(pid: u32, port: u16) -> bool {
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3 && f[1] == local && f[3] == "0A"
    })
}

/// Waits until a VM container runs and listens on `port`; returns (container, instance id, pid).
fn running_vm(state_dir: &Path, port: u16, apply: &mut std::process::Child) -> (String, String, u32) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < Duration::from_secs(300), "the workload never listened on {port}");
        assert!(apply.try_wait().unwrap().is_none(), "terraform ended before the workload listened");
        if let Some(container) = vm_containers(state_dir).into_iter().next()
            && let Some(pid) = vm_container_pid(state_dir, &container)
            && listens(pid, port)
        {
            let id = container.trim_start_matches("dcr-").to_string();
            return (container, id, pid);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// SIGKILL is delivered asynchronously: waits until the provider that supervised the run (named
/// in the launcher directory's `supervisor` file as `PID:START_TIME`) has died.
fn wait_for_supervisor_to_die(launcher_dir: &Path) {
    let supervisor = std::fs::read_to_string(launcher_dir.join("supervisor")).unwrap();
    let pid = supervisor.trim().split(':').next().unwrap().to_string();
    let started = Instant::now();
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let state =
            state.as_deref().and_then(|s| s.rsplit_once(')')).and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, None | Some("Z" | "X")) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the killed provider {pid} is still running");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A notebook that opens a port of its own, as the kernel does, then works for `seconds`.
fn listening_notebook(port: u16, seconds: u32) -> String {
    notebook(&format!(
        "import socket\nserver = socket.socket()\nserver.bind(('127.0.0.1', {port}))\nserver.listen()\n{}",
        AGGREGATE.replace("time.sleep(sleep_seconds)", &format!("time.sleep({seconds})"))
    ))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn another_user_reaches_nothing_of_a_running_or_killed_run() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("the local backend runs workloads with runc as root; run the tests as root");
    }
    base_image();
    let ws = Workspace::new(&Terraform::latest());
    let state_dir = ws.path().join(".dcr");
    let port = free_port();
    ws.write("main.tf", &config(10_000));
    ws.write("data.csv", SMALL_CSV);
    ws.write("reviewed.ipynb", &listening_notebook(port, 600));
    ws.write("run.ipynb", &listening_notebook(port, 600));
    ws.init();
    let mut apply = ws.spawn(&["apply", "-auto-approve", "-input=false", "-no-color"]);
    let (container, id, pid) = running_vm(&state_dir, port, &mut apply);

    // The workload's port exists in the VM's network only: not on the host's loopback.
    let tcp = format!("exec 3<>/dev/tcp/127.0.0.1/{port}");
    assert!(!as_nobody(&["bash", "-c", &tcp]), "another user connected to the workload's port {port}");
    assert!(!Command::new("bash").args(["-c", &tcp]).status().unwrap().success(), "the port is on the host");
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
    assert_ne!(ns(&pid.to_string()), ns("self"), "the container shares the host's network namespace");

    // The token and the teeserver socket: present, and not for anyone else.
    let dir = launcher_dir(&id);
    let token = dir.join("attestation_verifier_claims_token");
    let socket = dir.join("teeserver.sock");
    assert!(token.is_file() && socket.exists(), "the launcher directory is laid out at {}", dir.display());
    for path in [&token, &socket, &dir] {
        assert!(!as_nobody(&["stat", path.to_str().unwrap()]), "another user can see {}", path.display());
    }
    assert!(!as_nobody(&["cat", token.to_str().unwrap()]), "another user read the attestation token");
    assert!(!as_nobody(&["ls", dir.to_str().unwrap()]), "another user listed the launcher directory");

    // Kill the provider mid-run (Terraform's whole process group, as an OOM kill or a lost
    // machine would): nothing cleans up, so the next local cloud on this state directory must.
    // SAFETY: kill(2) on the process group of a child we started and have not reaped.
    assert_eq!(unsafe { libc::kill(-(apply.id() as i32), libc::SIGKILL) }, 0);
    let _ = apply.wait();
    wait_for_supervisor_to_die(&dir);
    let cloud = LocalCloudProcess::start(&provider_bin(), &state_dir, &[]);
    assert!(!dir.exists(), "the killed run's launcher directory (and token) outlived the next start");
    assert!(!vm_containers(&state_dir).contains(&container), "the killed run's container outlived the next start");
    let bundle = state_dir.join("compute/instances").join(&id).join("bundle");
    assert!(!bundle.exists(), "the killed run's root outlived the next start: {}", bundle.display());
    assert_eq!(mounts_under(&state_dir), Vec::<String>::new(), "mounts outlived the next start");
    drop(cloud);

    // The next apply runs the study to its end, and leaves nothing behind either.
    ws.write("reviewed.ipynb", &notebook(AGGREGATE));
    ws.write("run.ipynb", &notebook(AGGREGATE));
    ws.apply();
    ws.assert_no_changes();
    let instances = std::fs::read_dir(state_dir.join("compute/instances")).unwrap();
    for instance in instances.flatten() {
        let id = instance.file_name().to_string_lossy().into_owned();
        assert!(!launcher_dir(&id).exists(), "a finished run's launcher directory is left");
        assert!(!instance.path().join("bundle").exists(), "a finished run's root is left");
    }
    assert_eq!(vm_containers(&state_dir), Vec::<String>::new());
    assert_eq!(mounts_under(&state_dir), Vec::<String>::new());
    ws.destroy();
}
