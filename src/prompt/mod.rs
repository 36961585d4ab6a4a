//! Prompts: the task templates in `prompts/` and the model's chat template.

pub mod chat;
