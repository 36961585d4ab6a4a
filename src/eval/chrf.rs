//! Corpus chrF as sacreBLEU computes it by default: character n-grams of
//! orders 1–6 with white space removed, statistics summed over the corpus,
//! precision and recall averaged over the orders both sides have, then
//! combined with β = 2 (recall weighs more).

use super::bleu::is_python_space;

const CHAR_ORDER: usize = 6;
const BETA: f64 = 2.0;

/// chrF and the averages it is made of.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Chrf {
    /// 0–100.
    pub score: f64,
    pub precision: f64,
    pub recall: f64,
}

/// Corpus chrF of `hyps` against one reference each.
pub fn corpus_chrf(hyps: &[&str], refs: &[&str]) -> Chrf {
    // Per order: hypothesis n-grams, reference n-grams, matches.
    let mut stats = [[0usize; 3]; CHAR_ORDER];
    for (h, r) in hyps.iter().zip(refs) {
        let strip = |s: &str| -> Vec<char> { s.chars().filter(|&c| !is_python_space(c)).collect() };
        let (h, r) = (strip(h), strip(r));
        for (n, s) in stats.iter_mut().enumerate() {
            let (m, th, tr) = super::overlap(&h, &r, n + 1);
            // A hypothesis's n-grams count only where the reference has
            // n-grams of that order at all.
            s[0] += if tr > 0 { th } else { 0 };
            s[1] += tr;
            s[2] += m;
        }
    }
    score(&stats)
}

/// Precision and recall averaged over the orders that both sides have.
fn score(stats: &[[usize; 3]; CHAR_ORDER]) -> Chrf {
    let (mut precision, mut recall, mut orders) = (0.0, 0.0, 0);
    for &[hyp, reference, matched] in stats {
        if hyp > 0 && reference > 0 {
            precision += matched as f64 / hyp as f64;
            recall += matched as f64 / reference as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return Chrf {
            score: 0.0,
            precision: 0.0,
            recall: 0.0,
        };
    }
    let (p, r) = (precision / orders as f64, recall / orders as f64);
    let factor = BETA * BETA;
    let score = if p + r > 0.0 {
        100.0 * (1.0 + factor) * p * r / (factor * p + r)
    } else {
        0.0
    };
    Chrf {
        score,
        precision: 100.0 * p,
        recall: 100.0 * r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn white_space_does_not_count() {
        let a = corpus_chrf(&["the cat"], &["thecat"]);
        assert!((a.score - 100.0).abs() < 1e-9, "{a:?}");
        assert_eq!(corpus_chrf(&["xyz"], &["abc"]).score, 0.0);
    }
}
