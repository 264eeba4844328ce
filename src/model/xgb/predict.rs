//! Scoring a loaded [`Booster`]: block-wise tree walks over both node layouts, in parallel
//! chunks, and the objective transforms (sigmoid, softmax, argmax) as xgboost computes them.

use rayon::prelude::*;

use super::{
    Booster, DenseMatrix, Objective, TreeMeta, BLOCK_ROWS, CHUNK_ROWS, DEFAULT_LEFT, FEATURE_MASK,
};

impl Booster {
    /// Raw margins, `rows * num_group` values row-major. `x` holds `rows * num_feature`
    /// values; a shorter or longer slice is an error of the caller and returns `None`.
    pub fn predict_margin(&self, x: &[f32], rows: usize) -> Option<Vec<f32>> {
        let nf = self.num_feature;
        if x.len() != rows.checked_mul(nf)? {
            return None;
        }
        let ng = self.num_group;
        let mut out = vec![0f32; rows.checked_mul(ng)?];
        if rows <= CHUNK_ROWS {
            self.score_chunk(x, &mut out);
        } else {
            out.par_chunks_mut(CHUNK_ROWS * ng)
                .zip(x.par_chunks(CHUNK_ROWS * nf.max(1)))
                .for_each(|(o, xs)| self.score_chunk(xs, o));
        }
        Some(out)
    }

    /// Predictions after the objective's transform: `rows * output_width()` values.
    pub fn predict(&self, m: &DenseMatrix) -> Option<Vec<f32>> {
        if m.cols != self.num_feature {
            return None;
        }
        let mut margin = self.predict_margin(&m.data, m.rows)?;
        let ng = self.num_group;
        match self.objective {
            Objective::BinaryLogistic | Objective::RegLogistic => {
                margin.iter_mut().for_each(|v| *v = sigmoid(*v))
            }
            Objective::CountPoisson => margin.iter_mut().for_each(|v| *v = v.exp()),
            Objective::MultiSoftprob => margin.chunks_mut(ng).for_each(softmax),
            Objective::MultiSoftmax => {
                return Some(margin.chunks(ng).map(argmax).collect());
            }
            Objective::BinaryLogitRaw
            | Objective::RegSquaredError
            | Objective::RegAbsoluteError => {}
        }
        Some(margin)
    }

    /// Scores `x` (whole rows) into `out`, block by block.
    fn score_chunk(&self, x: &[f32], out: &mut [f32]) {
        let nf = self.num_feature;
        let ng = self.num_group;
        let rows = out.len() / ng;
        let mut start = 0;
        while start < rows {
            let n = (rows - start).min(BLOCK_ROWS);
            self.score_block(
                &x[start * nf..(start + n) * nf],
                &mut out[start * ng..(start + n) * ng],
                n,
            );
            start += n;
        }
    }

    fn score_block(&self, x: &[f32], out: &mut [f32], rows: usize) {
        let nf = self.num_feature;
        let ng = self.num_group;
        for r in 0..rows {
            out[r * ng..(r + 1) * ng].copy_from_slice(&self.base_margin);
        }
        // The hot loop indexes without bounds checks; what makes that sound is checked
        // here once per block and by `build` once per model.
        assert!(x.len() >= rows * nf && out.len() >= rows * ng && rows <= BLOCK_ROWS);
        assert!(self.leaf.len() == self.nodes.len());
        let nodes = &self.nodes[..];
        let mut idx = [0u32; BLOCK_ROWS];
        let idx = &mut idx[..rows];
        for t in &self.trees {
            if let Some((n0, l0)) = t.dense {
                self.score_dense(t, n0 as usize, l0 as usize, x, out, idx);
                continue;
            }
            idx.fill(t.root);
            for _ in 0..t.depth {
                for (r, i) in idx.iter_mut().enumerate() {
                    // SAFETY: `build` makes every child index (and every leaf's self index)
                    // a valid index of `nodes`, and roots are valid; so `*i` always is.
                    let n = unsafe { *nodes.get_unchecked(*i as usize) };
                    // SAFETY: `build` checks feature < num_feature (= nf) for every split;
                    // leaves use feature 0, and a tree with depth > 0 implies nf >= 1. With
                    // r < rows and x.len() >= rows * nf (asserted above) the index is in range.
                    let v = unsafe { *x.get_unchecked(r * nf + (n.feat & FEATURE_MASK) as usize) };
                    // NaN compares false, so it goes left only through default_left.
                    let go_left = (v < n.cond) | (v.is_nan() & (n.feat & DEFAULT_LEFT != 0));
                    *i = if go_left { n.left } else { n.right };
                }
            }
            let g = t.group as usize;
            for (r, i) in idx.iter().enumerate() {
                // SAFETY: `*i` is a valid node index (above) and leaf.len() == nodes.len().
                out[r * ng + g] += unsafe { *self.leaf.get_unchecked(*i as usize) };
            }
        }
    }

    /// One complete-layout tree over a block of rows (see [`DNode`]).
    #[inline]
    fn score_dense(
        &self,
        t: &TreeMeta,
        n0: usize,
        l0: usize,
        x: &[f32],
        out: &mut [f32],
        idx: &mut [u32],
    ) {
        let nf = self.num_feature;
        let ng = self.num_group;
        let nodes = &self.dense[n0..n0 + (1usize << t.depth) - 1];
        let leaves = &self.dense_leaf[l0..l0 + (1usize << t.depth)];
        idx.fill(0);
        for _ in 0..t.depth {
            for (r, i) in idx.iter_mut().enumerate() {
                // SAFETY: after k < depth steps, i < 2^k - 1 + 2^k <= 2^depth - 1 = nodes.len().
                let n = unsafe { *nodes.get_unchecked(*i as usize) };
                // SAFETY: as in `score_block`: feature < nf, r < rows, x.len() >= rows * nf.
                let v = unsafe { *x.get_unchecked(r * nf + (n.feat & FEATURE_MASK) as usize) };
                let go_left = (v < n.cond) | (v.is_nan() & (n.feat & DEFAULT_LEFT != 0));
                *i = 2 * *i + 2 - go_left as u32;
            }
        }
        let first_leaf = (1u32 << t.depth) - 1;
        let g = t.group as usize;
        for (r, i) in idx.iter().enumerate() {
            out[r * ng + g] += leaves[(*i - first_leaf) as usize];
        }
    }
}

/// xgboost's `common::Sigmoid` (f32, clamped so `exp` cannot overflow).
#[inline]
pub(super) fn sigmoid(x: f32) -> f32 {
    let e = (-x).min(88.7f32).exp();
    1.0f32 / (e + 1.0f32 + 1e-16f32)
}

/// xgboost's `common::Softmax`: shift by the max, `exp` in f32, sum in f64.
pub(super) fn softmax(v: &mut [f32]) {
    let wmax = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f64;
    for x in v.iter_mut() {
        *x = (*x - wmax).exp();
        sum += *x as f64;
    }
    let s = sum as f32;
    for x in v.iter_mut() {
        *x /= s;
    }
}

/// Index of the first maximum, as xgboost's `multi:softmax` reports it.
pub(super) fn argmax(v: &[f32]) -> f32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as f32
}
