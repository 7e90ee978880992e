//! A dataset's privacy ledger: every DP-synthetic stand-in generated from it, with what it spent.
//! Costs compose in zCDP (ρ adds up); (ε, δ) is only how a total is shown. The ledger lives
//! beside the data (an object in the dataset's bucket), is only ever appended to, and outlives
//! the dataset's destruction: re-creating a dataset does not give its budget back.

use serde::{Deserialize, Serialize};

use crate::accounting::{cdp_eps, cdp_rho};

/// The ledger's format tag.
pub const FORMAT: &str = "dcr-privacy-ledger/1";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub format: String,
    /// The dataset (`BUCKET/NAME`).
    pub dataset: String,
    pub entries: Vec<Entry>,
}

/// One generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// The mechanism and its version (`mst/1`).
    pub mechanism: String,
    /// zCDP spent.
    pub rho: f64,
    /// The (ε, δ) the generation was asked for (ρ is what it spent within them).
    pub epsilon: f64,
    pub delta: f64,
    pub rows: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// SHA-256 (hex) of the stand-in published.
    pub stand_in_sha256: String,
}

/// A cap on what a dataset's stand-ins may spend in all, as (ε, δ).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub epsilon: f64,
    pub delta: f64,
}

impl Budget {
    pub fn rho(&self) -> f64 {
        cdp_rho(self.epsilon, self.delta)
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LedgerError {
    #[error("the privacy ledger is not one dcr wrote ({0})")]
    Unreadable(String),
    #[error("the privacy ledger belongs to dataset {found:?}, not {expected:?}")]
    OtherDataset { found: String, expected: String },
    #[error(
        "this generation may spend ε {asked} (ρ {asked_rho:.6}), but the budget (ε {cap} at δ {delta}) has ε {left:.4} \
         left (ρ {left_rho:.6}) after {generations} generation(s)"
    )]
    OverBudget { asked: f64, asked_rho: f64, cap: f64, delta: f64, left: f64, left_rho: f64, generations: usize },
}

impl Ledger {
    pub fn new(dataset: &str) -> Ledger {
        Ledger { format: FORMAT.into(), dataset: dataset.into(), entries: Vec::new() }
    }

    /// Reads a stored ledger of `dataset`.
    pub fn parse(bytes: &[u8], dataset: &str) -> Result<Ledger, LedgerError> {
        let ledger: Ledger = serde_json::from_slice(bytes).map_err(|e| LedgerError::Unreadable(e.to_string()))?;
        if ledger.format != FORMAT {
            return Err(LedgerError::Unreadable(format!("format {:?}", ledger.format)));
        }
        if ledger.dataset != dataset {
            return Err(LedgerError::OtherDataset { found: ledger.dataset, expected: dataset.into() });
        }
        Ok(ledger)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("a ledger serialises");
        out.push(b'\n');
        out
    }

    pub fn rho_spent(&self) -> f64 {
        self.entries.iter().map(|e| e.rho).sum()
    }

    /// The total spent, as ε at `delta`.
    pub fn epsilon_spent(&self, delta: f64) -> f64 {
        cdp_eps(self.rho_spent(), delta)
    }

    /// Refuses a generation that may spend `rho` when the budget cannot cover it.
    pub fn check(&self, budget: Option<Budget>, asked_epsilon: f64, rho: f64) -> Result<(), LedgerError> {
        let Some(b) = budget else { return Ok(()) };
        let left_rho = (b.rho() - self.rho_spent()).max(0.0);
        if rho <= left_rho * (1.0 + 1e-12) {
            return Ok(());
        }
        Err(LedgerError::OverBudget {
            asked: asked_epsilon,
            asked_rho: rho,
            cap: b.epsilon,
            delta: b.delta,
            left: cdp_eps(left_rho, b.delta),
            left_rho,
            generations: self.entries.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epsilon: f64) -> Entry {
        Entry {
            mechanism: "mst/1".into(),
            rho: cdp_rho(epsilon, 1e-9),
            epsilon,
            delta: 1e-9,
            rows: 10,
            time: "2026-12-05T00:00:00Z".into(),
            stand_in_sha256: "ab".repeat(32),
        }
    }

    #[test]
    fn costs_add_up_in_zcdp_and_the_cap_refuses_what_it_cannot_cover() {
        let budget = Some(Budget { epsilon: 2.0, delta: 1e-9 });
        let mut l = Ledger::new("b/d");
        assert!(l.check(budget, 1.0, cdp_rho(1.0, 1e-9)).is_ok());
        l.entries.push(entry(1.0));
        l.entries.push(entry(1.0));
        // Two generations at ε = 1 spend less than ε = 2 in all: zCDP composes better than adding ε.
        assert!(l.epsilon_spent(1e-9) < 2.0 && l.epsilon_spent(1e-9) > 1.0, "{}", l.epsilon_spent(1e-9));
        let rho = cdp_rho(2.5, 1e-9);
        let e = l.check(budget, 2.5, rho).unwrap_err();
        let LedgerError::OverBudget { left, generations, .. } = &e else { panic!("{e}") };
        assert_eq!(*generations, 2);
        assert!(*left > 0.0 && *left < 2.5, "{e}");
        assert!(e.to_string().contains("left"), "{e}");
        assert!(l.check(None, 2.5, rho).is_ok(), "no budget, no cap");
        // A third generation at ε = 1 still fits under ε = 2 in all.
        assert!(l.check(budget, 1.0, cdp_rho(1.0, 1e-9)).is_ok());
    }

    #[test]
    fn a_ledger_reads_back_and_refuses_what_is_not_its_own() {
        let mut l = Ledger::new("b/d");
        l.entries.push(entry(0.5));
        let bytes = l.to_bytes();
        assert_eq!(Ledger::parse(&bytes, "b/d").unwrap(), l);
        assert!(matches!(Ledger::parse(&bytes, "b/other"), Err(LedgerError::OtherDataset { .. })));
        assert!(matches!(Ledger::parse(b"{}", "b/d"), Err(LedgerError::Unreadable(_))));
    }
}
