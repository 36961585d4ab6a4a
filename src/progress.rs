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
