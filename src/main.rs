//! The `glot` binary: parse flags, resolve settings, dispatch, report errors.

mod allocator;
mod cli;
mod commands;
mod config;
mod exit;
mod live;
mod model;
mod printer;
mod progress;
mod settings;
mod speed;
mod threads;

use std::process::ExitCode;

use clap::Parser;

use settings::Task;

fn main() -> ExitCode {
    let mut cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit::code(if e.use_stderr() {
                exit::FAILURE
            } else {
                exit::SUCCESS
            });
        }
    };
    let config = match config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("glot: {e:#}");
            return exit::code(exit::FAILURE);
        }
    };
    config.apply(&mut cli);
    // candle's CPU kernels and glot's own size their thread pools from
    // these variables; they must be set before the first tensor operation.
    // Nothing else runs yet.
    match threads::threads(cli.threads.map(|n| n.get())) {
        Ok(Some(n)) => {
            std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
        Ok(None) => {}
        Err(e) => {
            eprintln!("glot: {e}");
            return exit::code(exit::FAILURE);
        }
    }
    allocator::keep_freed_memory();
    match run(cli, &config) {
        Ok(()) => exit::code(exit::SUCCESS),
        Err(err) => {
            let code = exit::for_error(&err);
            if code != exit::SUCCESS {
                eprintln!("glot: {err:#}");
            }
            exit::code(code)
        }
    }
}

fn run(cli: cli::Cli, config: &config::Config) -> anyhow::Result<()> {
    let s = settings::resolve(cli)?;
    match s.task {
        Task::Summarize(t) => commands::summarize::run(t, &s.printer),
        Task::Translate(t) => commands::translate::run(t, &s.printer),
        Task::Batch(t) => commands::batch::run(t, &s.printer),
        Task::BatchStatus { dir, json } => commands::batch::status(&dir, json),
        Task::Generate(t) => commands::generate::run(t, &s.printer),
        Task::Models(t) => commands::models::run(t, &s.printer),
        Task::Languages { json } => commands::languages::run(json, &s.printer),
        Task::EvalTranslate(t) => commands::eval::translate(t, &s.printer),
        Task::EvalSummarize(t) => commands::eval::summarize(t, &s.printer),
        Task::Completions(shell) => commands::shell::completions(shell),
        Task::Serve(t) => commands::serve::run(t, &s.printer),
        Task::Man { dir } => commands::shell::man(dir.as_deref()),
        Task::Config => glot::output::emit(None, &config.describe()),
    }
}
