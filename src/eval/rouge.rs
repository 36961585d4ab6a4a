//! ROUGE-1, ROUGE-2 and ROUGE-L as Google's `rouge-score` computes them
//! with its defaults: lower-cased tokens of ASCII letters and digits (its
//! tokenizer drops every other character, so it suits English text), no
//! stemming, precision, recall and F1 per summary.

/// Precision, recall and F1, each 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl Prf {
    fn new(precision: f64, recall: f64) -> Self {
        Prf {
            precision,
            recall,
            f1: super::f1(precision, recall),
        }
    }

    /// The mean of each of the three over `scores`.
    pub fn mean(scores: &[Prf]) -> Prf {
        let n = scores.len().max(1) as f64;
        let sum = |f: fn(&Prf) -> f64| scores.iter().map(f).sum::<f64>() / n;
        Prf {
            precision: sum(|s| s.precision),
            recall: sum(|s| s.recall),
            f1: sum(|s| s.f1),
        }
    }
}

/// The three scores of one summary against its reference.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Rouge {
    pub rouge1: Prf,
    pub rouge2: Prf,
    #[serde(rename = "rougeL")]
    pub rouge_l: Prf,
}

impl Rouge {
    /// The mean of each score over `scores`.
    pub fn mean(scores: &[Rouge]) -> Rouge {
        let pick = |f: fn(&Rouge) -> Prf| Prf::mean(&scores.iter().map(f).collect::<Vec<_>>());
        Rouge {
            rouge1: pick(|s| s.rouge1),
            rouge2: pick(|s| s.rouge2),
            rouge_l: pick(|s| s.rouge_l),
        }
    }
}

/// Tokens as `rouge-score`'s default tokenizer makes them.
pub fn tokenize(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// ROUGE of `summary` against `reference`.
pub fn score(summary: &str, reference: &str) -> Rouge {
    let (hyp, reference) = (tokenize(summary), tokenize(reference));
    let ngram = |n: usize| {
        let (matched, h, r) = super::overlap(&hyp, &reference, n);
        Prf::new(
            matched as f64 / h.max(1) as f64,
            matched as f64 / r.max(1) as f64,
        )
    };
    let rouge_l = if hyp.is_empty() || reference.is_empty() {
        Prf::default()
    } else {
        let lcs = lcs(&hyp, &reference) as f64;
        Prf::new(lcs / hyp.len() as f64, lcs / reference.len() as f64)
    };
    Rouge {
        rouge1: ngram(1),
        rouge2: ngram(2),
        rouge_l,
    }
}

/// Length of the longest common subsequence.
fn lcs<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            row[j + 1] = if x == y {
                prev[j] + 1
            } else {
                row[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_lower_case_ascii_words() {
        assert_eq!(
            tokenize("The U.S. economy grew 2,5% — naïve!"),
            ["the", "u", "s", "economy", "grew", "2", "5", "na", "ve"]
        );
    }

    #[test]
    fn lcs_is_in_order_not_contiguous() {
        assert_eq!(lcs(&[1, 2, 3, 4, 5], &[1, 3, 9, 5]), 3);
        assert_eq!(lcs::<u8>(&[], &[1]), 0);
    }
}
