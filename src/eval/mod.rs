//! Quality metrics computed exactly as the reference tools compute them, so
//! that glot's numbers can be compared with published ones: chrF and BLEU
//! with sacreBLEU's defaults, ROUGE-1/2/L with Google's `rouge-score`.

pub mod bleu;
pub mod chrf;
pub mod rouge;

use std::collections::HashMap;
use std::hash::Hash;

/// Counts of every n-gram in `items` of one order.
fn ngrams<T: Eq + Hash + Clone>(items: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    if n > 0 && items.len() >= n {
        for w in items.windows(n) {
            *counts.entry(w).or_insert(0) += 1;
        }
    }
    counts
}

/// N-grams of `hyp` also in `reference`, each counted at most as often as
/// the reference has it; and the totals of each side.
fn overlap<T: Eq + Hash + Clone>(hyp: &[T], reference: &[T], n: usize) -> (usize, usize, usize) {
    let (h, r) = (ngrams(hyp, n), ngrams(reference, n));
    let matched = h
        .iter()
        .map(|(g, &c)| c.min(r.get(g).copied().unwrap_or(0)))
        .sum();
    (matched, h.values().sum(), r.values().sum())
}

/// Harmonic mean of precision and recall, 0 when both are.
fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_clips_counts_to_the_reference() {
        let hyp = ["the", "the", "the", "cat"];
        let reference = ["the", "cat", "sat"];
        assert_eq!(overlap(&hyp, &reference, 1), (2, 4, 3));
        assert_eq!(overlap(&hyp, &reference, 2), (1, 3, 2));
        assert_eq!(overlap(&hyp, &reference, 5), (0, 0, 0));
    }
}
