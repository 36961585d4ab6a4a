//! Translation models for `--model`: which one (or two, through English)
//! translates a document, loading them, and running the sentence task.

use anyhow::Result;
use glot::engine::seq2seq::{Seq2Seq, Vocab};
use glot::engine::ModelInfo;
use glot::hub::manifest::Catalog;
use glot::hub::seq2seq::{Family, Registry, Route, Seq2SeqFiles};
use glot::hub::{model_ref, ModelRef};
use glot::markup::Markup;
use glot::task::mt::{Mt, Pivot};
use glot::task::translate::Translation;
use glot::text::lang::Language;

use super::{fetcher, Logged};
use crate::printer::Printer;
use crate::settings::ModelSettings;

/// One model of a translation, with the target token it is given.
pub struct Leg {
    pub files: Seq2SeqFiles,
    /// `>>deu<<` for multilingual opus-mt models, from the registry.
    pub target_token: Option<String>,
}

/// A translation model named by `--model`: the opus-mt registry, which
/// picks per language pair, or one model.
pub enum Choice {
    Registry(Registry),
    Fixed(Box<Seq2SeqFiles>),
}

impl Choice {
    /// What pins the outputs: the registry's content, or the model's files.
    pub fn fingerprint(&self, m: &ModelSettings) -> serde_json::Value {
        let quantize = m.load.quantize.map(|q| format!("{q:?}"));
        match self {
            Choice::Registry(r) => serde_json::json!({
                "id": "opus-mt",
                "pairs": r.pairs.iter().map(|p| format!("{}@{}{}", p.repo, p.revision, p.target_token.as_deref().unwrap_or(""))).collect::<Vec<_>>(),
                "quantize": quantize,
            }),
            Choice::Fixed(f) => serde_json::json!({"files": f.fingerprint(), "quantize": quantize}),
        }
    }

    /// The model or models that translate `source` into `target`. Only the
    /// registry needs the source language; it is an error without one.
    pub fn legs(
        &self,
        m: &ModelSettings,
        source: Option<&Language>,
        target: &Language,
        printer: &Printer,
    ) -> Result<Vec<Leg>> {
        let registry = match self {
            Choice::Fixed(files) => {
                return Ok(vec![Leg {
                    files: (**files).clone(),
                    target_token: None,
                }])
            }
            Choice::Registry(r) => r,
        };
        let source = source.ok_or_else(|| {
            glot::Error::Language(
                "--model opus-mt picks a model by language pair, and the article's language is unknown: pass --from"
                    .into(),
            )
        })?;
        let pairs = match registry.route(&source.code, &target.code)? {
            Route::Direct(p) => vec![p],
            Route::Pivot(a, b) => {
                printer.info(format!(
                    "no opus-mt model translates {} into {}: going through English with {} and {}",
                    source.name, target.name, a.repo, b.repo
                ));
                vec![a, b]
            }
        };
        let fetcher = fetcher(m.offline, printer);
        pairs
            .into_iter()
            .map(|p| {
                Ok(Leg {
                    files: fetch_pair(p, &fetcher)?,
                    target_token: p.target_token.clone(),
                })
            })
            .collect()
    }
}

/// Whether `--model` names a translation model rather than a chat model;
/// the files of a single model are fetched (unless `offline`).
pub fn choose(m: &ModelSettings, offline: bool, printer: &Printer) -> Result<Option<Choice>> {
    let Some(spec) = m.spec.as_deref() else {
        return Ok(None);
    };
    if spec.eq_ignore_ascii_case("opus-mt") {
        return Ok(Some(Choice::Registry(Registry::builtin())));
    }
    let fetcher = fetcher(offline, printer);
    let catalog = super::catalog(printer)?;
    let files = match model_ref(Some(spec), &catalog)? {
        ModelRef::Local(path) => Seq2SeqFiles::in_dir(spec, std::path::Path::new(path))?,
        ModelRef::Manifest(man) => match Family::of_architecture(&man.architecture) {
            Some(family) => Some(Seq2SeqFiles::from_manifest(man, family, &fetcher)?),
            None => None,
        },
        ModelRef::Hub(h) if h.file.as_deref().is_none_or(|f| f.ends_with(".gguf")) => {
            let origin = format!("--model {spec}");
            let family = Family::of_repo(&h.repo, &h.revision, &fetcher, &origin, spec)?;
            match family {
                Some(f) => Some(Seq2SeqFiles::fetch(
                    spec,
                    f,
                    &h.repo,
                    &h.revision,
                    h.file.as_deref(),
                    &fetcher,
                    &origin,
                    spec,
                )?),
                None => None,
            }
        }
        ModelRef::Hub(_) => None,
    };
    Ok(files.map(|f| Choice::Fixed(Box::new(f))))
}

/// The translation model(s) for `--model`, if it names one.
pub fn legs(
    m: &ModelSettings,
    source: Option<&Language>,
    target: &Language,
    printer: &Printer,
) -> Result<Option<Vec<Leg>>> {
    match choose(m, m.offline, printer)? {
        Some(c) => c.legs(m, source, target, printer).map(Some),
        None => Ok(None),
    }
}

/// The files of one registry pair, fetched if need be.
pub fn fetch_pair(
    p: &glot::hub::seq2seq::Pair,
    fetcher: &glot::hub::download::Fetcher,
) -> Result<Seq2SeqFiles> {
    let origin = format!("--model opus-mt ({}→{})", p.from, p.to);
    Seq2SeqFiles::fetch(
        &p.repo,
        Family::Marian,
        &p.repo,
        &p.revision,
        None,
        fetcher,
        &origin,
        &p.download_name(),
    )
}

/// A clear error when a model that writes answers is needed and `spec`
/// names a model that only translates: Marian models, and models whose
/// manifest lists translation alone (MADLAD-400). Other T5 models (flan-t5)
/// pass: they follow instructions.
pub fn refuse_translation_model(spec: Option<&str>, catalog: &Catalog) -> Result<()> {
    let Some(spec) = spec else {
        return Ok(());
    };
    let family = if spec.eq_ignore_ascii_case("opus-mt") {
        Some(Family::Marian)
    } else {
        match model_ref(Some(spec), catalog) {
            Ok(ModelRef::Local(path)) => {
                let path = std::path::Path::new(path);
                let dir = if path.is_file() {
                    path.parent().unwrap_or(std::path::Path::new("."))
                } else {
                    path
                };
                let config = dir.join("config.json");
                match config.is_file() {
                    true => Family::of_config(&glot::hub::read_json(&config)?)
                        .filter(|f| *f == Family::Marian),
                    false => None,
                }
            }
            Ok(ModelRef::Manifest(man)) if !man.tasks.iter().any(|t| t == "summarize") => {
                Family::of_architecture(&man.architecture)
            }
            _ => None,
        }
    };
    match family {
        Some(f) => Err(glot::Error::Usage(format!(
            "{spec} is a translation model ({}): it can only translate; summaries need a chat model such as qwen3-4b, or an instruction-following T5 model such as hf:google/flan-t5-large",
            match f {
                Family::Marian => "Marian",
                Family::T5 => "T5",
            }
        ))
        .into()),
        None => Ok(()),
    }
}

/// Loads a translation model (or a T5 model that summarizes) and applies
/// the run's decoding choices.
pub fn load_seq2seq(files: &Seq2SeqFiles, m: &ModelSettings, printer: &Printer) -> Result<Seq2Seq> {
    printer.info(format!("loading model {}", files.id));
    let mut model = Seq2Seq::load(files, m.load.quantize, m.load.device)?;
    if let Some(b) = m.beam {
        model.use_beams(b.beams, b.length_penalty);
    }
    let info = model.info();
    printer.info(format!(
        "loaded {} ({}, {}) in {:.2}s",
        info.id, info.architecture, info.format, info.load_secs
    ));
    Ok(model)
}

/// Loaded translation models, run one after the other.
pub struct Engine {
    models: Vec<(Seq2Seq, Option<String>)>,
    batch_size: usize,
}

impl Engine {
    /// Loads every leg and settles its target token.
    pub fn load(
        legs: Vec<Leg>,
        target: &Language,
        m: &ModelSettings,
        printer: &Printer,
    ) -> Result<Self> {
        Self::load_with(legs, target, m, |files| load_seq2seq(files, m, printer))
    }

    /// Loads every leg's vocabulary and limits, and settles its target
    /// token, for `--plan`: no weights are read.
    pub fn load_for_planning(legs: Vec<Leg>, target: &Language, m: &ModelSettings) -> Result<Self> {
        Self::load_with(legs, target, m, Seq2Seq::load_for_planning)
    }

    fn load_with(
        legs: Vec<Leg>,
        target: &Language,
        m: &ModelSettings,
        load: impl Fn(&Seq2SeqFiles) -> Result<Seq2Seq>,
    ) -> Result<Self> {
        let count = legs.len();
        let mut models = Vec::new();
        for (i, leg) in legs.into_iter().enumerate() {
            let model = load(&leg.files)?;
            // Only the last leg writes the target language.
            let token = match leg.target_token {
                Some(t) => Some(t),
                None if i + 1 == count => target_token(&model, target)?,
                None => None,
            };
            models.push((model, token));
        }
        Ok(Engine {
            models,
            batch_size: m.batch_size,
        })
    }

    /// The model, or the chain of models, as outputs describe it.
    pub fn info(&self) -> ModelInfo {
        let mut info = self.models[0].0.info().clone();
        if self.models.len() > 1 {
            info.id = self
                .models
                .iter()
                .map(|(m, _)| m.info().id.as_str())
                .collect::<Vec<_>>()
                .join(" → ");
            info.revision = None;
            info.load_secs = self.models.iter().map(|(m, _)| m.info().load_secs).sum();
            info.files = self
                .models
                .iter()
                .flat_map(|(m, _)| m.info().files.clone())
                .collect();
        }
        info
    }

    /// Every sentence the first model is sent for `doc` (a second model
    /// gets the first one's answers), and the batches they go in.
    pub fn plan(&self, doc: &Markup) -> Result<(glot::task::Plan, usize)> {
        let (model, token) = &self.models[0];
        let first = Mt {
            model,
            target: token.clone(),
            batch_size: self.batch_size,
        };
        let plan = glot::task::mt::plan(&first, doc)?;
        let batches = plan.calls.len().div_ceil(self.batch_size.max(1));
        Ok((plan, batches))
    }

    /// How long translating the sentences `plans` list would take at this
    /// machine's last measured speed with these models, or why that is not
    /// known. Each model of a chain translates about as many tokens.
    pub fn estimate(&self, plans: &[&glot::task::Plan]) -> Result<super::speed::Estimate, String> {
        use super::speed;
        let info = self.info();
        let per_leg: Vec<(&glot::task::Plan, speed::Answer)> = self
            .models
            .iter()
            .flat_map(|_| {
                plans
                    .iter()
                    .map(|&p| (p, speed::translation_answer as speed::Answer))
            })
            .collect();
        speed::recall(&info)
            .map(|v| speed::Estimate::of(&per_leg, v))
            .ok_or_else(|| speed::unknown(&info))
    }

    /// The models, first to last.
    pub fn models(&self) -> impl Iterator<Item = &ModelInfo> {
        self.models.iter().map(|(m, _)| m.info())
    }

    /// Translates `doc`'s units into `target`, logging batches with `-v`.
    pub fn translate(
        &mut self,
        doc: &Markup,
        target: &Language,
        printer: &Printer,
    ) -> Result<Translation> {
        let mut legs: Vec<Logged<Mt>> = self
            .models
            .iter()
            .map(|(model, token)| {
                let mt = Mt {
                    model,
                    target: token.clone(),
                    batch_size: self.batch_size,
                };
                Logged::new(mt, printer)
            })
            .collect();
        let code = Some(target.code.as_str());
        match legs.as_mut_slice() {
            [one] => glot::task::mt::translate(one, doc, code),
            [first, second] => glot::task::mt::translate(&mut Pivot { first, second }, doc, code),
            _ => unreachable!("one model or two"),
        }
    }
}

/// The token that makes a multilingual model write `target`: `<2de>` for
/// MADLAD, `>>de<<` or similar for opus-mt models with several targets.
fn target_token(model: &Seq2Seq, target: &Language) -> Result<Option<String>> {
    let base = target.code.split('-').next().unwrap_or(&target.code);
    match model.vocab() {
        Vocab::T5(_) => {
            let candidates = [format!("<2{}>", target.code), format!("<2{base}>")];
            match candidates.iter().find(|c| model.vocab().has(c)) {
                Some(c) => Ok(Some(c.clone())),
                None => Err(glot::Error::model(format!(
                    "{} has no {} token: it cannot be told to write {}",
                    model.info().id,
                    candidates[1],
                    target.name
                ))
                .into()),
            }
        }
        Vocab::Marian(v) => {
            let tokens = v.target_tokens();
            if tokens.is_empty() {
                return Ok(None);
            }
            // Older models name languages by ISO 639-1 codes, newer ones by
            // ISO 639-3 (`>>deu<<`).
            let code3 = glot::text::lang::all()
                .into_iter()
                .find(|e| e.code == base)
                .map(|e| format!(">>{}<<", e.code3));
            let candidates: Vec<String> = [format!(">>{}<<", target.code), format!(">>{base}<<")]
                .into_iter()
                .chain(code3)
                .collect();
            match candidates.iter().find(|c| tokens.contains(&c.as_str())) {
                Some(c) => Ok(Some(c.clone())),
                None => Err(glot::Error::model(format!(
                    "{} writes several languages and has no {} token; it has: {}",
                    model.info().id,
                    candidates[1],
                    tokens
                        .iter()
                        .take(12)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" ")
                ))
                .into()),
            }
        }
    }
}
