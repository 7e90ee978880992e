//! Envelope encryption and decryption throughput against raw AES-256-GCM on one core.
//! Run with `cargo bench -p dcr-envelope`; prints MB/s for each.

use std::io::Read;
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use dcr_envelope::{DEFAULT_CHUNK_SIZE, DecryptingReader, EncryptingReader, Header, generate_data_key, read_header};

const TOTAL: usize = 512 << 20;

fn mbps(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

fn best_of<F: FnMut() -> f64>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| f()).fold(f64::MAX, f64::min)
}

fn main() {
    let key = generate_data_key();
    let chunk = vec![0x5au8; DEFAULT_CHUNK_SIZE as usize];

    // Raw AES-256-GCM, sealing 1 MiB buffers in place: the ceiling for one core.
    let raw = best_of(3, || {
        let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).unwrap());
        let mut buf = chunk.clone();
        let start = Instant::now();
        for i in 0..(TOTAL / chunk.len()) {
            let mut n = [0u8; 12];
            n[..8].copy_from_slice(&(i as u64).to_be_bytes());
            buf.truncate(chunk.len());
            k.seal_in_place_append_tag(Nonce::assume_unique_for_key(n), Aad::empty(), &mut buf).unwrap();
        }
        start.elapsed().as_secs_f64()
    });

    let header = Header::new("projects/p/locations/global/keyRings/r/cryptoKeys/k", b"wrapped", DEFAULT_CHUNK_SIZE);
    let mut sealed = Vec::with_capacity(TOTAL + (TOTAL >> 10));
    let enc = best_of(3, || {
        sealed.clear();
        let src = std::io::repeat(0x5a).take(TOTAL as u64);
        let start = Instant::now();
        EncryptingReader::new(src, &key, &header).unwrap().read_to_end(&mut sealed).unwrap();
        start.elapsed().as_secs_f64()
    });

    let dec = best_of(3, || {
        let mut r = &sealed[..];
        let start = Instant::now();
        let h = read_header(&mut r).unwrap();
        let mut plain = DecryptingReader::new(r, &key, &h).unwrap();
        std::io::copy(&mut plain, &mut std::io::sink()).unwrap();
        start.elapsed().as_secs_f64()
    });

    println!("raw AES-256-GCM seal      {:>8.0} MB/s", mbps(TOTAL, raw));
    println!("envelope encrypt (stream) {:>8.0} MB/s  ({:.0}% of raw)", mbps(TOTAL, enc), 100.0 * raw / enc);
    println!("envelope decrypt (stream) {:>8.0} MB/s  ({:.0}% of raw)", mbps(TOTAL, dec), 100.0 * raw / dec);
}
