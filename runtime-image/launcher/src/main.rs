//! The launcher binary: runs the workload and exits with the code of the stage that failed.
//! `dcr-launcher rehearse` is stage 1's rehearsal (`dcr run`), which Confidential Space cannot
//! start (the image's launch policy allows no command override).

fn main() {
    let settings = dcr_launcher::Settings::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dcr-launcher: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let rehearse = std::env::args().nth(1).as_deref() == Some("rehearse");
    let outcome = if rehearse {
        runtime.block_on(dcr_launcher::rehearsal::rehearse(&settings)).map(|_| ())
    } else {
        runtime.block_on(dcr_launcher::run(&settings))
    };
    match outcome {
        Ok(()) => {}
        Err(e) => {
            println!("dcr-launcher: FAILED ({}): {e}", e.stage());
            std::process::exit(e.exit_code());
        }
    }
}
