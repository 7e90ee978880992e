//! The launcher binary: runs the workload and exits with the code of the stage that failed.

fn main() {
    let settings = dcr_launcher::Settings::from_env();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dcr-launcher: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match runtime.block_on(dcr_launcher::run(&settings)) {
        Ok(()) => {}
        Err(e) => {
            println!("dcr-launcher: FAILED ({}): {e}", e.stage());
            std::process::exit(e.exit_code());
        }
    }
}
