//! A distribution over coded rows that factorises over a tree of attributes (the model MST
//! fits): one potential per attribute and one per tree edge, exact marginals by two-pass belief
//! propagation in log space, and the fit to noisy marginals by mirror descent (McKenna, Sheldon,
//! Miklau, "Graphical-model based estimation and inference for differential privacy", ICML 2019,
//! Algorithm 1; private-pgm's `estimation.mirror_descent` with its Armijo step rule).

/// A tree over attributes `0..sizes.len()`, rooted at 0: `parent[v]` and the edge order.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    pub sizes: Vec<usize>,
    /// Edges as (parent, child), each child once, in an order where a parent comes before its
    /// children (breadth-first from the root).
    pub edges: Vec<(usize, usize)>,
}

impl Tree {
    /// Roots the undirected `edges` (a spanning tree) at attribute 0.
    pub fn rooted(sizes: Vec<usize>, edges: &[(usize, usize)]) -> Tree {
        let d = sizes.len();
        let mut neighbours = vec![Vec::new(); d];
        for &(a, b) in edges {
            neighbours[a].push(b);
            neighbours[b].push(a);
        }
        let mut seen = vec![false; d];
        let mut order = Vec::new();
        let mut queue = std::collections::VecDeque::new();
        for root in 0..d {
            if seen[root] {
                continue;
            }
            seen[root] = true;
            queue.push_back(root);
            while let Some(u) = queue.pop_front() {
                for &v in &neighbours[u] {
                    if !seen[v] {
                        seen[v] = true;
                        order.push((u, v));
                        queue.push_back(v);
                    }
                }
            }
        }
        Tree { sizes, edges: order }
    }

    fn edge_cells(&self, e: usize) -> usize {
        let (a, b) = self.edges[e];
        self.sizes[a] * self.sizes[b]
    }

    /// The roots: attributes no edge leads to (one for a spanning tree).
    fn roots(&self) -> Vec<usize> {
        let mut has_parent = vec![false; self.sizes.len()];
        for &(_, c) in &self.edges {
            has_parent[c] = true;
        }
        (0..self.sizes.len()).filter(|v| !has_parent[*v]).collect()
    }
}

/// Values on every clique of a tree: one vector per attribute, one row-major
/// `sizes[parent] × sizes[child]` matrix per edge. Potentials (log space) and marginals share it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cliques {
    pub nodes: Vec<Vec<f64>>,
    pub edges: Vec<Vec<f64>>,
}

impl Cliques {
    pub fn zeros(tree: &Tree) -> Cliques {
        Cliques {
            nodes: tree.sizes.iter().map(|&k| vec![0.0; k]).collect(),
            edges: (0..tree.edges.len()).map(|e| vec![0.0; tree.edge_cells(e)]).collect(),
        }
    }

    fn cells(&self) -> impl Iterator<Item = &f64> {
        self.nodes.iter().flatten().chain(self.edges.iter().flatten())
    }

    fn zip_mut<'a>(&'a mut self, other: &'a Cliques) -> impl Iterator<Item = (&'a mut f64, &'a f64)> {
        let nodes = self.nodes.iter_mut().flatten().zip(other.nodes.iter().flatten());
        nodes.chain(self.edges.iter_mut().flatten().zip(other.edges.iter().flatten()))
    }

    pub fn dot(&self, other: &Cliques) -> f64 {
        self.cells().zip(other.cells()).map(|(a, b)| a * b).sum()
    }
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

/// The marginals of p(x) ∝ exp(Σ_v θ_v(x_v) + Σ_e θ_e(x_parent, x_child)), scaled to `total`
/// rows: exact on a tree (sum-product, upward then downward, in log space).
pub fn marginals(tree: &Tree, theta: &Cliques, total: f64) -> Cliques {
    let d = tree.sizes.len();
    // inside[v] = θ_v + messages from v's children; up[e] = message from the child of e to its parent.
    let mut inside: Vec<Vec<f64>> = theta.nodes.clone();
    let mut up: Vec<Vec<f64>> = vec![Vec::new(); tree.edges.len()];
    for e in (0..tree.edges.len()).rev() {
        let (p, c) = tree.edges[e];
        let (kp, kc) = (tree.sizes[p], tree.sizes[c]);
        let m: Vec<f64> =
            (0..kp).map(|i| log_sum_exp((0..kc).map(|j| theta.edges[e][i * kc + j] + inside[c][j]))).collect();
        for (x, mi) in inside[p].iter_mut().zip(&m) {
            *x += mi;
        }
        up[e] = m;
    }
    // down[v] = the message into v from its parent (zero at a root).
    let mut down: Vec<Vec<f64>> = tree.sizes.iter().map(|&k| vec![0.0; k]).collect();
    for (e, &(p, c)) in tree.edges.iter().enumerate() {
        let (kp, kc) = (tree.sizes[p], tree.sizes[c]);
        let from_parent: Vec<f64> = (0..kp).map(|i| inside[p][i] - up[e][i] + down[p][i]).collect();
        down[c] = (0..kc).map(|j| log_sum_exp((0..kp).map(|i| theta.edges[e][i * kc + j] + from_parent[i]))).collect();
    }
    let mut out = Cliques::zeros(tree);
    // Each tree component is normalised on its own; a spanning tree has one.
    let mut log_z = vec![0.0; d];
    for root in tree.roots() {
        log_z[root] = log_sum_exp(inside[root].iter().copied());
    }
    for &(p, c) in &tree.edges {
        log_z[c] = log_z[p];
    }
    for v in 0..d {
        for (x, (a, b)) in out.nodes[v].iter_mut().zip(inside[v].iter().zip(&down[v])) {
            *x = total * (a + b - log_z[v]).exp();
        }
    }
    for (e, &(p, c)) in tree.edges.iter().enumerate() {
        let (kp, kc) = (tree.sizes[p], tree.sizes[c]);
        for i in 0..kp {
            let from_parent = inside[p][i] - up[e][i] + down[p][i];
            let row = i * kc..(i + 1) * kc;
            for ((x, t), inner) in out.edges[e][row.clone()].iter_mut().zip(&theta.edges[e][row]).zip(&inside[c]) {
                *x = total * (t + from_parent + inner - log_z[p]).exp();
            }
        }
    }
    out
}

/// A noisy measurement of one clique's marginal: `values` with per-cell `weights` (1, or 1/k
/// for a cell that sums k measured cells), and the noise's standard deviation.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub clique: Clique,
    pub values: Vec<f64>,
    pub weights: Vec<f64>,
    pub sigma: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clique {
    Node(usize),
    /// An index into [`Tree::edges`], its matrix laid out parent × child.
    Edge(usize),
}

/// L(μ) = Σ_m Σ_cells w (μ − y)² / (2σ), and its gradient in μ (which is its gradient in θ, the
/// mirror-descent form of PGM19).
fn loss(tree: &Tree, mu: &Cliques, measurements: &[Measurement]) -> (f64, Cliques) {
    let mut grad = Cliques::zeros(tree);
    let mut total = 0.0;
    for m in measurements {
        let (model, g) = match m.clique {
            Clique::Node(v) => (&mu.nodes[v], &mut grad.nodes[v]),
            Clique::Edge(e) => (&mu.edges[e], &mut grad.edges[e]),
        };
        for (i, ((x, y), w)) in model.iter().zip(&m.values).zip(&m.weights).enumerate() {
            let r = x - y;
            total += w * r * r / (2.0 * m.sigma);
            g[i] += w * r / m.sigma;
        }
    }
    (total, grad)
}

/// Fits potentials to the measurements by mirror descent with private-pgm's Armijo rule (accept
/// a step that decreases the loss by at least half its first-order prediction, then grow the step
/// by 1%; otherwise halve it), from α = 2/total. Returns the fitted marginals.
pub fn fit(tree: &Tree, measurements: &[Measurement], total: f64, iterations: usize) -> Cliques {
    let mut theta = Cliques::zeros(tree);
    let mut mu = marginals(tree, &theta, total);
    let (mut value, mut grad) = loss(tree, &mu, measurements);
    let mut alpha = 2.0 / total;
    for _ in 0..iterations {
        let mut next = theta.clone();
        for (t, g) in next.zip_mut(&grad) {
            *t -= alpha * g;
        }
        let next_mu = marginals(tree, &next, total);
        let (next_value, next_grad) = loss(tree, &next_mu, measurements);
        let predicted: f64 = {
            let mut diff = mu.clone();
            for (a, b) in diff.zip_mut(&next_mu) {
                *a -= b;
            }
            grad.dot(&diff)
        };
        if value - next_value >= 0.5 * alpha * predicted {
            (theta, mu, value, grad) = (next, next_mu, next_value, next_grad);
            alpha *= 1.01;
        } else {
            alpha *= 0.5;
        }
    }
    mu
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force marginals: enumerate every assignment.
    fn brute(tree: &Tree, theta: &Cliques, total: f64) -> Cliques {
        let d = tree.sizes.len();
        let mut out = Cliques::zeros(tree);
        let mut x = vec![0usize; d];
        let mut weights = Vec::new();
        loop {
            let mut s: f64 = (0..d).map(|v| theta.nodes[v][x[v]]).sum();
            for (e, &(p, c)) in tree.edges.iter().enumerate() {
                s += theta.edges[e][x[p] * tree.sizes[c] + x[c]];
            }
            weights.push((x.clone(), s.exp()));
            let mut v = 0;
            while v < d {
                x[v] += 1;
                if x[v] < tree.sizes[v] {
                    break;
                }
                x[v] = 0;
                v += 1;
            }
            if v == d {
                break;
            }
        }
        let z: f64 = weights.iter().map(|(_, w)| w).sum();
        for (x, w) in weights {
            let p = total * w / z;
            for (node, &xv) in out.nodes.iter_mut().zip(&x) {
                node[xv] += p;
            }
            for (e, &(a, c)) in tree.edges.iter().enumerate() {
                out.edges[e][x[a] * tree.sizes[c] + x[c]] += p;
            }
        }
        out
    }

    fn pseudo_random(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
    }

    fn random_theta(tree: &Tree, seed: u64) -> Cliques {
        let mut s = seed;
        let mut t = Cliques::zeros(tree);
        for x in t.nodes.iter_mut().flatten().chain(t.edges.iter_mut().flatten()) {
            *x = pseudo_random(&mut s);
        }
        t
    }

    #[test]
    fn belief_propagation_matches_brute_force_on_small_trees() {
        type Shape<'a> = (&'a [usize], &'a [(usize, usize)]);
        let shapes: [Shape; 4] = [
            (&[3], &[]),
            (&[2, 3], &[(0, 1)]),
            (&[2, 3, 4, 2], &[(0, 1), (1, 2), (1, 3)]),
            (&[3, 2, 2, 3, 2], &[(2, 0), (0, 1), (3, 2), (4, 3)]),
        ];
        for (i, (sizes, edges)) in shapes.iter().enumerate() {
            let tree = Tree::rooted(sizes.to_vec(), edges);
            let theta = random_theta(&tree, i as u64 + 1);
            let (fast, slow) = (marginals(&tree, &theta, 100.0), brute(&tree, &theta, 100.0));
            for (a, b) in fast.cells().zip(slow.cells()) {
                assert!((a - b).abs() < 1e-9, "tree {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn rooting_orders_parents_before_children() {
        let tree = Tree::rooted(vec![2; 5], &[(3, 4), (0, 3), (2, 0), (1, 2)]);
        assert_eq!(tree.edges.len(), 4);
        let mut placed = [false; 5];
        placed[0] = true;
        for &(p, c) in &tree.edges {
            assert!(placed[p] && !placed[c], "{:?}", tree.edges);
            placed[c] = true;
        }
    }

    /// With exact (noise-free) measurements of tree marginals that a tree model can represent,
    /// the fit reproduces them: σ → 0 gives the tree marginals back.
    #[test]
    fn noise_free_measurements_are_reproduced() {
        let tree = Tree::rooted(vec![3, 2, 4], &[(0, 1), (1, 2)]);
        let truth = marginals(&tree, &random_theta(&tree, 9), 1000.0);
        let mut ms: Vec<Measurement> = (0..3)
            .map(|v| Measurement {
                clique: Clique::Node(v),
                values: truth.nodes[v].clone(),
                weights: vec![1.0; tree.sizes[v]],
                sigma: 1.0,
            })
            .collect();
        for e in 0..tree.edges.len() {
            ms.push(Measurement {
                clique: Clique::Edge(e),
                values: truth.edges[e].clone(),
                weights: vec![1.0; truth.edges[e].len()],
                sigma: 1.0,
            });
        }
        let fitted = fit(&tree, &ms, 1000.0, 3000);
        for (a, b) in fitted.cells().zip(truth.cells()) {
            assert!((a - b).abs() < 0.05, "{a} vs {b}");
        }
    }
}
