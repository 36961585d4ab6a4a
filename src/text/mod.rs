//! Text structure: paragraphs, sentences, languages and token-budgeted chunks.

pub mod chunk;
pub mod lang;
pub mod segment;
