//! Messages for the person at the terminal, on stderr only: stdout carries
//! results and nothing else.

/// How chatty glot is on stderr.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    level: i8,
}

impl Printer {
    /// `-q` gives -1, default 0, each `-v` one more.
    pub fn new(quiet: bool, verbose: u8) -> Self {
        let level = if quiet { -1 } else { verbose.min(3) as i8 };
        Printer { level }
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
