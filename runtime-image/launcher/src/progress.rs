//! Progress on stdout (the serial console): stages, timings and waits, never data or tokens. Every
//! line carries the milliseconds since the launcher started.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Marks the start (the first call wins); later lines count from it.
pub fn start() {
    START.get_or_init(Instant::now);
}

pub fn say(message: impl std::fmt::Display) {
    let ms = START.get_or_init(Instant::now).elapsed().as_millis();
    println!("dcr-launcher [{ms:>7} ms] {message}");
}
