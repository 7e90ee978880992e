//! The only view of the data MST needs: every 1-way and 2-way count table of the coded rows,
//! gathered in one pass. Memory depends on the attributes' domains, not on the number of rows.

/// Count tables of coded rows: `one[a][x]`, and for each pair a < b a row-major
/// `sizes[a] × sizes[b]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Counts {
    pub sizes: Vec<usize>,
    pub one: Vec<Vec<u64>>,
    two: Vec<Vec<u64>>,
}

impl Counts {
    pub fn new(sizes: Vec<usize>) -> Counts {
        let d = sizes.len();
        let mut two = Vec::with_capacity(d * d.saturating_sub(1) / 2);
        for a in 0..d {
            for b in a + 1..d {
                two.push(vec![0; sizes[a] * sizes[b]]);
            }
        }
        Counts { one: sizes.iter().map(|&k| vec![0; k]).collect(), sizes, two }
    }

    fn pair_index(&self, a: usize, b: usize) -> usize {
        let d = self.sizes.len();
        a * (2 * d - a - 1) / 2 + (b - a - 1)
    }

    /// Adds one coded row (`row[a] < sizes[a]`).
    pub fn add(&mut self, row: &[u32]) {
        let d = self.sizes.len();
        for a in 0..d {
            let x = row[a] as usize;
            self.one[a][x] += 1;
            let base = self.pair_index(a, a + 1);
            for (i, (&y, &kb)) in row[a + 1..d].iter().zip(&self.sizes[a + 1..]).enumerate() {
                self.two[base + i][x * kb + y as usize] += 1;
            }
        }
    }

    /// The count table of attributes `a` and `b` (any order), laid out `a × b`.
    pub fn pair(&self, a: usize, b: usize) -> Vec<u64> {
        if a < b {
            return self.two[self.pair_index(a, b)].clone();
        }
        let t = &self.two[self.pair_index(b, a)];
        let (ka, kb) = (self.sizes[a], self.sizes[b]);
        let mut out = vec![0; ka * kb];
        for i in 0..kb {
            for j in 0..ka {
                out[j * kb + i] = t[i * ka + j];
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_counted_in_both_orders() {
        let mut c = Counts::new(vec![2, 3, 2]);
        for row in [[0, 2, 1], [1, 0, 1], [0, 2, 0]] {
            c.add(&row);
        }
        assert_eq!(c.one, vec![vec![2, 1], vec![1, 0, 2], vec![1, 2]]);
        assert_eq!(c.pair(0, 1), vec![0, 0, 2, 1, 0, 0]);
        assert_eq!(c.pair(1, 0), vec![0, 1, 0, 0, 2, 0]);
        assert_eq!(c.pair(1, 2), vec![0, 1, 0, 0, 1, 1]);
    }
}
