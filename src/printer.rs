//! Messages for the person at the terminal, on stderr only: stdout carries
//! results and nothing else.

/// How chatty glot is on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    level: i8,
    stats: bool,
}

impl Printer {
    /// `-q` gives -1, default 0, each `-v` one more.
    pub fn new(quiet: bool, verbose: u8) -> Self {
        let level = if quiet { -1 } else { verbose.min(3) as i8 };
        Printer {
            level,
            stats: false,
        }
    }

    /// Also report speed (`--stats`).
    pub fn with_stats(mut self, stats: bool) -> Self {
        self.stats = stats;
        self
    }

    /// One model call's tokens and rates: with `-v` or `--stats`.
    pub fn call(&self, msg: impl AsRef<str>) {
        if self.level >= 1 || self.stats {
            eprintln!("glot: {}", msg.as_ref());
        }
    }

    /// A run's totals, with `--stats`.
    pub fn stats(&self, msg: impl AsRef<str>) {
        if self.stats {
            eprintln!("glot: stats: {}", msg.as_ref());
        }
    }

    /// Whether each model call gets a line (`-v`, `--stats`).
    pub fn tells_calls(&self) -> bool {
        self.level >= 1 || self.stats
    }

    /// Whether `-q` silenced everything but results and errors.
    pub fn quiet(&self) -> bool {
        self.level < 0
    }

    /// Progress details, shown with `-v`.
    pub fn info(&self, msg: impl AsRef<str>) {
        if self.level >= 1 {
            eprintln!("glot: {}", msg.as_ref());
        }
    }

    /// Something the user should know even when all went well; hidden by `-q`.
    pub fn warn(&self, msg: impl AsRef<str>) {
        if self.level >= 0 {
            eprintln!("glot: warning: {}", msg.as_ref());
        }
    }
}
