//! The complete layout: trees at most [`MAX_DENSE_DEPTH`] deep copied level by level (see
//! [`DNode`]), so a scoring step needs no child pointers.

use super::{DNode, Node, TreeMeta, MAX_DENSE_DEPTH};

/// Copies every tree at most [`MAX_DENSE_DEPTH`] deep into the complete layout, recording
/// its offsets in its [`TreeMeta`]; returns the dense nodes and leaves.
pub(super) fn densify(
    nodes: &[Node],
    leaf: &[f32],
    trees: &mut [TreeMeta],
) -> (Vec<DNode>, Vec<f32>) {
    let mut dense = Vec::new();
    let mut dense_leaf = Vec::new();
    for t in trees.iter_mut().filter(|t| t.depth <= MAX_DENSE_DEPTH) {
        let (n0, l0) = (dense.len(), dense_leaf.len());
        dense.resize(n0 + (1usize << t.depth) - 1, DNode::default());
        dense_leaf.resize(l0 + (1usize << t.depth), 0.0);
        fill_dense(
            nodes,
            leaf,
            t.root,
            0,
            0,
            t.depth,
            &mut dense[n0..],
            &mut dense_leaf[l0..],
        );
        t.dense = Some((n0 as u32, l0 as u32));
    }
    (dense, dense_leaf)
}

/// Copies the subtree at `src` into complete layout at position `pos` (level `level`).
#[allow(clippy::too_many_arguments)]
fn fill_dense(
    nodes: &[Node],
    leaf: &[f32],
    src: u32,
    pos: usize,
    level: u32,
    depth: u32,
    dense: &mut [DNode],
    dense_leaf: &mut [f32],
) {
    let n = nodes[src as usize];
    let is_leaf = n.left == src;
    if level == depth {
        // `depth` is the longest path, so whatever reaches the bottom level is a leaf.
        dense_leaf[pos - ((1usize << depth) - 1)] = leaf[src as usize];
        return;
    }
    let (l, r) = if is_leaf {
        dense[pos] = DNode::default();
        (src, src)
    } else {
        dense[pos] = DNode {
            cond: n.cond,
            feat: n.feat,
        };
        (n.left, n.right)
    };
    fill_dense(
        nodes,
        leaf,
        l,
        2 * pos + 1,
        level + 1,
        depth,
        dense,
        dense_leaf,
    );
    fill_dense(
        nodes,
        leaf,
        r,
        2 * pos + 2,
        level + 1,
        depth,
        dense,
        dense_leaf,
    );
}
