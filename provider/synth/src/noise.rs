//! Exact samplers for the privacy noise: no floating point touches a random draw. Every
//! probability is a ratio of integers, so the output distribution is the one the accounting
//! assumes (floating-point Laplace or Gaussian noise leaks through its low bits: Mironov, "On
//! significance of the least significant bits for differential privacy", CCS 2012).
//!
//! The discrete Gaussian follows CKS20 (Canonne, Kamath, Steinke, arXiv 2004.00010),
//! Algorithms 1–3. We write them here rather than take OpenDP's (`opendp` 0.16, `contrib`):
//! they are about a hundred lines, while the dependency costs 55 crates and two minutes of build,
//! sits behind a feature its authors mark as not yet vetted, and changes API between minor
//! versions. The statistical tests below hold them to their exact distributions.

use rand::{CryptoRng, Rng};

use crate::accounting::{EmEpsilon, Variance};

/// The randomness privacy noise may use: a cryptographically secure generator.
pub trait NoiseRng: Rng + CryptoRng {}
impl<R: Rng + CryptoRng> NoiseRng for R {}

/// Bernoulli(num/den), 0 ≤ num ≤ den, den > 0.
fn bernoulli(rng: &mut impl NoiseRng, num: u128, den: u128) -> bool {
    rng.random_range(0..den) < num
}

/// Bernoulli(exp(−num/den)) for num/den ≤ 1 (CKS20, Algorithm 1).
fn bernoulli_exp_neg_at_most_one(rng: &mut impl NoiseRng, num: u128, den: u128) -> bool {
    let mut k: u128 = 1;
    while bernoulli(rng, num, den * k) {
        k += 1;
    }
    k % 2 == 1
}

/// Bernoulli(exp(−num/den)) for any num/den ≥ 0: one Bernoulli(exp(−1)) per whole unit, then the
/// fraction.
pub fn bernoulli_exp_neg(rng: &mut impl NoiseRng, num: u128, den: u128) -> bool {
    for _ in 0..num / den {
        if !bernoulli_exp_neg_at_most_one(rng, 1, 1) {
            return false;
        }
    }
    bernoulli_exp_neg_at_most_one(rng, num % den, den)
}

/// The discrete Laplace distribution of integer scale `t` ≥ 1: P(x) ∝ exp(−|x|/t)
/// (CKS20, Algorithm 2).
pub fn discrete_laplace(rng: &mut impl NoiseRng, t: u128) -> i128 {
    loop {
        let u = rng.random_range(0..t);
        if !bernoulli_exp_neg(rng, u, t) {
            continue;
        }
        let mut v: u128 = 0;
        while bernoulli_exp_neg_at_most_one(rng, 1, 1) {
            v += 1;
        }
        let x = (u + t * v) as i128;
        let negative = rng.random::<bool>();
        if negative && x == 0 {
            continue;
        }
        return if negative { -x } else { x };
    }
}

/// The discrete Gaussian of variance parameter σ²: P(x) ∝ exp(−x²/(2σ²)) over the integers
/// (CKS20, Algorithm 3: discrete Laplace proposals of scale ⌊σ⌋+1, accepted with probability
/// exp(−(|y| − σ²/t)²/(2σ²))).
pub fn discrete_gaussian(rng: &mut impl NoiseRng, variance: Variance) -> i128 {
    let (p, q) = (variance.num, Variance::DENOM);
    let t = isqrt(p / q) + 1;
    loop {
        let y = discrete_laplace(rng, t);
        // (|y| − p/(q t))² / (2 p/q) = (|y| q t − p)² / (2 p q t²)
        let a = y.unsigned_abs() * q * t;
        let diff = a.abs_diff(p);
        if bernoulli_exp_neg(rng, diff * diff, 2 * p * q * t * t) {
            return y;
        }
    }
}

fn isqrt(n: u128) -> u128 {
    let mut x = (n as f64).sqrt() as u128;
    while x * x > n {
        x -= 1;
    }
    while (x + 1) * (x + 1) <= n {
        x += 1;
    }
    x
}

/// The exponential mechanism over candidates with integer scores of sensitivity `sensitivity`:
/// index i with probability ∝ exp(ε·score_i / (2·sensitivity)). Sampled exactly by rejection:
/// a uniform candidate is kept with probability exp(−ε·(max − score_i)/(2·sensitivity)), which
/// is 1 for a best one, so it takes at most `scores.len()` tries on average.
pub fn exponential_mechanism(rng: &mut impl NoiseRng, scores: &[u64], sensitivity: u64, eps: EmEpsilon) -> usize {
    assert!(!scores.is_empty() && sensitivity > 0);
    let best = *scores.iter().max().expect("candidates");
    let den = 2 * EmEpsilon::DENOM * u128::from(sensitivity);
    loop {
        let i = rng.random_range(0..scores.len());
        let gap = u128::from(best - scores[i]);
        if bernoulli_exp_neg(rng, eps.num * gap, den) {
            return i;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// The largest distance between an empirical and an exact CDF over integers, and the
    /// Kolmogorov–Smirnov bound it must stay under at significance 0.001 (1.95/√n; conservative
    /// for discrete distributions).
    fn ks(samples: &[i128], pmf: impl Fn(i128) -> f64, range: std::ops::RangeInclusive<i128>) -> (f64, f64) {
        let n = samples.len() as f64;
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let total: f64 = range.clone().map(&pmf).sum();
        let (mut cdf, mut worst, mut seen) = (0.0, 0.0_f64, 0usize);
        for x in range {
            cdf += pmf(x) / total;
            while seen < sorted.len() && sorted[seen] <= x {
                seen += 1;
            }
            worst = worst.max((seen as f64 / n - cdf).abs());
        }
        (worst, 1.95 / n.sqrt())
    }

    fn rng(seed: u64) -> StdRng {
        StdRng::seed_from_u64(seed)
    }

    #[test]
    fn bernoulli_of_exp_has_its_mean() {
        let mut r = rng(1);
        for (num, den) in [(1u128, 2u128), (3, 1), (7, 3), (0, 5)] {
            let n = 200_000;
            let hits = (0..n).filter(|_| bernoulli_exp_neg(&mut r, num, den)).count() as f64;
            let p = (-(num as f64) / den as f64).exp();
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((hits / n as f64 - p).abs() <= 5.0 * sd + 1e-12, "exp(-{num}/{den}): {} vs {p}", hits / n as f64);
        }
    }

    #[test]
    fn discrete_laplace_follows_its_pmf() {
        let mut r = rng(2);
        let t = 3;
        let s: Vec<i128> = (0..100_000).map(|_| discrete_laplace(&mut r, t)).collect();
        let (d, bound) = ks(&s, |x| (-(x.abs() as f64) / t as f64).exp(), -80..=80);
        assert!(d < bound, "KS {d} ≥ {bound}");
    }

    #[test]
    fn discrete_gaussian_follows_its_pmf_mean_and_variance() {
        let mut r = rng(3);
        for sigma2 in [0.7, 4.0, 100.3, 1369.0] {
            let v = Variance::at_least(sigma2);
            let s2 = v.as_f64();
            let s: Vec<i128> = (0..60_000).map(|_| discrete_gaussian(&mut r, v)).collect();
            let reach = (12.0 * s2.sqrt()) as i128 + 2;
            let (d, bound) = ks(&s, |x| (-((x * x) as f64) / (2.0 * s2)).exp(), -reach..=reach);
            assert!(d < bound, "σ² {s2}: KS {d} ≥ {bound}");
            let n = s.len() as f64;
            let mean = s.iter().map(|&x| x as f64).sum::<f64>() / n;
            let var = s.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
            assert!(mean.abs() < 5.0 * (s2 / n).sqrt(), "σ² {s2}: mean {mean}");
            // The discrete Gaussian's variance is at most σ² (and close to it for σ ≥ 1).
            assert!(var < s2 * 1.05 && (s2 < 1.0 || var > s2 * 0.95), "σ² {s2}: variance {var}");
        }
    }

    #[test]
    fn the_exponential_mechanism_picks_with_its_exact_probabilities() {
        let mut r = rng(4);
        let scores = [10u64, 12, 15, 15, 3];
        let eps = EmEpsilon::at_most(0.8);
        let n = 200_000;
        let mut hits = [0usize; 5];
        for _ in 0..n {
            hits[exponential_mechanism(&mut r, &scores, 2, eps)] += 1;
        }
        let weights: Vec<f64> = scores.iter().map(|&s| (eps.as_f64() * s as f64 / 4.0).exp()).collect();
        let total: f64 = weights.iter().sum();
        for (i, w) in weights.iter().enumerate() {
            let p = w / total;
            let got = hits[i] as f64 / n as f64;
            assert!((got - p).abs() < 5.0 * (p * (1.0 - p) / n as f64).sqrt(), "candidate {i}: {got} vs {p}");
        }
    }
}
