//! Download progress on stderr: bars on a terminal, plain lines otherwise
//! (logs stay readable), nothing with `-q`.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use glot::hub::download::DownloadProgress;
use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressStyle};

use crate::printer::Printer;

/// The progress display this run should use.
pub fn for_downloads(printer: &Printer) -> Option<Arc<dyn DownloadProgress>> {
    if printer.quiet() {
        None
    } else if std::io::stderr().is_terminal() {
        Some(Arc::new(Bars::default()))
    } else {
        Some(Arc::new(Lines::default()))
    }
}

#[derive(Default)]
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl DownloadProgress for Bars {
    fn start(&self, repo: &str, file: &str, total: u64) {
        let bar = self.multi.add(ProgressBar::new(total));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{repo}/{file}"));
        self.bars
            .lock()
            .expect("bars")
            .insert(file.to_string(), bar);
    }

    fn advance(&self, file: &str, done: u64) {
        if let Some(bar) = self.bars.lock().expect("bars").get(file) {
            bar.set_position(done);
        }
    }

    fn finish(&self, file: &str) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(file) {
            bar.finish();
        }
    }
}

#[derive(Default)]
struct Lines {
    files: Mutex<HashMap<String, (u64, u64, Instant)>>,
}

impl DownloadProgress for Lines {
    fn start(&self, repo: &str, file: &str, total: u64) {
        eprintln!(
            "glot: downloading {file} from {repo} ({})",
            HumanBytes(total)
        );
        self.files
            .lock()
            .expect("files")
            .insert(file.to_string(), (0, total, Instant::now()));
    }

    fn advance(&self, file: &str, done: u64) {
        if let Some(entry) = self.files.lock().expect("files").get_mut(file) {
            entry.0 = done;
        }
    }

    fn finish(&self, file: &str) {
        if let Some((done, total, start)) = self.files.lock().expect("files").remove(file) {
            let secs = start.elapsed().as_secs_f64();
            if done >= total {
                eprintln!(
                    "glot: downloaded {file} ({} in {secs:.1}s)",
                    HumanBytes(total)
                );
            } else {
                eprintln!(
                    "glot: download of {file} stopped at {} of {}",
                    HumanBytes(done),
                    HumanBytes(total)
                );
            }
        }
    }
}

/// Progress through a batch: a bar with the current item, tokens/s and ETA
/// on a terminal, one line per item otherwise, nothing with `-q`.
pub struct Items {
    bar: Option<ProgressBar>,
    lines: bool,
    total: usize,
    done: std::cell::Cell<usize>,
    /// Tokens generated, and when the first item that generated any began:
    /// the rate is over the wall time, since with `--parallel` items overlap.
    tokens: std::cell::Cell<(usize, Option<std::time::Instant>)>,
}

impl Items {
    pub fn new(printer: &Printer, total: usize) -> Items {
        let terminal = !printer.quiet() && std::io::stderr().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("[{bar:30}] {pos}/{len} ETA {eta} {msg}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        Items {
            bar,
            lines: !printer.quiet() && !terminal,
            total,
            done: std::cell::Cell::new(0),
            tokens: std::cell::Cell::new((0, None)),
        }
    }

    /// An item begins.
    pub fn start(&self, name: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{name}{}", self.rate()));
        }
    }

    /// An item ended as `how`; `work` is (generated tokens, seconds).
    pub fn finish(&self, name: &str, how: &str, work: Option<(usize, f64)>) {
        self.done.set(self.done.get() + 1);
        if let Some((tokens, secs)) = work {
            let (t, since) = self.tokens.get();
            let began = std::time::Instant::now()
                .checked_sub(std::time::Duration::from_secs_f64(secs.max(0.0)))
                .unwrap_or_else(std::time::Instant::now);
            self.tokens.set((t + tokens, Some(since.unwrap_or(began))));
        }
        if let Some(bar) = &self.bar {
            if how.starts_with("failed") {
                bar.println(format!("glot: {name}: {how}"));
            }
            bar.inc(1);
        } else if self.lines {
            let took = work.map_or(String::new(), |(_, secs)| format!(", {secs:.1}s"));
            eprintln!(
                "glot: [{}/{}] {name}: {how}{took}",
                self.done.get(),
                self.total
            );
        }
    }

    fn rate(&self) -> String {
        match self.tokens.get() {
            (t, Some(since)) if since.elapsed().as_secs_f64() > 0.0 => {
                format!(" ({:.1} tok/s)", t as f64 / since.elapsed().as_secs_f64())
            }
            _ => String::new(),
        }
    }

    /// The batch is over.
    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A one-line progress indicator on stderr for the model calls of one
/// document: parts done of all, tokens/s and the time left, redrawn as
/// tokens come and cleared at the end. Only on a terminal, and not with
/// `-q`, `-v` or `--stats`, whose lines tell the calls themselves.
pub struct Parts {
    bar: ProgressBar,
    state: Mutex<PartsState>,
}

struct PartsState {
    /// What a part is: "part", "sentence".
    unit: &'static str,
    total: usize,
    done: usize,
    /// Tokens of the parts done.
    done_tokens: usize,
    /// Tokens so far of each part being decoded, by (batch, index).
    running: HashMap<(u64, usize), usize>,
    /// Tokens the whole run is expected to take, where known ahead.
    expected: Option<usize>,
    started: Option<Instant>,
    batches: u64,
    drawn: Option<Instant>,
}

impl Parts {
    /// A progress line for parts of `unit`, how many told by
    /// [`Parts::expect`]; `None` where it is not shown (the caller then
    /// need not plan the run to tell it).
    pub fn new(printer: &Printer, unit: &'static str) -> Option<Arc<Parts>> {
        if printer.quiet() || printer.tells_calls() || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        let parts = Parts {
            bar,
            state: Mutex::new(PartsState {
                unit,
                total: 0,
                done: 0,
                done_tokens: 0,
                running: HashMap::new(),
                expected: None,
                started: None,
                batches: 0,
                drawn: None,
            }),
        };
        Some(Arc::new(parts))
    }

    /// The run takes `total` parts, about `expected` tokens in all.
    pub fn expect(&self, total: usize, expected: Option<usize>) {
        let mut s = self.state.lock().expect("parts");
        s.total = total.max(s.done);
        s.expected = expected;
        self.draw(&mut s, true);
    }

    /// A number for the next batch of calls.
    pub fn batch(&self) -> u64 {
        let mut s = self.state.lock().expect("parts");
        s.batches += 1;
        s.batches
    }

    /// Call `index` of `batch` has decoded `tokens` tokens so far.
    pub fn tokens(&self, batch: u64, index: usize, tokens: usize) {
        let mut s = self.state.lock().expect("parts");
        s.started.get_or_insert_with(Instant::now);
        s.running.insert((batch, index), tokens);
        self.draw(&mut s, false);
    }

    /// Call `index` of `batch` ended with `tokens` tokens, finishing
    /// `parts` parts.
    pub fn finished(&self, batch: u64, index: usize, tokens: usize, parts: usize) {
        let mut s = self.state.lock().expect("parts");
        s.started.get_or_insert_with(Instant::now);
        s.running.remove(&(batch, index));
        s.done += parts;
        s.done_tokens += tokens;
        self.draw(&mut s, true);
    }

    /// The bar, to write around it.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }

    /// The work is over: the line goes.
    pub fn clear(&self) {
        self.bar.finish_and_clear();
    }

    fn draw(&self, s: &mut PartsState, now: bool) {
        if !now && s.drawn.is_some_and(|d| d.elapsed().as_millis() < 150) {
            return;
        }
        s.drawn = Some(Instant::now());
        let tokens = s.done_tokens + s.running.values().sum::<usize>();
        let secs = s.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        // Calls beyond the plan are parts asked again: they have no end
        // known ahead.
        let beyond = s.done + s.running.len() > s.total;
        let mut msg = match beyond {
            false => format!("{} of {} {}s done", s.done, s.total, s.unit),
            true => format!(
                "{} of {} {}s done, {} asked again",
                s.done.min(s.total),
                s.total,
                s.unit,
                (s.done + s.running.len()).saturating_sub(s.total)
            ),
        };
        if secs > 0.5 && tokens > 0 {
            let rate = tokens as f64 / secs;
            msg.push_str(&format!(", {rate:.1} tok/s"));
            // Tokens still to come: as expected, or as many a part as the
            // parts done took.
            let left = match (s.expected, s.done) {
                (Some(e), _) => Some(e.saturating_sub(tokens)),
                (None, 0) => None,
                (None, done) => {
                    let each = s.done_tokens as f64 / done as f64;
                    let running: f64 = s
                        .running
                        .values()
                        .map(|&t| (each - t as f64).max(0.0))
                        .sum();
                    let waiting = s.total.saturating_sub(s.done + s.running.len());
                    Some((running + waiting as f64 * each) as usize)
                }
            };
            if let Some(left) = left.filter(|&l| l > 0 && !beyond) {
                let eta = std::time::Duration::from_secs_f64(left as f64 / rate);
                msg.push_str(&format!(", about {} left", indicatif::HumanDuration(eta)));
            }
        }
        self.bar.set_message(msg);
    }
}
