//! `cargo run --release -p dcr-synth --example mst_bench -- DATA.csv DOMAIN.json EPSILON [SEED]`:
//! fits MST to an integer-coded table (each column holding codes 0..size−1, sizes from the
//! domain file, as the private-pgm project codes UCI Adult), draws as many rows as the table
//! has, and prints one JSON line: fit and sample seconds, mean and max TVD of the 1-, 2- and
//! 3-way marginals, and the independent-columns baseline (each column drawn from its true
//! marginal). Used by tests/bench/dp-synth.sh beside the peer.

use std::time::Instant;

use dcr_synth::accounting::cdp_rho;
use dcr_synth::counts::Counts;
use dcr_synth::mst::{Options, fit_mst};
use rand::SeedableRng;
use rand::rngs::StdRng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, data, domain, eps, rest @ ..] = args.as_slice() else {
        eprintln!("usage: mst_bench DATA.csv DOMAIN.json EPSILON [SEED] [ITERATIONS]");
        std::process::exit(2);
    };
    let eps: f64 = eps.parse().expect("epsilon");
    let seed: u64 = rest.first().map(|s| s.parse().expect("seed")).unwrap_or(0);
    let iterations: usize = rest.get(1).map(|s| s.parse().expect("iterations")).unwrap_or(1000);
    let domain: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(domain).expect("domain file")).expect("domain JSON");
    let mut reader = csv::Reader::from_path(data).expect("data file");
    let header: Vec<String> = reader.headers().expect("header").iter().map(str::to_string).collect();
    let sizes: Vec<usize> = header.iter().map(|h| domain[h].as_u64().expect("size") as usize).collect();
    let real: Vec<Vec<u32>> =
        reader.records().map(|r| r.expect("row").iter().map(|c| c.parse().expect("code")).collect()).collect();

    let start = Instant::now();
    let mut counts = Counts::new(sizes.clone());
    for row in &real {
        counts.add(row);
    }
    let rho = cdp_rho(eps, 1e-9);
    let mut rng = StdRng::seed_from_u64(seed);
    let model = fit_mst(&counts, &Options { rho, contribution: 1, iterations, ordered: None, bins: None }, &mut rng);
    let fit_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut synthetic = Vec::with_capacity(real.len());
    model.sample(real.len() as u64, &mut rng, |row| synthetic.push(row.to_vec()));
    let sample_s = start.elapsed().as_secs_f64();

    let d = sizes.len();
    let tvd = |cols: &[usize], rows_a: &[Vec<u32>], rows_b: &[Vec<u32>]| -> f64 {
        let mut cells = std::collections::HashMap::<Vec<u32>, (f64, f64)>::new();
        for r in rows_a {
            cells.entry(cols.iter().map(|&c| r[c]).collect()).or_default().0 += 1.0 / rows_a.len() as f64;
        }
        for r in rows_b {
            cells.entry(cols.iter().map(|&c| r[c]).collect()).or_default().1 += 1.0 / rows_b.len() as f64;
        }
        0.5 * cells.values().map(|(a, b)| (a - b).abs()).sum::<f64>()
    };
    // The baseline: each column drawn independently from its true marginal.
    let independent: Vec<Vec<u32>> = {
        use rand::Rng;
        let mut base = StdRng::seed_from_u64(seed ^ 0x5eed);
        let columns: Vec<Vec<u32>> = (0..d).map(|c| real.iter().map(|r| r[c]).collect()).collect();
        (0..real.len()).map(|_| (0..d).map(|c| columns[c][base.random_range(0..real.len())]).collect()).collect()
    };
    let subsets = |k: usize| -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let mut idx: Vec<usize> = (0..k).collect();
        loop {
            out.push(idx.clone());
            let mut i = k;
            while i > 0 && idx[i - 1] == d - k + i - 1 {
                i -= 1;
            }
            if i == 0 {
                return out;
            }
            idx[i - 1] += 1;
            for j in i..k {
                idx[j] = idx[j - 1] + 1;
            }
        }
    };
    let stats = |k: usize, rows: &[Vec<u32>]| -> (f64, f64) {
        let t: Vec<f64> = subsets(k).iter().map(|s| tvd(s, &real, rows)).collect();
        (t.iter().sum::<f64>() / t.len() as f64, t.iter().cloned().fold(0.0, f64::max))
    };
    let (m1, x1) = stats(1, &synthetic);
    let (m2, x2) = stats(2, &synthetic);
    let (m3, x3) = stats(3, &synthetic);
    let (b2, _) = stats(2, &independent);
    let (b3, _) = stats(3, &independent);
    println!(
        "{{\"generator\": \"dcr-synth mst\", \"epsilon\": {eps}, \"delta\": 1e-9, \"seed\": {seed}, \"iterations\": {iterations}, \
         \"rows\": {}, \"synthetic_rows\": {}, \"rho_spent\": {:.6}, \"fit_s\": {fit_s:.2}, \"sample_s\": {sample_s:.2}, \
         \"tvd_1way_mean\": {m1:.4}, \"tvd_1way_max\": {x1:.4}, \"tvd_2way_mean\": {m2:.4}, \"tvd_2way_max\": {x2:.4}, \
         \"tvd_3way_mean\": {m3:.4}, \"tvd_3way_max\": {x3:.4}, \"independent_2way_mean\": {b2:.4}, \"independent_3way_mean\": {b3:.4}}}",
        real.len(),
        synthetic.len(),
        model.rho_spent
    );
}
