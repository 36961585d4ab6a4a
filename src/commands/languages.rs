//! `glot languages`: the names and codes `--lang`, `--to` and `--from`
//! accept, with the models whose manifests claim each language.

use anyhow::Result;
use glot::text::lang;
use serde::Serialize;

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    entry: lang::Entry,
    models: Vec<String>,
}

pub fn run(json: bool, printer: &crate::printer::Printer) -> Result<()> {
    let catalog = crate::model::catalog(printer)?;
    let rows: Vec<Row> = lang::all()
        .into_iter()
        .map(|entry| Row {
            models: catalog
                .manifests
                .iter()
                .filter(|m| m.languages.iter().any(|l| l == entry.code))
                .map(|m| m.id.clone())
                .collect(),
            entry,
        })
        .collect();
    let out = if json {
        serde_json::to_string_pretty(&rows)? + "\n"
    } else {
        let mut t = format!(
            "{:<5} {:<5} {:<22} {:<22} {}\n",
            "CODE", "ISO3", "NAME", "NATIVE", "MODELS"
        );
        for r in &rows {
            t.push_str(&format!(
                "{:<5} {:<5} {:<22} {:<22} {}\n",
                r.entry.code,
                r.entry.code3,
                r.entry.name,
                r.entry.native,
                r.models.join(", ")
            ));
        }
        t.push_str("Also accepted: region or script tags such as pt-BR or zh-Hant, a name with one in brackets\n(\"Portuguese (BR)\"), names in any case, and these regional names:\n");
        for (name, tag) in lang::variants() {
            t.push_str(&format!("  {name:<28} {tag}\n"));
        }
        t
    };
    glot::output::emit(None, &out)
}
