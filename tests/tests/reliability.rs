//! Kill trials (issue 10, item 6): the quickstart's `terraform apply` is SIGKILLed at random
//! points — the provider alone or Terraform's whole process group — and applied again; every trial
//! must converge (the re-apply succeeds, the next plan is empty) and leave nothing behind, before
//! and after destroy (see `dcr_e2e::reliability`).
//!
//! `DCR_KILL_TRIALS` trials (5; tests/bench/kill-trials.sh runs 20), trial `i` drawn from seed
//! `DCR_KILL_SEED + i` (a fresh seed each run unless set). Delays are uniform over the duration
//! of an uninterrupted apply, measured first on this machine, or over `DCR_KILL_WINDOW_MS`. A
//! failing trial prints the variables that replay it alone.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dcr_e2e::clean_room::base_image;
use dcr_e2e::reliability::{Trial, run_trial};
use dcr_e2e::terraform::Terraform;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    Some(value.parse().unwrap_or_else(|e| panic!("{name}={value:?} is not a whole number: {e}")))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(a panic without a message)".into())
}

#[test]
fn a_quickstart_apply_killed_anywhere_converges_on_the_next_apply_and_leaves_nothing() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the local backend runs workloads with runc as root; run the tests as root"
    );
    base_image();
    let tf = Terraform::latest();
    let started = Instant::now();
    let trials = env_u64("DCR_KILL_TRIALS").unwrap_or(5);
    let seed = env_u64("DCR_KILL_SEED").unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock is after 1970");
        // Whole seconds keep the printed seed short; the pid tells apart runs in the same second.
        (now.as_secs() << 20) ^ u64::from(std::process::id())
    });
    let window = match env_u64("DCR_KILL_WINDOW_MS") {
        Some(ms) => Duration::from_millis(ms),
        None => {
            // Also the control: an apply nobody kills passes every check the trials make.
            let baseline = run_trial(&tf, None);
            println!("kill trials: uninterrupted apply {:.3}s ({baseline})", baseline.first_apply.as_secs_f64());
            // Whole milliseconds, as printed: the printed variables replay the same delays.
            Duration::from_millis(baseline.first_apply.as_millis() as u64)
        }
    };
    let window_ms = window.as_millis();
    println!("kill trials: {trials} trials, DCR_KILL_SEED={seed} DCR_KILL_WINDOW_MS={window_ms}");

    let mut failures = Vec::new();
    for i in 0..trials {
        let trial = Trial::draw(seed.wrapping_add(i), window);
        let n = i + 1;
        let trial_started = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| run_trial(&tf, Some(&trial)))) {
            Ok(outcome) => println!("kill trial {n}/{trials}: {trial}: converged: {outcome}"),
            Err(payload) => {
                let why = panic_message(payload.as_ref());
                println!(
                    "kill trial {n}/{trials}: {trial}: FAILED after {:.1}s (replay: DCR_KILL_SEED={} DCR_KILL_TRIALS=1 \
                     DCR_KILL_WINDOW_MS={window_ms})\n{why}",
                    trial_started.elapsed().as_secs_f64(),
                    trial.seed,
                );
                failures.push(format!("{trial}: {why}"));
            }
        }
    }
    println!(
        "kill trials: {} of {trials} converged with nothing left, {} failed; DCR_KILL_SEED={seed} \
         DCR_KILL_WINDOW_MS={window_ms}; {:.1}s in all",
        trials - failures.len() as u64,
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} kill trial(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}
