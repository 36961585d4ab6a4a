//! Sentence splitters compared on hand-made sentences in many languages.
//!
//! Where a long paragraph is cut decides what the model sees together, so
//! the splitter is chosen by measurement: glot's rules against Unicode's
//! sentence boundaries (UAX #29, the `unicode-segmentation` crate) and a
//! plain "punctuation then space" rule. Each case is a list of sentences
//! that must come back exactly. Run with `--nocapture` to see the table.

use glot::text::segment::sentences;
use unicode_segmentation::UnicodeSegmentation;

/// (language, sentences, separator joining them).
const CASES: &[(&str, &[&str], &str)] = &[
    (
        "en",
        &["Dr. Lee earned $3.5 million in 2024.", "Was it enough?"],
        " ",
    ),
    (
        "en",
        &[
            "Mr. Smith met Mrs. Jones at 5 p.m. on Friday.",
            "They talked.",
        ],
        " ",
    ),
    (
        "en",
        &[
            "Prices rose 2.5% vs. last year, i.e. faster.",
            "Wages did not.",
        ],
        " ",
    ),
    ("en", &["\"Stop!\" she cried.", "He stopped."], " "),
    ("en", &["He paused…", "Then he left."], " "),
    ("en", &["J. R. R. Tolkien wrote it.", "It sold well."], " "),
    (
        "en",
        &[
            "The line opens at No. 5 Main St. on Monday.",
            "Tickets are free.",
        ],
        " ",
    ),
    ("en", &["Wait... what?", "Really."], " "),
    ("en", &["Version 1.2.3 shipped.", "Users upgraded."], " "),
    (
        "de",
        &["Das gilt z. B. für Züge.", "Der Bahnhof ist neu!"],
        " ",
    ),
    ("de", &["Er kam am 3. Oktober an.", "Es regnete."], " "),
    (
        "de",
        &[
            "Die Kosten stiegen um 4,5 Mio. Euro bzw. 12 Prozent.",
            "Das ist viel.",
        ],
        " ",
    ),
    (
        "de",
        &["„Wir fahren!“, rief sie.", "Alle stiegen ein."],
        " ",
    ),
    (
        "fr",
        &["M. Dupont prend le tramway.", "« Il est rapide », dit-il."],
        " ",
    ),
    (
        "fr",
        &["Mme Martin est arrivée à 8 h 30.", "Elle était en retard."],
        " ",
    ),
    ("fr", &["Vraiment ?", "Oui !"], " "),
    (
        "es",
        &["¿Corriste el maratón?", "Sí, terminé en 3 h 41 min."],
        " ",
    ),
    ("es", &["La Sra. Pérez ganó.", "¡Qué carrera!"], " "),
    ("it", &["Il sig. Rossi è partito.", "Tornerà domani."], " "),
    (
        "pt",
        &["O Dr. Silva chegou às 9h.", "A reunião começou."],
        " ",
    ),
    ("nl", &["Hij kwam o.a. met de trein.", "Het was druk."], " "),
    (
        "ru",
        &["Это т. е. пример.", "Библиотека открыта до 21.00 часа."],
        " ",
    ),
    ("ru", &["В 1990 г. всё изменилось.", "Город вырос."], " "),
    ("ru", &["«Идём!» — сказал он.", "Мы пошли."], " "),
    ("uk", &["Бібліотека відкрита.", "Читачі задоволені."], " "),
    ("el", &["Το τρένο έφτασε.", "Ήταν γεμάτο;"], " "),
    ("hi", &["ट्रेन आज देर से आई।", "यात्री नाराज़ थे।"], " "),
    ("ar", &["هل وصل القطار؟", "نعم، وصل متأخرا."], " "),
    ("ur", &["ٹرین دیر سے آئی۔", "مسافر ناراض تھے۔"], " "),
    ("am", &["ባቡሩ ደረሰ።", "ሰዎቹ ወረዱ።"], " "),
    ("hy", &["Գնացքը ժամանեց։", "Մարդիկ իջան։"], " "),
    ("zh", &["高铁很快。", "乘客很多！"], ""),
    ("zh", &["价格上涨了3.5%。", "你知道吗？"], ""),
    ("ja", &["祭りは八月です。", "花火もあります！"], ""),
    ("ja", &["「行こう」と彼は言った。", "皆が行った。"], ""),
    ("ko", &["기차가 도착했다.", "사람들이 내렸다."], " "),
    ("th", &["รถไฟมาถึงแล้ว", "ผู้โดยสารลงจากรถ"], " "),
    ("th", &["งานเทศกาลเริ่มวันนี้", "มีคนมาก"], " "),
    ("km", &["រថភ្លើងបានមកដល់។", "អ្នកដំណើរចុះ។"], " "),
];

type Splitter = fn(&str) -> Vec<String>;

fn glot(text: &str) -> Vec<String> {
    sentences(text, 0..text.len())
        .into_iter()
        .map(|r| text[r].to_string())
        .collect()
}

fn uax29(text: &str) -> Vec<String> {
    text.split_sentence_bounds()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A sentence ends at `.`, `!` or `?` followed by a space, or at a CJK mark.
fn punctuation(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        let next = chars.get(k + 1).map(|&(_, n)| n);
        let end = match c {
            '。' | '！' | '？' => true,
            '.' | '!' | '?' | '।' | '؟' | '۔' | '።' | '։' | '។' => {
                next.is_none_or(char::is_whitespace)
            }
            _ => false,
        };
        if end {
            let e = i + c.len_utf8();
            out.push(text[start..e].trim().to_string());
            start = e;
        }
    }
    out.push(text[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

#[test]
fn glot_splits_sentences_best_of_the_candidates() {
    let candidates: [(&str, Splitter); 3] = [
        ("glot", glot),
        ("UAX #29", uax29),
        ("punctuation", punctuation),
    ];
    let mut scores = [0usize; 3];
    let mut glot_misses = Vec::new();
    for (lang, expected, sep) in CASES {
        let text = expected.join(sep);
        for (k, (name, split)) in candidates.iter().enumerate() {
            let got = split(&text);
            if got == *expected {
                scores[k] += 1;
            } else if *name == "glot" {
                glot_misses.push(format!("{lang}: {got:?}"));
            }
        }
    }
    eprintln!("sentence splitting, {} cases:", CASES.len());
    for (k, (name, _)) in candidates.iter().enumerate() {
        eprintln!("  {name:<12} {:>3} correct", scores[k]);
    }
    assert!(glot_misses.is_empty(), "glot missed: {glot_misses:#?}");
    assert!(scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
}
