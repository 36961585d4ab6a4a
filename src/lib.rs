//! glot: summarize and translate articles offline with local transformer models.
//!
//! The pipeline runs one way: [`input`] reads and checks a document, [`text`]
//! splits it into token-budgeted chunks, [`task`] turns chunks into prompts
//! built from [`prompt`] templates, and [`engine`] runs the model that
//! [`hub`] located.
//!
//! The modules are layers, and each imports only the ones below it (the
//! test at the end of this file holds them to it):
//!
//! ```text
//! folder     a folder's documents as a batch does them: walks, shards,
//!            locks, manifests
//!   task     a summary or translation of one document, call by call
//!     engine   models run: decoders, encoder-decoders, kernels, generation
//!       prompt   task and chat templates
//!       hub      model files found, downloaded and read
//!     markup   a document's structure (Markdown, HTML)
//!     text     sentences, chunks, languages
//! input, output, eval, digest, bounded, error: leaves any layer may use
//! (input and output only from the layers that do I/O)
//! ```
//!
//! `folder` sits above `task` because a manifest records what tasks report
//! (their flags), not the other way round; `engine` sits above `hub`
//! because a model is loaded from files that `hub` found, and `hub` never
//! needs to know what runs them.
//!
//! The binary (`src/main.rs`) stands on the whole library with layers of its
//! own, held by the same test:
//!
//! ```text
//! commands   one file per subcommand
//!   model      `--model` resolved once and loaded as each command needs
//!     speed      this machine's measured speeds, for --plan
//!       settings   flags, environment and defaults, resolved
//!         cli        the flags
//! exit, printer, progress, threads, allocator: leaves
//! ```

pub mod bounded;
pub mod digest;
pub mod engine;
pub mod error;
pub mod eval;
pub mod folder;
pub mod hub;
pub mod input;
pub mod markup;
pub mod output;
pub mod prompt;
pub mod task;
pub mod text;

pub use error::Error;

#[cfg(test)]
mod layers {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The binary's modules, which may all use the library (`glot::`),
    /// and which of each other they may import through `crate::`.
    const BINARY: &[(&str, &[&str])] = &[
        (
            "commands",
            &[
                "model", "speed", "settings", "cli", "exit", "printer", "progress", "live",
            ],
        ),
        ("model", &["speed", "settings", "printer", "progress"]),
        ("speed", &["settings", "printer"]),
        ("settings", &["cli", "printer"]),
        // The config file fills the parsed flags before settings read them.
        ("config", &["cli"]),
        ("progress", &["printer"]),
        // A streamed result keeps the progress line out of its way.
        ("live", &["printer", "progress"]),
        ("cli", &[]),
        ("exit", &[]),
        ("printer", &[]),
        ("threads", &[]),
        ("allocator", &[]),
    ];

    /// Which top-level modules each may import. An edge not listed here
    /// is a layering error: add it only with a reason in the comment above.
    const ALLOWED: &[(&str, &[&str])] = &[
        (
            "folder",
            &["task", "hub", "text", "output", "digest", "error"],
        ),
        ("task", &["engine", "markup", "prompt", "text", "error"]),
        ("engine", &["prompt", "hub", "bounded", "error"]),
        ("prompt", &["digest", "bounded", "error"]),
        ("hub", &["digest", "bounded", "error"]),
        ("markup", &["text"]),
        ("text", &["error"]),
        ("input", &["bounded", "error"]),
        ("bounded", &["error"]),
        ("output", &[]),
        ("eval", &[]),
        ("digest", &[]),
        ("error", &[]),
    ];

    /// The top-level modules of `table` that `source` (a file of module
    /// `own`, at `depth` folders below `src/`) names through `crate::` or
    /// `super::`.
    fn imports(
        source: &str,
        own: &str,
        depth: usize,
        table: &[(&str, &[&str])],
    ) -> BTreeSet<String> {
        let modules: Vec<&str> = table.iter().map(|(m, _)| *m).collect();
        let mut found = BTreeSet::new();
        let root = format!("{}::", vec!["super"; depth].join("::"));
        for line in source.lines().map(str::trim) {
            if line.starts_with("//") {
                continue;
            }
            for prefix in ["crate::", root.as_str()] {
                for (at, _) in line.match_indices(prefix) {
                    let rest = &line[at + prefix.len()..];
                    let names: Vec<&str> = match rest.strip_prefix('{') {
                        Some(group) => group.split('}').next().unwrap_or("").split(',').collect(),
                        None => vec![rest],
                    };
                    for name in names {
                        let name: String = name
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if name != own && modules.contains(&name.as_str()) {
                            found.insert(name);
                        }
                    }
                }
            }
        }
        found
    }

    fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                visit(&p, files);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }

    #[test]
    fn modules_import_only_the_layers_below_them() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        visit(&src, &mut files);
        let mut wrong = Vec::new();
        for file in &files {
            let rel = file.strip_prefix(&src).unwrap();
            let parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            let own = parts[0].as_str();
            let table = match ALLOWED.iter().any(|(m, _)| *m == own) {
                true => ALLOWED,
                false => BINARY,
            };
            let Some((_, allowed)) = table.iter().find(|(m, _)| *m == own) else {
                // lib.rs and main.rs; a module in neither table is an error.
                assert!(["lib", "main"].contains(&own), "{own} is in no layer table");
                continue;
            };
            // `super::` reaches the crate root from a module's own file
            // (`src/hub.rs`, `src/hub/mod.rs`) once, from `src/hub/x.rs` twice.
            let depth = match parts.last().map(String::as_str) {
                Some("mod") => parts.len() - 1,
                _ => parts.len(),
            };
            let source = std::fs::read_to_string(file).unwrap();
            for import in imports(&source, own, depth, table) {
                if !allowed.contains(&import.as_str()) {
                    wrong.push(format!("{} imports {import}", rel.display()));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports against the layers:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn imports_are_read_from_use_lines_and_paths() {
        let source = "use crate::{engine::Llm, text};\nlet x = super::super::hub::find();\n// crate::folder in a comment\n";
        let got: Vec<String> = imports(source, "task", 2, ALLOWED).into_iter().collect();
        assert_eq!(got, ["engine", "hub", "text"]);
    }
}
