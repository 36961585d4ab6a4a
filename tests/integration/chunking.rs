//! The chunker with a real tokenizer: BPE counts are not additive across
//! boundaries, so the budget must hold for the text as it is sent.

use glot::engine::tokenizer::Tokenizer;
use glot::text::chunk::plan;

use crate::util::{fixtures, model_dir};

fn corpus() -> String {
    let mut names: Vec<_> = std::fs::read_dir(fixtures().join("corpus"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[test]
fn chunks_tile_multilingual_text_within_budget() {
    let tok = Tokenizer::from_file(&model_dir("qwen3").join("tokenizer.json")).unwrap();
    let text = corpus();
    let count = |s: &str| tok.count(s);
    for budget in [8, 17, 40, 100, 400, 5000] {
        let p = plan(&text, budget, &count).unwrap();
        let mut pos = 0;
        for c in &p.chunks {
            assert_eq!(c.span.start, pos, "budget {budget}: chunks are contiguous");
            let sent = &text[c.content.clone()];
            assert!(!sent.trim().is_empty());
            assert!(
                text[c.span.start..c.content.start].trim().is_empty()
                    && text[c.content.end..c.span.end].trim().is_empty(),
                "budget {budget}: only whitespace outside the sent text"
            );
            let tokens = tok.count(sent).unwrap();
            assert!(
                tokens <= budget,
                "budget {budget}: chunk of {tokens} tokens"
            );
            pos = c.span.end;
        }
        assert_eq!(
            pos,
            text.len(),
            "budget {budget}: the whole text is covered"
        );
        if budget >= 5000 {
            assert_eq!(p.chunks.len(), 1);
        }
    }
}
