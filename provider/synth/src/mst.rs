//! MST (McKenna, Miklau, Sheldon, "Winning the NIST Contest", JPC 11(3), 2021;
//! private-pgm's `mechanisms/mst.py`): measure every 1-way marginal, merge each attribute's rare
//! values, choose a maximum spanning tree of 2-way marginals with the exponential mechanism,
//! measure those, and fit a tree model to all the measurements. The budget ρ (zCDP) is spent in
//! three equal parts; every count is noised with the exact discrete Gaussian.
//!
//! Differences from the reference code, each on the side of privacy or correctness:
//! - the row count is private: the model's total is estimated from the noisy 1-ways (private-pgm's
//!   inverse-variance total), never the true count (smartnoise-synth uses the true count);
//! - the exponential mechanism is exact ([`crate::noise::exponential_mechanism`]) on scores
//!   quantised to 1/16, with the sensitivity raised to cover the quantisation;
//! - a unit (person) may contribute up to `contribution` rows: sensitivities scale with it.

use rand::Rng;

use crate::accounting::{EmEpsilon, Variance};
use crate::counts::Counts;
use crate::noise::{NoiseRng, discrete_gaussian, exponential_mechanism};
use crate::tree::{Clique, Cliques, Measurement, Tree, fit};

/// Scores are compared in units of 1/16 of a count.
const SCORE_SCALE: f64 = 16.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The whole budget, in zCDP.
    pub rho: f64,
    /// The most rows one unit (person) may contribute.
    pub contribution: u32,
    /// Mirror-descent iterations of the final fit.
    pub iterations: usize,
    /// Per attribute, whether its codes are ordered ranges (numeric bins) that may be merged
    /// into coarser ranges; `None`: none are.
    pub ordered: Option<Vec<bool>>,
    /// How many ranges an ordered attribute keeps: `None` chooses from the noisy row count and
    /// the 2-way noise (so that a 2-way cell expects a few noise deviations of rows).
    pub bins: Option<usize>,
}

/// What MST learned: a tree over the attributes' compressed domains, its fitted marginals, the
/// estimated number of rows, and for each attribute the original codes behind each compressed
/// code (one, or the merged rare values).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub tree: Tree,
    pub marginals: Cliques,
    pub total: f64,
    pub codes: Vec<Vec<Vec<u32>>>,
    /// The budget spent, in zCDP (at most `Options::rho`).
    pub rho_spent: f64,
}

/// One attribute's compressed domain: the kept original codes, then (if any) one code for the
/// rare ones.
struct Compression {
    groups: Vec<Vec<u32>>,
    /// Original code → compressed code.
    map: Vec<usize>,
}

impl Compression {
    /// Keeps the values whose noisy count reaches 3 noise standard deviations and merges the rest
    /// (private-pgm's `compress_domain`; post-processing, so free).
    fn of(noisy: &[i128], sd: f64) -> Compression {
        Compression::of_groups(noisy, sd, (0..noisy.len() as u32).map(|x| vec![x]).collect())
    }

    /// As [`Compression::of`], over groups of codes already merged (a group of g codes has a
    /// noisy count with g times the variance).
    fn of_groups(noisy: &[i128], sd: f64, start: Vec<Vec<u32>>) -> Compression {
        let sum = |g: &[u32]| g.iter().map(|&x| noisy[x as usize] as f64).sum::<f64>();
        let (mut groups, rare): (Vec<Vec<u32>>, Vec<Vec<u32>>) =
            start.into_iter().partition(|g| sum(g) >= 3.0 * sd * (g.len() as f64).sqrt());
        let rare: Vec<u32> = rare.into_iter().flatten().collect();
        if !rare.is_empty() {
            groups.push(rare);
        }
        let mut map = vec![0; noisy.len()];
        for (c, g) in groups.iter().enumerate() {
            for &x in g {
                map[x as usize] = c;
            }
        }
        Compression { groups, map }
    }

    fn size(&self) -> usize {
        self.groups.len()
    }

    /// The noisy 1-way on the compressed domain, with the weight of each cell: a merged cell is
    /// the sum of k noisy counts, so its squared error counts 1/k (the 1/√k query of MST).
    fn measurement(&self, noisy: &[i128]) -> (Vec<f64>, Vec<f64>) {
        let values = self.groups.iter().map(|g| g.iter().map(|&x| noisy[x as usize] as f64).sum()).collect();
        let weights = self.groups.iter().map(|g| 1.0 / g.len() as f64).collect();
        (values, weights)
    }
}

/// The number of ranges of an ordered attribute when the user sets none: about √(n / (3σ₂)), so a
/// 2-way cell of two such attributes expects three 2-way noise deviations of rows; between 2
/// and 64. It reads only the noisy row count.
pub fn default_bins(total: f64, two_way_sd: f64) -> usize {
    ((total / (3.0 * two_way_sd)).sqrt().floor() as usize).clamp(2, 64)
}

/// `size` ordered codes in `ranges` contiguous groups of nearly equal length.
fn coarse_ranges(size: usize, ranges: usize) -> Vec<Vec<u32>> {
    (0..ranges).map(|r| (r * size / ranges..(r + 1) * size / ranges).map(|x| x as u32).collect()).collect()
}

/// A count table of `a` × `b` on the compressed domains.
fn compressed_pair(counts: &Counts, c: &[Compression], a: usize, b: usize) -> Vec<u64> {
    let (ka, kb) = (counts.sizes[a], counts.sizes[b]);
    let table = counts.pair(a, b);
    let mut out = vec![0; c[a].size() * c[b].size()];
    for i in 0..ka {
        for j in 0..kb {
            out[c[a].map[i] * c[b].size() + c[b].map[j]] += table[i * kb + j];
        }
    }
    out
}

/// The Euclidean projection of `v` onto the simplex scaled to `total` (sort-based).
fn project_to_simplex(v: &[f64], total: f64) -> Vec<f64> {
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let (mut cumulative, mut shift) = (0.0, 0.0);
    for (i, x) in sorted.iter().enumerate() {
        cumulative += x;
        let t = (cumulative - total) / (i + 1) as f64;
        if x - t > 0.0 {
            shift = t;
        }
    }
    v.iter().map(|x| (x - shift).max(0.0)).collect()
}

/// Union–find over attributes, for Kruskal's rounds.
struct Components(Vec<usize>);

impl Components {
    fn find(&mut self, x: usize) -> usize {
        let mut r = x;
        while self.0[r] != r {
            r = self.0[r];
        }
        let mut y = x;
        while self.0[y] != r {
            (self.0[y], y) = (r, self.0[y]);
        }
        r
    }
}

pub fn fit_mst(counts: &Counts, options: &Options, rng: &mut impl NoiseRng) -> Model {
    let d = counts.sizes.len();
    let k = u128::from(options.contribution.max(1));
    // ρ/3 each for the 1-ways, the selection and the 2-ways; with one attribute, all on its 1-way.
    let parts = if d > 1 { 3.0 } else { 1.0 };
    let one_way = Variance::at_least((k * k) as f64 * d as f64 * parts / (2.0 * options.rho));
    let mut rho_spent = d as f64 * one_way.rho(k * k);

    let noisy: Vec<Vec<i128>> =
        counts.one.iter().map(|t| t.iter().map(|&c| c as i128 + discrete_gaussian(rng, one_way)).collect()).collect();
    let sd1 = one_way.as_f64().sqrt();
    // Inverse-variance estimate of the row count from every noisy 1-way (a 1-way over k cells
    // has variance k·σ²): the true count is never used.
    let total = {
        let (mut num, mut den) = (0.0, 0.0);
        for t in &noisy {
            let w = 1.0 / t.len() as f64;
            num += w * t.iter().sum::<i128>() as f64;
            den += w;
        }
        (num / den).max(1.0)
    };
    let two_way_sd = ((k * k) as f64 * (d.max(2) - 1) as f64 * 3.0 / (2.0 * options.rho)).sqrt();
    let ranges = options.bins.unwrap_or_else(|| default_bins(total, two_way_sd));
    let compression: Vec<Compression> = noisy
        .iter()
        .enumerate()
        .map(|(a, t)| match &options.ordered {
            Some(ordered) if ordered[a] && t.len() > ranges => {
                Compression::of_groups(t, sd1, coarse_ranges(t.len(), ranges))
            }
            _ => Compression::of(t, sd1),
        })
        .collect();
    let sizes: Vec<usize> = compression.iter().map(Compression::size).collect();
    let one_ways: Vec<(Vec<f64>, Vec<f64>)> = compression.iter().zip(&noisy).map(|(c, t)| c.measurement(t)).collect();

    let mut edges = Vec::new();
    let mut two_way = None;
    if d > 1 {
        // Selection: the model from the 1-ways alone is their product; each pair's score is how
        // far its true table is from that product (L1, sensitivity `contribution`).
        let product: Vec<Vec<f64>> = one_ways.iter().map(|(v, _)| project_to_simplex(v, total)).collect();
        let mut candidates = Vec::new();
        for a in 0..d {
            for b in a + 1..d {
                let table = compressed_pair(counts, &compression, a, b);
                let kb = sizes[b];
                let l1: f64 = table
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (c as f64 - product[a][i / kb] * product[b][i % kb] / total).abs())
                    .sum();
                candidates.push((a, b, (l1 * SCORE_SCALE).floor() as u64));
            }
        }
        // Flooring to 1/16 moves a score by less than one unit, and the float sum by far less
        // than another: the sensitivity in units is 16·contribution + 2.
        let sensitivity = SCORE_SCALE as u64 * u64::from(options.contribution.max(1)) + 2;
        let em = EmEpsilon::at_most((8.0 * (options.rho / 3.0) / (d - 1) as f64).sqrt());
        let mut components = Components((0..d).collect());
        for _ in 0..d - 1 {
            let open: Vec<(usize, usize, u64)> = {
                let comps = &mut components;
                candidates.iter().copied().filter(|&(a, b, _)| comps.find(a) != comps.find(b)).collect()
            };
            let scores: Vec<u64> = open.iter().map(|c| c.2).collect();
            let (a, b, _) = open[exponential_mechanism(rng, &scores, sensitivity, em)];
            let (ra, rb) = (components.find(a), components.find(b));
            components.0[ra] = rb;
            edges.push((a, b));
            rho_spent += em.rho();
        }
        two_way = Some(Variance::at_least((k * k) as f64 * (d - 1) as f64 * 3.0 / (2.0 * options.rho)));
    }

    let tree = Tree::rooted(sizes.clone(), &edges);
    let mut measurements: Vec<Measurement> = one_ways
        .into_iter()
        .enumerate()
        .map(|(v, (values, weights))| Measurement { clique: Clique::Node(v), values, weights, sigma: sd1 })
        .collect();
    if let Some(variance) = two_way {
        for (e, &(p, c)) in tree.edges.iter().enumerate() {
            let values: Vec<f64> = compressed_pair(counts, &compression, p, c)
                .into_iter()
                .map(|n| (n as i128 + discrete_gaussian(rng, variance)) as f64)
                .collect();
            let cells = values.len();
            measurements.push(Measurement {
                clique: Clique::Edge(e),
                values,
                weights: vec![1.0; cells],
                sigma: variance.as_f64().sqrt(),
            });
            rho_spent += variance.rho(k * k);
        }
    }
    let marginals = fit(&tree, &measurements, total, options.iterations);
    Model { tree, marginals, total, codes: compression.into_iter().map(|c| c.groups).collect(), rho_spent }
}

impl Model {
    /// `rows` coded rows drawn independently from the model: each attribute from its parent's
    /// conditional, so siblings are independent given their parent (no shared ranking between
    /// them, the comonotone bug of mbi 1.1.0's "round" sampler); a merged code becomes one of
    /// its values, uniformly.
    pub fn sample(&self, rows: u64, rng: &mut impl Rng, mut emit: impl FnMut(&[u32])) {
        let d = self.tree.sizes.len();
        let cumulative = |weights: &[f64]| -> Vec<f64> {
            let mut acc = 0.0;
            weights
                .iter()
                .map(|w| {
                    acc += w.max(0.0);
                    acc
                })
                .collect()
        };
        let roots: Vec<(usize, Vec<f64>)> = {
            let mut has_parent = vec![false; d];
            for &(_, c) in &self.tree.edges {
                has_parent[c] = true;
            }
            (0..d).filter(|v| !has_parent[*v]).map(|v| (v, cumulative(&self.marginals.nodes[v]))).collect()
        };
        let conditionals: Vec<Vec<Vec<f64>>> = self
            .tree
            .edges
            .iter()
            .enumerate()
            .map(|(e, &(_, c))| self.marginals.edges[e].chunks(self.tree.sizes[c]).map(cumulative).collect())
            .collect();
        let draw = |cdf: &[f64], rng: &mut dyn rand::RngCore| -> usize {
            let last = *cdf.last().unwrap_or(&0.0);
            if last <= 0.0 {
                return rng.random_range(0..cdf.len());
            }
            let u = rng.random::<f64>() * last;
            cdf.partition_point(|&x| x <= u).min(cdf.len() - 1)
        };
        let mut coded = vec![0usize; d];
        let mut row = vec![0u32; d];
        for _ in 0..rows {
            for (v, cdf) in &roots {
                coded[*v] = draw(cdf, rng);
            }
            for (e, &(p, c)) in self.tree.edges.iter().enumerate() {
                coded[c] = draw(&conditionals[e][coded[p]], rng);
            }
            for v in 0..d {
                let group = &self.codes[v][coded[v]];
                row[v] = if group.len() == 1 { group[0] } else { group[rng.random_range(0..group.len())] };
            }
            emit(&row);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn options(rho: f64) -> Options {
        Options { rho, contribution: 1, iterations: 300, ordered: None, bins: None }
    }

    /// A table where b copies a and c is independent of both: MST must link a and b.
    fn correlated(rows: usize) -> Counts {
        let mut c = Counts::new(vec![4, 4, 3]);
        let mut s = 7u64;
        for _ in 0..rows {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let a = ((s >> 33) % 4) as u32;
            let x = ((s >> 13) % 3) as u32;
            c.add(&[a, a, x]);
        }
        c
    }

    #[test]
    fn the_budget_is_spent_in_full_and_no_more() {
        let mut rng = StdRng::seed_from_u64(1);
        for rho in [0.01, 0.5, 5.0] {
            let m = fit_mst(&correlated(2000), &options(rho), &mut rng);
            assert!(m.rho_spent <= rho && m.rho_spent > rho * 0.999, "ρ {rho}: spent {}", m.rho_spent);
        }
    }

    #[test]
    fn a_strong_dependence_is_selected_and_reproduced() {
        let mut rng = StdRng::seed_from_u64(2);
        let m = fit_mst(&correlated(20_000), &options(1.0), &mut rng);
        let linked = m.tree.edges.iter().any(|&(p, c)| (p.min(c), p.max(c)) == (0, 1));
        assert!(linked, "edges {:?}", m.tree.edges);
        assert!((m.total - 20_000.0).abs() < 200.0, "total {}", m.total);
        let mut agree = 0u64;
        m.sample(5_000, &mut rng, |row| agree += u64::from(row[0] == row[1]));
        assert!(agree > 4_800, "a and b agree in {agree} of 5000 rows");
    }

    #[test]
    fn siblings_are_independent_given_their_parent() {
        // a is the parent of b and c, each of which copies a with noise; given a, b and c are
        // independent. A sampler that ranks rows within a parent group (mbi 1.1.0) makes them
        // move together.
        let mut c = Counts::new(vec![2, 2, 2]);
        let mut s = 3u64;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            s >> 33
        };
        for _ in 0..40_000 {
            let a = (next() % 2) as u32;
            let flip = |v: u32, r: u64| if r % 10 < 3 { 1 - v } else { v };
            let (b, cc) = (flip(a, next()), flip(a, next()));
            c.add(&[a, b, cc]);
        }
        let mut rng = StdRng::seed_from_u64(5);
        let m = fit_mst(&c, &options(50.0), &mut rng);
        let mut table = [[[0f64; 2]; 2]; 2];
        let n = 200_000;
        m.sample(n, &mut rng, |r| table[r[0] as usize][r[1] as usize][r[2] as usize] += 1.0);
        for (a, given_a) in table.iter().enumerate() {
            let total: f64 = given_a.iter().flatten().sum();
            let pb = (given_a[1][0] + given_a[1][1]) / total;
            let pc = (given_a[0][1] + given_a[1][1]) / total;
            let joint = given_a[1][1] / total;
            assert!((joint - pb * pc).abs() < 0.01, "a = {a}: P(b,c) {joint} vs P(b)P(c) {}", pb * pc);
        }
    }

    #[test]
    fn rare_values_merge_and_come_back_as_their_own_codes() {
        let c = Compression::of(&[500, 2, -3, 400, 1], 10.0);
        assert_eq!(c.groups, vec![vec![0], vec![3], vec![1, 2, 4]]);
        assert_eq!(c.map, vec![0, 2, 2, 1, 2]);
        let (values, weights) = c.measurement(&[500, 2, -3, 400, 1]);
        assert_eq!(values, vec![500.0, 400.0, 0.0]);
        assert_eq!(weights, vec![1.0, 1.0, 1.0 / 3.0]);
    }

    #[test]
    fn ordered_codes_merge_into_ranges_then_rare_ranges_merge() {
        assert_eq!(coarse_ranges(5, 2), vec![vec![0, 1], vec![2, 3, 4]]);
        let noisy = [100, 90, 3, 1, 0, 2];
        let c = Compression::of_groups(&noisy, 10.0, coarse_ranges(6, 3));
        assert_eq!(c.groups, vec![vec![0, 1], vec![2, 3, 4, 5]]);
        assert_eq!(c.map, vec![0, 0, 1, 1, 1, 1]);
        assert_eq!(default_bins(48_842.0, 36.1), 21);
        assert_eq!(default_bins(3_000.0, 36.1), 5);
        assert_eq!(default_bins(10.0, 36.1), 2);
    }

    #[test]
    fn an_ordered_attribute_is_coarsened_to_the_bins_asked() {
        let mut c = Counts::new(vec![40, 2]);
        for i in 0..8_000u32 {
            c.add(&[i % 40, u32::from(i % 40 >= 20)]);
        }
        let mut rng = StdRng::seed_from_u64(8);
        let o = Options { ordered: Some(vec![true, false]), bins: Some(4), ..options(2.0) };
        let m = fit_mst(&c, &o, &mut rng);
        assert_eq!(m.codes[0].len(), 4, "{:?}", m.codes[0]);
        assert_eq!(m.codes[0][1], (10..20).collect::<Vec<u32>>());
        assert_eq!(m.codes[1].len(), 2);
    }

    #[test]
    fn simplex_projection_keeps_the_total() {
        let p = project_to_simplex(&[50.0, -10.0, 70.0], 100.0);
        assert!((p.iter().sum::<f64>() - 100.0).abs() < 1e-9 && p[1] == 0.0, "{p:?}");
    }
}
