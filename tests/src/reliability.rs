//! Kill trials (issue 10, item 6): `terraform apply` of examples/quickstart is killed with SIGKILL
//! at a random point, then applied again. A trial passes when the second apply succeeds, the plan
//! after it is empty, nothing the killed run started is left (VM containers, their processes and
//! cgroups, mounted or unpacked roots, partly unpacked base images, launcher directories with
//! their tokens, provider processes), and after `terraform destroy` the local cloud holds no
//! bucket, live workload identity pool or instance, and its state directory no instance
//! directory, object or upload session.
//!
//! A trial kills one of two things, as its seed draws:
//! - [`Target::Provider`]: the provider process alone, as a crash or the OOM killer would.
//!   Terraform lives on, reports the plugin's death and records what finished before it.
//! - [`Target::Group`]: Terraform's whole process group (Terraform, the provider and the `runc run`
//!   it started; the container has a session of its own), as a lost terminal or machine would.
//!   Terraform records nothing of what was under way, so the next apply creates it again over
//!   whatever the killed run had already made.
//!
//! Nothing is cleaned up between the kill and the next apply: that apply's provider must find and
//! reclaim what the killed one left. Every check reads the machine (runc, /proc, the mount table,
//! the state directory) before any inspecting local cloud starts on the state directory, since
//! starting one reaps what dead runs left and would hide an orphan.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::fixtures::{PROJECT, quickstart};
use crate::local_cloud::{LocalCloudProcess, mounts_under, vm_containers};
use crate::terraform::Terraform;
use crate::workspace::{Output, Workspace, keep_workspaces, provider_bin};

const APPLY: &[&str] = &["apply", "-auto-approve", "-input=false", "-no-color"];
/// The zone `dcr_workload` takes on the local backend when the config names none.
const LOCAL_ZONE: &str = "local-a";
/// SIGKILL is delivered asynchronously and a killed process's children die after it: how long
/// what a kill (or a finished command) ends may take to be gone before it counts as left behind.
const SETTLE: Duration = Duration::from_secs(10);

/// What a trial kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The provider process alone.
    Provider,
    /// Terraform's process group: Terraform, the provider and the `runc run` it started.
    Group,
}

/// One kill trial: after `delay` from the start of `terraform apply`, SIGKILL `target`.
#[derive(Clone, Copy, Debug)]
pub struct Trial {
    /// Everything else is drawn from it: the same seed and window give the same trial.
    pub seed: u64,
    pub delay: Duration,
    pub target: Target,
}

impl Trial {
    /// The trial `seed` draws: a delay uniform in `[0, window)`, where `window` is how long an
    /// apply takes on this machine so that kills land all over it, and a target. The delay is a
    /// fraction of the window, so a seed replayed on a slower or faster machine kills at the same
    /// stage of the apply.
    pub fn draw(seed: u64, window: Duration) -> Trial {
        let mut rng = SplitMix64(seed);
        // The top 53 bits: every such fraction is exact in an f64.
        let fraction = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        let delay = window.mul_f64(fraction);
        let target = if rng.next() & 1 == 0 { Target::Provider } else { Target::Group };
        Trial { seed, delay, target }
    }
}

impl fmt::Display for Trial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match self.target {
            Target::Provider => "the provider",
            Target::Group => "terraform's process group",
        };
        write!(f, "seed {} delay {:.3}s kill {target}", self.seed, self.delay.as_secs_f64())
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a seeded generator in a few lines, the same sequence on
/// every machine, so a printed seed reproduces a trial.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// What was killed, when, and which resources Terraform had under way.
#[derive(Debug)]
pub struct Kill {
    /// From the start of the first apply.
    pub at: Duration,
    pub what: String,
    /// Resources Terraform had started and not finished (`dcr_workload.study: Creating...`).
    pub in_flight: Vec<String>,
}

/// A trial that converged.
#[derive(Debug)]
pub struct Outcome {
    /// `None` when the first apply ended before the kill.
    pub kill: Option<Kill>,
    /// How long the first apply ran: killed, or to its end.
    pub first_apply: Duration,
    /// What the killed run left for the next apply to reclaim (`1 mount, 4 process`): the checks
    /// at work on real leftovers.
    pub left_by_kill: String,
    pub reapply: Duration,
    /// The whole trial: workspace, init, both applies, plan, checks, destroy.
    pub total: Duration,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kill {
            Some(k) => {
                let during =
                    if k.in_flight.is_empty() { "no resource under way".to_string() } else { k.in_flight.join(", ") };
                write!(f, "killed {} at {:.3}s ({during})", k.what, k.at.as_secs_f64())?;
            }
            None => write!(f, "apply ended after {:.1}s, before the kill", self.first_apply.as_secs_f64())?,
        }
        let left = if self.left_by_kill.is_empty() { "nothing" } else { &self.left_by_kill };
        write!(f, "; left {left}; re-apply {:.1}s; trial {:.1}s", self.reapply.as_secs_f64(), self.total.as_secs_f64())
    }
}

/// Runs one trial on a fresh copy of examples/quickstart; `None` applies without a kill (how long
/// that first apply took is the window to draw delays from). Panics, saying what did not converge
/// or was left behind, unless the trial passes; the workspace is destroyed on the way out either
/// way.
pub fn run_trial(tf: &Terraform, trial: Option<&Trial>) -> Outcome {
    let started = Instant::now();
    let t = TrialWorkspace::new(quickstart(tf));
    t.ws.init();

    let apply_started = Instant::now();
    let mut kill = None;
    let first = t.ws.run_watched(APPLY, |child| {
        if let Some(trial) = trial
            && kill.is_none()
            && apply_started.elapsed() >= trial.delay
            && let Some(what) = send_kill(child, trial.target)
        {
            kill = Some((apply_started.elapsed(), what));
        }
    });
    let first_apply = apply_started.elapsed();
    let kill = kill.map(|(at, what)| Kill { at, what, in_flight: in_flight(&first.stdout) });
    if kill.is_none() {
        // Nothing interrupted it: an ordinary apply, which must succeed.
        assert!(first.success(), "the apply failed without being killed:\n{first}");
    }
    t.note_instances();
    // A provider the kill spared would go on changing things under the next apply.
    t.settle("a provider process outlived its terraform apply", |t| t.provider_processes());
    let left_by_kill = tally(&t.leftovers());

    let reapply_started = Instant::now();
    let reapplied = t.ws.run(APPLY);
    let reapply = reapply_started.elapsed();
    assert!(reapplied.success(), "the apply after the kill failed:\n{reapplied}\n\nthe killed apply:\n{first}");
    t.note_instances();
    let plan = t.ws.plan(&["-detailed-exitcode"]);
    assert!(
        plan.code() == Some(0) && !plan.timed_out,
        "the plan after the re-apply is not empty (exit 2: changes, 1: error):\n{plan}\n\nthe killed apply:\n{first}"
    );
    t.settle("left behind after the re-apply and its plan", TrialWorkspace::leftovers);

    t.ws.destroy();
    // Destroy keeps the privacy ledger of the DP-synthetic stand-in (by design): check it is all
    // that is left in the cloud, and remove it before looking for anything else.
    {
        let cloud = LocalCloudProcess::start(&provider_bin(), &t.state_dir(), &[]);
        cloud.remove_ledgers(PROJECT);
    }
    t.settle("left behind after destroy", |t| {
        let mut left = t.leftovers();
        left.extend(t.stored_after_destroy());
        left
    });
    t.assert_cloud_empty();
    Outcome { kill, first_apply, left_by_kill, reapply, total: started.elapsed() }
}

/// SIGKILLs `target` of the Terraform run `child` (a process group leader); what it killed, or
/// `None` while there is nothing to kill (no provider process runs at the moment).
fn send_kill(child: &Child, target: Target) -> Option<String> {
    let group = i32::try_from(child.id()).expect("a pid fits in pid_t");
    let pids = match target {
        Target::Group => vec![-group],
        Target::Provider => {
            processes().into_iter().filter(|p| p.pgrp == group && p.is_provider()).map(|p| p.pid).collect()
        }
    };
    let pids: Vec<i32> = pids
        .into_iter()
        .filter(|&pid| {
            // SAFETY: kill(2) on processes of a group we started and whose leader we have not
            // reaped (the caller runs while the child is alive), so none can be a reused id.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                return true;
            }
            let e = std::io::Error::last_os_error();
            // Gone since the scan (Terraform ends the plan's provider before the apply's starts;
            // a group ends with its apply): not killed, and the next call looks again.
            assert_eq!(e.raw_os_error(), Some(libc::ESRCH), "kill({pid}, SIGKILL): {e}");
            false
        })
        .collect();
    if pids.is_empty() {
        return None;
    }
    Some(match target {
        Target::Group => format!("terraform's process group {group}"),
        Target::Provider => {
            format!("the provider (pid {})", pids.iter().map(i32::to_string).collect::<Vec<_>>().join(", "))
        }
    })
}

/// Resources whose `Creating...` (or reading, modifying, destroying) Terraform printed without the
/// matching `complete`.
fn in_flight(stdout: &str) -> Vec<String> {
    let mut under_way = Vec::new();
    for line in stdout.lines() {
        let Some((addr, what)) = line.split_once(": ") else { continue };
        if ["Creating...", "Reading...", "Modifying...", "Destroying..."].contains(&what) {
            under_way.push(format!("{addr} {}", what.trim_end_matches("...").to_lowercase()));
        } else if what.contains(" complete after ") {
            under_way.retain(|u: &String| u.split(' ').next() != Some(addr));
        }
    }
    under_way
}

/// A quickstart workspace whose provider keeps its launcher directories in a temp directory of
/// its own, so that every one left there is this trial's (other runs on the machine share the
/// default one). Destroys what is left if the trial fails.
struct TrialWorkspace {
    ws: Workspace,
    tmp: PathBuf,
    /// Every VM instance id seen in the state directory: a killed run's instance directory goes
    /// when the next apply deletes its VM, but its processes are still known by the id.
    instances: std::cell::RefCell<BTreeSet<String>>,
}

impl TrialWorkspace {
    fn new(ws: Workspace) -> TrialWorkspace {
        // Inside the workspace, so it goes with it; short enough for the teeserver socket's path
        // (108 bytes) under it.
        let tmp = ws.path().join(".e2e/tmp");
        std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("cannot create {}: {e}", tmp.display()));
        ws.env("TMPDIR", tmp.to_str().expect("a UTF-8 temp dir"));
        TrialWorkspace { ws, tmp, instances: Default::default() }
    }

    fn state_dir(&self) -> PathBuf {
        self.ws.path().join(".dcr")
    }

    fn compute(&self) -> PathBuf {
        self.state_dir().join("compute")
    }

    fn note_instances(&self) {
        let mut ids = self.instances.borrow_mut();
        ids.extend(entries(&self.compute().join("instances")).iter().filter_map(|p| file_name(p)));
        ids.extend(vm_containers(&self.state_dir()).iter().map(|c| c.trim_start_matches("dcr-").to_string()));
    }

    /// Calls `left` until it finds nothing or [`SETTLE`] has passed; panics with what it found.
    fn settle(&self, what: &str, left: impl Fn(&Self) -> Vec<Leftover>) {
        let started = Instant::now();
        loop {
            let found = left(self);
            if found.is_empty() {
                return;
            }
            if started.elapsed() >= SETTLE {
                let found: Vec<String> = found.iter().map(Leftover::to_string).collect();
                panic!("{what} ({} in {}):\n  {}", found.len(), self.ws.path().display(), found.join("\n  "));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn provider_processes(&self) -> Vec<Leftover> {
        self.processes().into_iter().filter(|p| p.is_provider()).map(|p| Leftover::new("provider process", p)).collect()
    }

    /// Live processes of this trial: run in the workspace, naming it (the state directory in
    /// runc's arguments, the temp directory in the environment), or in a VM container's cgroup.
    fn processes(&self) -> Vec<Proc> {
        let ws = self.ws.path().to_string_lossy().into_owned();
        let cgroups: Vec<String> = self.instances.borrow().iter().map(|id| format!("/dcr-{id}")).collect();
        processes()
            .into_iter()
            .filter(|p| p.state != "Z")
            .filter(|p| {
                p.cwd.starts_with(&ws)
                    || p.cmdline.contains(&ws)
                    || p.environ.contains(&ws)
                    || p.cgroup.lines().any(|l| cgroups.iter().any(|c| l.ends_with(c.as_str())))
            })
            .collect()
    }

    /// What no finished apply may leave, whatever an earlier one did.
    fn leftovers(&self) -> Vec<Leftover> {
        let state = self.state_dir();
        let mut left: Vec<Leftover> =
            vm_containers(&state).into_iter().map(|c| Leftover::new("runc container", c)).collect();
        left.extend(mounts_under(&state).into_iter().map(|m| Leftover::new("mount", m)));
        for instance in entries(&self.compute().join("instances")) {
            let bundle = instance.join("bundle");
            if bundle.exists() {
                left.push(Leftover::new("VM root", bundle.display()));
            }
        }
        // A base image is unpacked into `.KEY.PID` and renamed to KEY when complete.
        for staging in entries(&self.compute().join("rootfs")) {
            if file_name(&staging).is_some_and(|n| n.starts_with('.')) {
                left.push(Leftover::new("partly unpacked base image", staging.display()));
            }
        }
        // SAFETY: geteuid has no preconditions.
        let tee = format!("dcr-tee-{}", unsafe { libc::geteuid() });
        for dir in entries(&self.tmp.join(&tee)) {
            left.push(Leftover::new("launcher directory", dir.display()));
        }
        // Where the launcher directories would go had the provider not taken TMPDIR.
        let shared = std::env::temp_dir().join(&tee);
        for id in self.instances.borrow().iter() {
            if shared.join(id).exists() {
                left.push(Leftover::new("launcher directory outside the trial's TMPDIR", shared.join(id).display()));
            }
        }
        left.extend(self.processes().into_iter().map(|p| Leftover::new("process", p)));
        let containers: BTreeSet<String> = self.instances.borrow().iter().map(|id| format!("dcr-{id}")).collect();
        left.extend(
            cgroups_named(Path::new("/sys/fs/cgroup"), &containers, 6)
                .into_iter()
                .map(|c| Leftover::new("cgroup", c.display())),
        );
        left
    }

    /// What the state directory still stores after destroy: instance directories (serial logs,
    /// supervisor files), objects and upload sessions. The base image caches stay, by design.
    fn stored_after_destroy(&self) -> Vec<Leftover> {
        let state = self.state_dir();
        let mut left = Vec::new();
        for dir in [self.compute().join("instances"), state.join("objects"), state.join("uploads")] {
            left.extend(entries(&dir).into_iter().map(|e| Leftover::new("stored after destroy", e.display())));
        }
        left
    }

    /// After destroy, the local cloud's own view: no bucket, no pool but soft-deleted ones (as
    /// Google keeps them for 30 days), no instance.
    fn assert_cloud_empty(&self) {
        let cloud = LocalCloudProcess::start(&provider_bin(), &self.state_dir(), &[]);
        let buckets = cloud.buckets(PROJECT);
        let pools: Vec<String> = cloud
            .pools(PROJECT)
            .into_iter()
            .filter(|p| p["state"] != "DELETED")
            .map(|p| format!("{} ({})", p["name"].as_str().unwrap_or("?"), p["state"]))
            .collect();
        let instances: Vec<String> = cloud
            .instances(PROJECT, LOCAL_ZONE)
            .into_iter()
            .map(|i| format!("{} ({})", i["name"].as_str().unwrap_or("?"), i["status"]))
            .collect();
        drop(cloud);
        assert!(
            buckets.is_empty() && pools.is_empty() && instances.is_empty(),
            "the local cloud holds resources after destroy: buckets {buckets:?}, pools {pools:?}, instances {instances:?}"
        );
    }
}

impl Drop for TrialWorkspace {
    fn drop(&mut self) {
        if !std::thread::panicking() || keep_workspaces() {
            return;
        }
        // A failed trial must not leave the machine worse for the next: destroy (its provider
        // reaps what dead runs left), then whatever that missed, before the workspace goes.
        let out: Output = self.ws.run(&["destroy", "-auto-approve", "-input=false", "-no-color"]);
        if !out.success() {
            eprintln!("cleaning up after a failed trial, destroy failed too:\n{out}");
        }
        let state = self.state_dir();
        for c in vm_containers(&state) {
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(self.compute().join("runc"))
                .args(["delete", "--force", &c])
                .status();
        }
        for m in mounts_under(&state) {
            let _ = std::process::Command::new("umount").args(["-l", &m]).status();
        }
    }
}

/// One thing a run left behind.
struct Leftover {
    kind: &'static str,
    what: String,
}

impl Leftover {
    fn new(kind: &'static str, what: impl fmt::Display) -> Leftover {
        Leftover { kind, what: what.to_string() }
    }
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.what)
    }
}

/// How many of each kind, as `2 processes, 1 mount`: what a killed run left for the next to reap.
fn tally(left: &[Leftover]) -> String {
    let mut kinds = std::collections::BTreeMap::new();
    for l in left {
        *kinds.entry(l.kind).or_insert(0) += 1;
    }
    kinds.iter().map(|(kind, n)| format!("{n} {kind}")).collect::<Vec<_>>().join(", ")
}

/// A process as /proc shows it.
struct Proc {
    pid: i32,
    /// One letter: `R`, `S`, `Z` (dead, not yet waited for)...
    state: String,
    pgrp: i32,
    exe: PathBuf,
    /// NULs as spaces.
    cmdline: String,
    cwd: PathBuf,
    environ: String,
    cgroup: String,
}

impl Proc {
    fn is_provider(&self) -> bool {
        self.state != "Z"
            && self.exe.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("terraform-provider-dcr"))
    }
}

impl fmt::Display for Proc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}] {} (cwd {})", self.pid, self.state, self.cmdline.trim_end(), self.cwd.display())
    }
}

/// Every process but this one (which runs Terraform and inspects; it is no trial's leftover).
fn processes() -> Vec<Proc> {
    let me = std::process::id();
    let pids = entries(Path::new("/proc")).into_iter().filter_map(|p| file_name(&p)?.parse::<u32>().ok());
    pids.filter(|&pid| pid != me).filter_map(read_proc).collect()
}

/// `None` when the process has gone.
fn read_proc(pid: u32) -> Option<Proc> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // The command name in parentheses may hold spaces: fields count from after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.to_string();
    let pgrp = fields.nth(1)?.parse().ok()?;
    let text = |name: &str| {
        std::fs::read(dir.join(name)).map(|b| String::from_utf8_lossy(&b).replace('\0', " ")).unwrap_or_default()
    };
    Some(Proc {
        pid: i32::try_from(pid).ok()?,
        state,
        pgrp,
        exe: std::fs::read_link(dir.join("exe")).unwrap_or_default(),
        cmdline: text("cmdline"),
        cwd: std::fs::read_link(dir.join("cwd")).unwrap_or_default(),
        environ: text("environ"),
        cgroup: text("cgroup"),
    })
}

/// The entries of `dir`, none when it does not exist.
fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|r| r.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    found.sort();
    found
}

/// Directories named one of `names` up to `depth` levels under `dir`, symlinks not followed: runc
/// makes a cgroup per container in every hierarchy, beside or under the cgroup it runs in.
fn cgroups_named(dir: &Path, names: &BTreeSet<String>, depth: usize) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found = Vec::new();
    for e in read.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if e.file_name().to_str().is_some_and(|n| names.contains(n)) {
            found.push(e.path());
        } else if depth > 1 {
            found.extend(cgroups_named(&e.path(), names, depth - 1));
        }
    }
    found
}

fn file_name(p: &Path) -> Option<String> {
    p.file_name().and_then(|n| n.to_str()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_trial_and_delays_cover_the_window() {
        let window = Duration::from_secs(8);
        let a = Trial::draw(42, window);
        let b = Trial::draw(42, window);
        assert_eq!((a.delay, a.target), (b.delay, b.target));
        let trials: Vec<Trial> = (0..200).map(|s| Trial::draw(s, window)).collect();
        assert!(trials.iter().all(|t| t.delay < window));
        // Every eighth of the window gets kills, and both targets are drawn.
        for eighth in 0..8 {
            let (lo, hi) = (window * eighth / 8, window * (eighth + 1) / 8);
            assert!(trials.iter().any(|t| t.delay >= lo && t.delay < hi), "no delay in [{lo:?}, {hi:?})");
        }
        assert!(trials.iter().any(|t| t.target == Target::Provider));
        assert!(trials.iter().any(|t| t.target == Target::Group));
    }

    #[test]
    fn resources_under_way_are_those_started_and_not_complete() {
        let out = "dcr_dataset.patients: Creating...\n\
                   dcr_dataset.patients: Creation complete after 0s [id=dcr-local-patients/patients]\n\
                   data.dcr_image_digest.study: Reading...\n\
                   data.dcr_image_digest.study: Read complete after 0s [name=diabetes-study]\n\
                   dcr_policy.study: Creating...\n\
                   dcr_policy.study: Creation complete after 0s [id=diabetes-study]\n\
                   dcr_workload.study: Creating...\n";
        assert_eq!(in_flight(out), vec!["dcr_workload.study creating"]);
        assert_eq!(in_flight(""), Vec::<String>::new());
    }

    #[test]
    fn cgroups_are_found_by_name_at_any_depth_within_reach() {
        let root = std::env::temp_dir().join(format!("dcr-cgroups-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["pids/dcr-1", "memory/a/b/dcr-1", "memory/a/b/c/d/e/dcr-1", "cpu/dcr-2"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let names = BTreeSet::from(["dcr-1".to_string()]);
        let mut found = cgroups_named(&root, &names, 4);
        found.sort();
        assert_eq!(found, vec![root.join("memory/a/b/dcr-1"), root.join("pids/dcr-1")]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn this_process_is_found_in_proc() {
        let me = read_proc(std::process::id()).expect("/proc of this process");
        assert_eq!(me.cwd, std::env::current_dir().unwrap());
        assert!(!me.is_provider());
        assert!(me.exe.is_file());
    }
}
