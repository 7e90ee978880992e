//! Privacy accounting in zero-concentrated DP (zCDP): the conversion between (ε, δ)-DP and ρ-zCDP,
//! and the exact cost of the discrete Gaussian and of the exponential mechanism.
//!
//! Sources: Canonne, Kamath, Steinke, "The Discrete Gaussian for Differential Privacy" (CKS20,
//! arXiv 2004.00010), Proposition 1.3/Corollary 13 for the conversion, as private-pgm implements
//! it (`mechanisms/cdp2adp.py`, `cdp_delta` and `cdp_rho`); Cesar and Rogers, "Bounding, Concentrating,
//! and Truncating" (bounded range: an ε exponential mechanism is ε²/8-zCDP), as MST uses it.

/// The smallest δ such that ρ-zCDP implies (ε, δ)-DP (CKS20): min over α > 1 of
/// exp((α−1)(αρ−ε)) / (α−1) · (1 − 1/α)^α. Any α gives a valid bound, so an imprecise search
/// only overstates δ.
pub fn cdp_delta(rho: f64, eps: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    // The optimum α is where the derivative (2α−1)ρ − ε + ln(1 − 1/α) crosses zero; it is at
    // least (1 + ε/ρ)/2, so the lower end matters only when ε ≤ ρ, a regime of useless δ.
    let (mut lo, mut hi) = (1.01_f64, (eps + 1.0) / (2.0 * rho) + 2.0);
    for _ in 0..200 {
        let alpha = (lo + hi) / 2.0;
        let derivative = (2.0 * alpha - 1.0) * rho - eps + (-1.0 / alpha).ln_1p();
        if derivative < 0.0 { lo = alpha } else { hi = alpha }
    }
    let alpha = (lo + hi) / 2.0;
    let delta = ((alpha - 1.0) * (alpha * rho - eps) + alpha * (-1.0 / alpha).ln_1p()).exp() / (alpha - 1.0);
    delta.min(1.0)
}

/// The largest ρ whose zCDP guarantee implies (ε, δ)-DP ([`cdp_delta`] ≤ δ), by bisection.
pub fn cdp_rho(eps: f64, delta: f64) -> f64 {
    if delta >= 1.0 {
        return f64::INFINITY;
    }
    let (mut lo, mut hi) = (0.0_f64, eps + 1.0);
    for _ in 0..200 {
        let rho = (lo + hi) / 2.0;
        if cdp_delta(rho, eps) <= delta { lo = rho } else { hi = rho }
    }
    lo
}

/// The (ε, δ)-DP a ρ-zCDP guarantee gives at `delta`: the smallest ε with [`cdp_delta`] ≤ δ.
pub fn cdp_eps(rho: f64, delta: f64) -> f64 {
    if rho <= 0.0 {
        return 0.0;
    }
    let (mut lo, mut hi) = (0.0_f64, rho + 2.0 * (rho * (1.0 / delta).ln()).sqrt() + 1.0);
    for _ in 0..200 {
        let eps = (lo + hi) / 2.0;
        if cdp_delta(rho, eps) <= delta { hi = eps } else { lo = eps }
    }
    hi
}

/// A noise variance as an exact rational, `num / DENOM`, so that the sampler and the accounting
/// use the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variance {
    pub num: u128,
}

impl Variance {
    pub const DENOM: u128 = 1 << 16;

    /// The smallest representable variance at least `v` (more noise, never less).
    pub fn at_least(v: f64) -> Variance {
        assert!(v.is_finite() && v > 0.0, "a noise variance is finite and positive");
        Variance { num: ((v * Self::DENOM as f64).ceil() as u128).max(1) }
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / Self::DENOM as f64
    }

    /// ρ of adding discrete Gaussian noise of this variance to a query of L2 sensitivity
    /// √`sensitivity_squared`: Δ²/(2σ²) (CKS20, Theorem 4).
    pub fn rho(self, sensitivity_squared: u128) -> f64 {
        sensitivity_squared as f64 * Self::DENOM as f64 / (2.0 * self.num as f64)
    }
}

/// An exponential-mechanism ε as an exact rational `num / DENOM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmEpsilon {
    pub num: u128,
}

impl EmEpsilon {
    pub const DENOM: u128 = 1 << 20;

    /// The largest representable ε at most `eps` (less budget, never more).
    pub fn at_most(eps: f64) -> EmEpsilon {
        assert!(eps.is_finite() && eps > 0.0, "an exponential-mechanism epsilon is finite and positive");
        EmEpsilon { num: ((eps * Self::DENOM as f64).floor() as u128).max(1) }
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / Self::DENOM as f64
    }

    /// ρ of one selection: ε²/8 (bounded range).
    pub fn rho(self) -> f64 {
        self.as_f64().powi(2) / 8.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ρ for (ε, δ) as private-pgm's `cdp_rho` gives it, and MST's base noise σ = √(3/(2ρ))
    /// (the table in ../shared/reference/dp-synthesis.md §1: ρ to 4 significant digits where
    /// given, σ to 3).
    #[test]
    fn rho_from_epsilon_and_delta_matches_private_pgm() {
        let table = [
            (0.1, 1e-9, None, 92.0),
            (1.0, 1e-9, Some(0.01497), 10.0),
            (10.0, 1e-9, Some(1.0908), 1.17),
            (1.0, 1e-6, Some(0.02436), 7.85),
        ];
        for (eps, delta, rho, sigma) in table {
            let got = cdp_rho(eps, delta);
            if let Some(rho) = rho {
                assert!((got - rho).abs() / rho < 5e-4, "ε {eps} δ {delta}: ρ {got}, table {rho}");
            }
            let base = (3.0 / (2.0 * got)).sqrt();
            assert!((base - sigma).abs() / sigma < 5e-3, "ε {eps} δ {delta}: σ {base}, table {sigma}");
            assert!(cdp_delta(got, eps) <= delta * (1.0 + 1e-9));
            let back = cdp_eps(got, delta);
            assert!((back - eps).abs() / eps < 1e-3, "ε {eps}: back {back}");
        }
        assert_eq!(cdp_delta(0.0, 1.0), 0.0);
    }

    #[test]
    fn rationals_round_towards_privacy() {
        let v = Variance::at_least(100.3);
        assert!(v.as_f64() >= 100.3 && v.as_f64() - 100.3 < 1e-4);
        assert!((v.rho(1) - 1.0 / (2.0 * 100.3)).abs() < 1e-8 && v.rho(1) <= 1.0 / (2.0 * 100.3));
        let e = EmEpsilon::at_most(0.0554);
        assert!(e.as_f64() <= 0.0554 && 0.0554 - e.as_f64() < 1e-6);
        assert!((e.rho() - 0.0554f64.powi(2) / 8.0).abs() < 1e-8);
    }
}
