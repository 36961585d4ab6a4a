//! `--model`, from what the user typed to loaded engines, for every command
//! and for batch alike.
//!
//! A spec (a catalog id or alias, `opus-mt`, `hf:OWNER/NAME[:FILE]`, a
//! folder, a file) is resolved once, into a [`Resolved`]: the files of a
//! chat model, the files of an encoder-decoder model, or the opus-mt
//! registry that picks a model per language pair. Commands then ask it for
//! what their task needs (a model that writes answers, the translation
//! models of a language pair, a planner that reads no weights), and each
//! request either loads the model or says in one line why this model
//! cannot do that.

mod logged;
pub mod translator;

use anyhow::Result;
use glot::engine::seq2seq::Seq2Seq;
use glot::engine::{ChatModel, DecodeOptions, Llm, ModelInfo};
use glot::hub::manifest::Catalog;
use glot::hub::opus_mt::{Registry, Route};
use glot::hub::seq2seq_files::{Family, Seq2SeqFiles};
use glot::hub::{model_ref, ModelFiles, ModelRef};
use glot::prompt::Prompts;
use glot::text::lang::Language;

use crate::printer::Printer;
use crate::settings::ModelSettings;
pub use logged::Logged;
pub use translator::{Leg, Translator};

/// What a command will ask of the model, so that a model that cannot do
/// it is refused before any download.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Answers to prompts: summaries.
    Answers,
    /// Translations.
    Translations,
    /// Anything the model does (`generate`).
    Any,
}

/// What `--model` names, its files found (and fetched unless offline).
pub enum Resolved {
    /// A decoder-only chat model.
    Chat(Box<ModelFiles>),
    /// An encoder-decoder model: a translation model (Marian, MADLAD-400)
    /// or an instruction-following T5 model (flan-t5).
    Seq2Seq {
        files: Box<Seq2SeqFiles>,
        /// Whether it follows instructions, and so can write summaries.
        answers: bool,
    },
    /// The opus-mt registry: one Marian model per language pair, fetched
    /// (unless `offline`) when a document needs it.
    Registry { registry: Registry, offline: bool },
}

impl Resolved {
    /// Resolves `--model` (the catalog's default without one) for what a
    /// command `need`s. `offline` forbids downloads even where the
    /// settings allow them (a dry run).
    pub fn new(m: &ModelSettings, need: Need, offline: bool, printer: &Printer) -> Result<Self> {
        let spec = m.spec.as_deref();
        let answers = need == Need::Answers;
        if spec.is_some_and(|s| s.eq_ignore_ascii_case("opus-mt")) {
            return match answers {
                true => Err(only_translates("opus-mt", Family::Marian)),
                false => Ok(Resolved::Registry {
                    registry: Registry::builtin(),
                    offline,
                }),
            };
        }
        let catalog = catalog(printer)?;
        let fetcher = fetcher(offline, printer);
        let seq2seq = match model_ref(spec, &catalog)? {
            ModelRef::Local(path) => {
                Seq2SeqFiles::in_dir(path, std::path::Path::new(path))?.map(|f| (f, true))
            }
            ModelRef::Manifest(man) => {
                let summarizes = man.tasks.iter().any(|t| t == "summarize");
                match Family::of_architecture(&man.architecture) {
                    Some(family) if answers && !summarizes => {
                        return Err(only_translates(&man.id, family));
                    }
                    Some(family) if need == Need::Translations && !family.translates() => {
                        return Err(translator::summarizes_only(&man.id));
                    }
                    Some(family) => Some((
                        Seq2SeqFiles::from_manifest(man, family, &fetcher)?,
                        summarizes,
                    )),
                    None if answers && !summarizes => {
                        return Err(glot::Error::Usage(format!(
                            "{} is a translation model: it can only translate; summaries need a chat model such as qwen3-4b",
                            man.id
                        ))
                        .into());
                    }
                    None => None,
                }
            }
            ModelRef::Hub(h) if h.file.as_deref().is_none_or(|f| f.ends_with(".gguf")) => {
                let spec = spec.unwrap_or_default();
                let origin = format!("--model {spec}");
                match Family::of_repo(&h.repo, &h.revision, &fetcher, &origin, spec)? {
                    Some(family) if answers && !family.can_summarize() => {
                        return Err(only_translates(spec, family))
                    }
                    Some(family) if need == Need::Translations && !family.translates() => {
                        return Err(translator::summarizes_only(spec))
                    }
                    Some(family) => Some((
                        Seq2SeqFiles::from_hub(spec, family, &h, &fetcher, &origin)?,
                        true,
                    )),
                    None => None,
                }
            }
            ModelRef::Hub(_) => None,
        };
        Ok(match seq2seq {
            Some((files, answers)) => Resolved::Seq2Seq {
                answers: answers && files.family.can_summarize(),
                files: Box::new(files),
            },
            None => Resolved::Chat(Box::new(glot::hub::resolve(
                spec,
                m.tokenizer.as_deref(),
                &catalog,
                &fetcher,
            )?)),
        })
    }

    /// glot's prompts with the model's own templates, from its manifest, in
    /// place of those the user's `--prompts` folder leaves built in.
    pub fn prompts(&self, mut prompts: Prompts) -> Result<Prompts> {
        match self {
            Resolved::Chat(files) => prompts.use_model_templates(&files.prompts)?,
            Resolved::Seq2Seq { files, .. } if files.family == Family::Bart => {
                return Ok(prompts.text_only())
            }
            _ => {}
        }
        Ok(prompts)
    }

    /// Refuses a summarizer (BART) for translations.
    pub fn check_translates(&self) -> Result<()> {
        match self {
            Resolved::Seq2Seq { files, .. } if !files.family.translates() => {
                Err(translator::summarizes_only(&files.id))
            }
            _ => Ok(()),
        }
    }

    /// Refuses what a summarizer trained on text alone (BART) cannot be
    /// told: a summary language (`--lang`) or citations (`--cite`).
    pub fn check_summary_options(&self, language: Option<&Language>, cite: bool) -> Result<()> {
        let Resolved::Seq2Seq { files, .. } = self else {
            return Ok(());
        };
        if files.family != Family::Bart {
            return Ok(());
        }
        let refuse = |what: &str| -> Result<()> {
            Err(glot::Error::Usage(format!(
                "{} is a BART summarizer, which takes no instructions: it cannot {what}",
                files.id
            ))
            .into())
        };
        if let Some(l) = language {
            return refuse(&format!("be asked for a summary in {} (--lang)", l.name));
        }
        if cite {
            return refuse("cite the parts of the article (--cite)");
        }
        Ok(())
    }

    /// The model's name in messages.
    pub fn id(&self) -> &str {
        match self {
            Resolved::Chat(files) => &files.id,
            Resolved::Seq2Seq { files, .. } => &files.id,
            Resolved::Registry { .. } => "opus-mt",
        }
    }

    /// Whether the model translates sentence by sentence (Marian, T5, the
    /// registry) rather than by prompts to a chat model.
    pub fn translates_sentences(&self) -> bool {
        !matches!(self, Resolved::Chat(_))
    }

    /// What pins the outputs: the model's files (or the registry's
    /// content) and the in-memory quantization.
    pub fn fingerprint(&self, m: &ModelSettings) -> serde_json::Value {
        let quantize = m.load.quantize.map(|q| format!("{q:?}"));
        match self {
            // The chat model's key predates the others: kept as it was, so
            // manifests written before still match.
            Resolved::Chat(files) => files.fingerprint(),
            Resolved::Seq2Seq { files, .. } => {
                serde_json::json!({"files": files.fingerprint(), "quantize": quantize})
            }
            Resolved::Registry { registry: r, .. } => serde_json::json!({
                "id": "opus-mt",
                "pairs": r.pairs.iter().map(|p| format!("{}@{}{}", p.repo, p.revision, p.target_token.as_deref().unwrap_or(""))).collect::<Vec<_>>(),
                "quantize": quantize,
            }),
        }
    }

    /// The model that writes answers to prompts: a chat model, or a T5
    /// model that follows instructions.
    pub fn chat(&self, m: &ModelSettings, printer: &Printer, repeat_guard: bool) -> Result<Chat> {
        match self {
            Resolved::Seq2Seq {
                files,
                answers: true,
            } => Ok(Chat::T5(Box::new(load_seq2seq(files, m, printer)?))),
            _ => Ok(Chat::Llm(Box::new(self.llm(m, printer, repeat_guard)?))),
        }
    }

    /// The chat model, loaded, with the run's decoding choices.
    pub fn llm(&self, m: &ModelSettings, printer: &Printer, repeat_guard: bool) -> Result<Llm> {
        let files = self.chat_files()?;
        printer.info(format!("loading model {}", files.id));
        let mut llm = Llm::load(files, &m.load)?;
        llm.set_decode(DecodeOptions {
            sampling: m.sampling,
            repeat_guard: repeat_guard || m.sampling.is_some(),
            beam: m.beam.map(|b| b.for_chat_model()),
            parallel: m.parallel,
        });
        let info = llm.info();
        printer.info(format!(
            "loaded {} ({}, {}) in {:.2}s; context {} tokens",
            info.id, info.architecture, info.format, info.load_secs, info.context_length
        ));
        Ok(llm)
    }

    /// The model that writes answers as far as `--plan` needs it: its
    /// tokenizer, chat template and context. No weights are read.
    pub fn planner(&self, m: &ModelSettings) -> Result<Chat> {
        match self {
            Resolved::Seq2Seq {
                files,
                answers: true,
            } => Ok(Chat::T5(Box::new(Seq2Seq::load_for_planning(files)?))),
            _ => Ok(Chat::Llm(Box::new(Llm::load_for_planning(
                self.chat_files()?,
                &m.load,
            )?))),
        }
    }

    /// The one encoder-decoder model, loaded (`glot generate`).
    pub fn seq2seq(&self, m: &ModelSettings, printer: &Printer) -> Result<Seq2Seq> {
        match self {
            Resolved::Seq2Seq { files, .. } => load_seq2seq(files, m, printer),
            Resolved::Registry { .. } => Err(glot::Error::Usage(
                "opus-mt stands for one model per language pair: name one model's folder, id or hf: repository".into(),
            )
            .into()),
            Resolved::Chat(files) => Err(glot::Error::Usage(format!(
                "{} is a chat model, not an encoder-decoder model",
                files.id
            ))
            .into()),
        }
    }

    /// The model or models (through English) that translate `source` into
    /// `target` sentence by sentence; `None` for a chat model, which
    /// translates by prompts. Only the registry needs the source language;
    /// it is an error without one.
    pub fn legs(
        &self,
        source: Option<&Language>,
        target: &Language,
        printer: &Printer,
    ) -> Result<Option<Vec<Leg>>> {
        self.check_translates()?;
        let (registry, offline) = match self {
            Resolved::Chat(_) => return Ok(None),
            Resolved::Seq2Seq { files, .. } => {
                return Ok(Some(vec![Leg {
                    files: (**files).clone(),
                    target_token: None,
                    source: source.cloned(),
                }]))
            }
            Resolved::Registry { registry, offline } => (registry, *offline),
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
        let fetcher = fetcher(offline, printer);
        pairs
            .into_iter()
            .map(|p| {
                Ok(Leg {
                    files: translator::fetch_pair(p, &fetcher)?,
                    target_token: p.target_token.clone(),
                    source: None,
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Which loaded translation models a document needs: one set per
    /// language pair with the registry, per target language otherwise.
    pub fn translator_key(&self, source: Option<&Language>, target: &Language) -> String {
        match self {
            Resolved::Registry { .. } => format!(
                "{}>{}",
                source.map_or("?", |l| l.code.as_str()),
                target.code
            ),
            _ => target.code.clone(),
        }
    }

    /// The chat model's files, or why this model is not one.
    fn chat_files(&self) -> Result<&ModelFiles> {
        match self {
            Resolved::Chat(files) => Ok(files),
            Resolved::Seq2Seq { files, .. } => Err(only_translates(&files.id, files.family)),
            Resolved::Registry { .. } => Err(only_translates("opus-mt", Family::Marian)),
        }
    }
}

/// Why the model `name` cannot write answers.
fn only_translates(name: &str, family: Family) -> anyhow::Error {
    glot::Error::Usage(format!(
        "{name} is a translation model ({}): it can only translate; summaries need a chat model such as qwen3-4b, or an instruction-following T5 model such as hf:google/flan-t5-large",
        match family {
            Family::Marian => "Marian",
            Family::T5 => "T5",
            Family::Bart => "BART",
            Family::M2m100 => "M2M100",
            Family::Mbart => "mBART",
        }
    ))
    .into()
}

/// A model that answers prompts: a chat model, or an instruction-following
/// T5 model (flan-t5).
pub enum Chat {
    Llm(Box<Llm>),
    T5(Box<Seq2Seq>),
}

impl Chat {
    /// The model, to plan its calls.
    pub fn get(&self) -> &dyn ChatModel {
        match self {
            Chat::Llm(m) => m.as_ref(),
            Chat::T5(m) => m.as_ref(),
        }
    }

    /// The model, to call it.
    pub fn model(&mut self) -> &mut dyn ChatModel {
        match self {
            Chat::Llm(m) => m.as_mut(),
            Chat::T5(m) => m.as_mut(),
        }
    }

    pub fn info(&self) -> &ModelInfo {
        match self {
            Chat::Llm(m) => m.info(),
            Chat::T5(m) => m.info(),
        }
    }
}

/// The model catalog, with a warning (once a run) for each of the user's
/// manifests that could not be read and was left out.
pub fn catalog(printer: &Printer) -> Result<Catalog> {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let catalog = Catalog::load()?;
    WARNED.call_once(|| {
        for why in &catalog.skipped {
            printer.warn(format!("left out: {why}"));
        }
    });
    Ok(catalog)
}

/// The hub client for this run, reporting downloads the way the terminal allows.
pub fn fetcher(offline: bool, printer: &Printer) -> glot::hub::download::Fetcher {
    glot::hub::download::Fetcher::new(offline, crate::progress::for_downloads(printer))
}

/// Loads an encoder-decoder model and applies the run's decoding choices.
fn load_seq2seq(files: &Seq2SeqFiles, m: &ModelSettings, printer: &Printer) -> Result<Seq2Seq> {
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
