//! Integration tests: model parity with `transformers`, chat templates, and
//! the `glot` binary end to end on tiny fixture models.

mod bart;
mod batch;
mod cache_type;
mod chat_template;
mod chunking;
mod cli;
mod config;
mod detection;
mod documents;
mod eval;
mod gguf_vocab;
mod hub;
mod hubserver;
mod mt;
mod nllb;
mod page;
mod parallel;
mod parity;
mod real;
mod segmentation;
mod seq2seq;
mod serve;
mod shell;
mod slurm;
mod stream;
mod structure;
mod util;
