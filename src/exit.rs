//! Exit codes, in one place.

use std::process::ExitCode;

/// Everything worked.
pub const SUCCESS: u8 = 0;
/// Bad input, flags or model files: the user can fix it.
pub const FAILURE: u8 = 1;
/// A bug or an environment failure glot did not expect.
pub const UNEXPECTED: u8 = 2;
/// Stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
pub const INTERRUPTED: u8 = 130;

/// The exit code for an error: user errors are 1, the rest 2, and a closed
/// stdout (`glot … | head`) is not an error at all.
pub fn for_error(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<glot::Error>() {
            return match e {
                glot::Error::Interrupted(_) => INTERRUPTED,
                _ => FAILURE,
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::BrokenPipe {
                return SUCCESS;
            }
        }
    }
    UNEXPECTED
}

/// Converts a code to the process's exit code.
pub fn code(c: u8) -> ExitCode {
    ExitCode::from(c)
}
