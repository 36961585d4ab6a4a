//! Corpus BLEU as sacreBLEU computes it by default: the `13a` tokenizer
//! (mteval-v13a's), n-grams up to 4, exponential smoothing of empty
//! orders, the brevity penalty over the whole corpus, case kept.

use std::sync::OnceLock;

use regex::Regex;

/// The longest n-grams counted.
const MAX_ORDER: usize = 4;

/// BLEU and the numbers it is made of.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bleu {
    /// 0–100.
    pub score: f64,
    /// Smoothed precision of each order, 0–100.
    pub precisions: [f64; MAX_ORDER],
    pub brevity_penalty: f64,
    pub hyp_len: usize,
    pub ref_len: usize,
}

/// The punctuation rules of mteval-v13a, applied in order.
fn rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        [
            // Symbols and punctuation other than period, comma and dash.
            (r"([\{-~\[-` -&\(-\+:-@/])", " $1 "),
            // Period and comma unless preceded by a digit…
            (r"([^0-9])([\.,])", "$1 $2 "),
            // …or followed by one.
            (r"([\.,])([^0-9])", " $1 $2"),
            // A dash after a digit.
            (r"([0-9])(-)", "$1 $2 "),
        ]
        .into_iter()
        .map(|(re, to)| (Regex::new(re).expect("valid pattern"), to))
        .collect()
    })
}

/// Tokens of `line` as sacreBLEU's `13a` tokenizer makes them.
pub fn tokenize_13a(line: &str) -> Vec<String> {
    // sacreBLEU strips trailing white space before tokenizing.
    let mut line = line
        .trim_end_matches(is_python_space)
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut line = format!(" {line} ");
    for (re, to) in rules() {
        line = re.replace_all(&line, *to).into_owned();
    }
    split_python(&line)
}

/// `str.split()`: runs of whitespace as Python counts it.
pub(crate) fn split_python(s: &str) -> Vec<String> {
    s.split(is_python_space)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Python's `str.isspace`: Unicode white space plus the four separator
/// controls U+001C–U+001F.
pub(crate) fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Corpus BLEU of `hyps` against one reference each.
pub fn corpus_bleu(hyps: &[&str], refs: &[&str]) -> Bleu {
    let mut matched = [0usize; MAX_ORDER];
    let mut total = [0usize; MAX_ORDER];
    let (mut hyp_len, mut ref_len) = (0, 0);
    for (h, r) in hyps.iter().zip(refs) {
        let (h, r) = (tokenize_13a(h), tokenize_13a(r));
        hyp_len += h.len();
        ref_len += r.len();
        for n in 1..=MAX_ORDER {
            let (m, t, _) = super::overlap(&h, &r, n);
            matched[n - 1] += m;
            total[n - 1] += t;
        }
    }
    score(matched, total, hyp_len, ref_len)
}

fn score(
    matched: [usize; MAX_ORDER],
    total: [usize; MAX_ORDER],
    hyp_len: usize,
    ref_len: usize,
) -> Bleu {
    let brevity_penalty = if hyp_len >= ref_len {
        1.0
    } else if hyp_len > 0 {
        (1.0 - ref_len as f64 / hyp_len as f64).exp()
    } else {
        0.0
    };
    let mut precisions = [0.0; MAX_ORDER];
    if matched.iter().all(|&m| m == 0) {
        // No n-gram of any order matches: 0, unsmoothed.
        return Bleu {
            score: 0.0,
            precisions,
            brevity_penalty,
            hyp_len,
            ref_len,
        };
    }
    let mut smooth = 1.0;
    for n in 0..MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if matched[n] == 0 {
            // sacreBLEU's "exp" smoothing: each empty order counts as half
            // a match less than the one before.
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * matched[n] as f64 / total[n] as f64
        };
    }
    // A zero precision is log 0 in sacreBLEU's terms: a huge negative that
    // takes the score to 0.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    let mean = precisions.iter().map(|&p| log(p)).sum::<f64>() / MAX_ORDER as f64;
    Bleu {
        score: brevity_penalty * mean.exp(),
        precisions,
        brevity_penalty,
        hyp_len,
        ref_len,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_13a_tokenizer_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("Hello, world! It costs 3.50 (about 1,000-2,000 yen)."),
            [
                "Hello", ",", "world", "!", "It", "costs", "3.50", "(", "about", "1,000", "-",
                "2,000", "yen", ")", "."
            ]
        );
        assert_eq!(tokenize_13a("a &amp; b&quot;"), ["a", "&", "b", "\""]);
    }

    #[test]
    fn identical_text_scores_100_and_nothing_scores_0() {
        let b = corpus_bleu(&["the cat sat on the mat"], &["the cat sat on the mat"]);
        assert!((b.score - 100.0).abs() < 1e-9);
        assert_eq!(corpus_bleu(&[""], &["the cat"]).score, 0.0);
    }
}
