//! `glot completions` and `glot man`: the shell completion scripts and the
//! manual pages, both made from the same command definitions as the
//! parser, so they never fall behind a flag.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// Writes the completion script for `shell` to stdout.
pub fn completions(shell: Shell) -> Result<()> {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "glot", &mut script);
    let script = String::from_utf8(script).context("a completion script that is not UTF-8")?;
    glot::output::emit(None, &script)
}

/// Writes glot(1) to stdout, or, with `dir`, one page per command into
/// `dir`: glot.1, glot-summarize.1, glot-models-download.1 and so on, each
/// replaced whole.
pub fn man(dir: Option<&Path>) -> Result<()> {
    let mut cmd = Cli::command();
    cmd.build();
    let Some(dir) = dir else {
        let page = String::from_utf8(render(&cmd)?).context("a manual page that is not UTF-8")?;
        return glot::output::emit(None, &page);
    };
    if !dir.is_dir() {
        let reason = format!("{} is not a folder", dir.display());
        return Err(glot::error::Error::Usage(reason).into());
    }
    write_pages(&cmd, dir)
}

/// The page of `cmd` and those of its subcommands, each named after its
/// path (`build` gave each subcommand that display name: glot-models-list).
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    glot::output::write_atomic(&dir.join(format!("{name}.1")), &render(cmd)?)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, dir)?;
    }
    Ok(())
}

fn render(cmd: &clap::Command) -> Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut page)
        .context("cannot render the manual page")?;
    Ok(page)
}
