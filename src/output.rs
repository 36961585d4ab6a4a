//! Writing results: stdout, or a file replaced atomically so a failed or
//! interrupted run never leaves half a result behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` through a temporary file in the same folder and
/// a rename, so `path` holds either its old content or all of the new one.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".glot-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write to folder {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Sends a result to `path`, or to stdout when there is none.
pub fn emit(path: Option<&Path>, data: &str) -> Result<()> {
    match path {
        Some(p) => write_atomic(p, data.as_bytes()),
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(data.as_bytes())?;
            out.flush()?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_file_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.txt");
        std::fs::write(&p, "old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/out.txt");
        assert!(write_atomic(&missing, b"x").is_err());
    }
}
