//! glot: summarize and translate articles offline with local transformer models.
//!
//! The pipeline runs one way: [`input`] reads and checks a document, [`text`]
//! splits it into token-budgeted chunks, [`task`] turns chunks into prompts
//! built from [`prompt`] templates, and [`engine`] runs the model that
//! [`hub`] located.

pub mod batch;
pub mod engine;
pub mod error;
pub mod eval;
pub mod hub;
pub mod input;
pub mod markup;
pub mod output;
pub mod prompt;
pub mod task;
pub mod text;

pub use error::Error;
