//! Translation models that work sentence by sentence: one model, or two
//! through English, with the token that tells a multilingual model which
//! language to write.

use anyhow::Result;
use glot::engine::seq2seq::{Seq2Seq, Vocab};
use glot::engine::ModelInfo;
use glot::hub::opus_mt::Pair;
use glot::hub::seq2seq_files::{Family, Seq2SeqFiles};
use glot::markup::Markup;
use glot::task::mt::{Mt, Pivot};
use glot::task::translate::Translation;
use glot::text::lang::Language;

use super::Logged;
use crate::printer::Printer;
use crate::settings::ModelSettings;
use crate::speed;

/// One model of a translation, with the target token it is given.
pub struct Leg {
    pub files: Seq2SeqFiles,
    /// `>>deu<<` for multilingual opus-mt models, from the registry.
    pub target_token: Option<String>,
    /// The language it reads, where known (NLLB needs it).
    pub source: Option<Language>,
}

/// The files of one registry pair, fetched if need be.
pub fn fetch_pair(p: &Pair, fetcher: &glot::hub::download::Fetcher) -> Result<Seq2SeqFiles> {
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

/// Loaded translation models, run one after the other.
pub struct Translator {
    models: Vec<(Seq2Seq, Option<String>)>,
    batch_size: usize,
}

impl Translator {
    /// Loads every leg and settles its target token.
    pub fn load(
        legs: Vec<Leg>,
        target: &Language,
        m: &ModelSettings,
        printer: &Printer,
    ) -> Result<Self> {
        Self::load_with(legs, target, m, |files| {
            super::load_seq2seq(files, m, printer)
        })
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
            let mut model = load(&leg.files)?;
            // Only the last leg writes the target language.
            let token = match leg.target_token {
                Some(t) => Some(t),
                None if matches!(model.vocab(), Vocab::Multilingual(_)) => {
                    language_tokens(&mut model, leg.source.as_ref(), target)?
                }
                None if i + 1 == count => target_token(&model, target)?,
                None => None,
            };
            models.push((model, token));
        }
        Ok(Translator {
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
    pub fn estimate(&self, plans: &[&glot::task::Plan]) -> Result<speed::Estimate, String> {
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
        self.translate_live(doc, target, printer, None, None)
    }

    /// [`Translator::translate`], moving `parts` (one part a sentence) and
    /// showing the translation as it goes where `show` is given.
    pub fn translate_live(
        &mut self,
        doc: &Markup,
        target: &Language,
        printer: &Printer,
        parts: Option<std::sync::Arc<crate::progress::Parts>>,
        show: Option<&mut dyn FnMut(&str)>,
    ) -> Result<Translation> {
        let last = self.models.len() - 1;
        let mut legs: Vec<Logged<Mt>> = self
            .models
            .iter()
            .enumerate()
            .map(|(i, (model, token))| {
                let mt = Mt {
                    model,
                    target: token.clone(),
                    batch_size: self.batch_size,
                };
                // The sentences are done when the last model has them.
                Logged::new(mt, printer).with_parts(parts.clone().filter(|_| i == last))
            })
            .collect();
        let code = Some(target.code.as_str());
        let mut pivot;
        let model: &mut dyn glot::task::mt::SentenceModel = match legs.as_mut_slice() {
            [one] => one,
            [first, second] => {
                pivot = Pivot { first, second };
                &mut pivot
            }
            _ => unreachable!("one model or two"),
        };
        match show {
            Some(show) => glot::task::mt::translate_live(model, doc, code, show),
            None => glot::task::mt::translate(model, doc, code),
        }
    }
}

/// The language tokens of a many-to-many model (NLLB-200, mBART-50) for
/// a translation from `source` into `target`:
/// the target's is forced first in every output, the source's returned to
/// lead every input.
fn language_tokens(
    model: &mut Seq2Seq,
    source: Option<&Language>,
    target: &Language,
) -> Result<Option<String>> {
    let Vocab::Multilingual(v) = model.vocab() else {
        unreachable!("called for many-to-many models")
    };
    let token = |l: &Language| -> Result<String> {
        let base = l.code.split('-').next().unwrap_or(&l.code);
        let code3 = iso639_3(&l.code).unwrap_or(base);
        v.language_token(&l.code, code3).ok_or_else(|| {
            glot::Error::Language(format!(
                "{} has no language token for {} ({})",
                model.info().id,
                l.name,
                l.code
            ))
            .into()
        })
    };
    let source = source.ok_or_else(|| {
        glot::Error::Language(format!(
            "{} must be told the language it reads, and the article's language is unknown: pass --from",
            model.info().id
        ))
    })?;
    let (lead, first) = (token(source)?, token(target)?);
    model.force_first(&first)?;
    Ok(Some(lead))
}

/// The token that makes a multilingual model write `target`: `<2de>` for
/// MADLAD, `>>de<<` or similar for opus-mt models with several targets.
fn target_token(model: &Seq2Seq, target: &Language) -> Result<Option<String>> {
    let base = target.code.split('-').next().unwrap_or(&target.code);
    match model.vocab() {
        Vocab::Bart(_) => Err(summarizes_only(model.info().id.as_str())),
        Vocab::Multilingual(_) => unreachable!("settled by language_tokens"),
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
            let code3 = iso639_3(&target.code).map(|c| format!(">>{c}<<"));
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

/// The ISO 639-3 code of the language `code` (`de-AT` → `deu`).
fn iso639_3(code: &str) -> Option<&'static str> {
    let base = code.split('-').next().unwrap_or(code);
    glot::text::lang::all()
        .into_iter()
        .find(|e| e.code == base)
        .map(|e| e.code3)
}

/// A BART summarizer asked to translate.
pub fn summarizes_only(id: &str) -> anyhow::Error {
    glot::Error::Usage(format!(
        "{id} is a summarization model (BART): it cannot translate; use a translation model such as opus-mt or a chat model"
    ))
    .into()
}
