//! Writing results: stdout, or a file replaced atomically so a failed or
//! interrupted run never leaves half a result behind.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `data` to `path` through a temporary file in the same folder and
/// a rename, so `path` holds either its old content or all of the new one.
///
/// What the rename would replace rather than write is written as `cp`
/// writes it: a symbolic link's target gets the content (the link stays),
/// and a device or a FIFO (`/dev/null`, `/dev/stdout`) is written through.
/// A new file takes the mode the umask allows, an existing one keeps its
/// own.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let cannot = || format!("cannot write {}", path.display());
    let existing = std::fs::metadata(path).ok();
    if existing
        .as_ref()
        .is_some_and(|m| !m.is_file() && !m.is_dir())
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(cannot)?;
        return f
            .write_all(data)
            .and_then(|_| f.flush())
            .with_context(cannot);
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).with_context(cannot)?,
        _ => path.to_path_buf(),
    };
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".glot-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write to folder {}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|_| {
            // `existing` followed any link: it is the target's.
            let mode = existing.map(|m| m.permissions()).or_else(new_file_mode);
            set_mode(tmp.as_file(), mode)
        })
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(cannot)?;
    tmp.persist(&target)
        .map_err(|e| e.error)
        .with_context(cannot)?;
    Ok(())
}

/// Gives the file written at `path` (open as `file`) the mode of the file
/// already there, or the one [`new_file_mode`] gives.
pub(crate) fn keep_mode(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(path).map(|m| m.permissions()).ok();
    set_mode(file, mode.or_else(new_file_mode))
}

fn set_mode(file: &std::fs::File, mode: Option<std::fs::Permissions>) -> std::io::Result<()> {
    match mode {
        Some(m) => file.set_permissions(m),
        None => Ok(()),
    }
}

/// The mode a new file gets: read and write for all, less the process's
/// umask (read from `/proc/self/status`, as setting it to read it would
/// race with other threads; 022 where it cannot be read). `None` where
/// files have no such mode: a new file keeps what the system gave it.
fn new_file_mode() -> Option<std::fs::Permissions> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let umask = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                let line = s.lines().find_map(|l| l.strip_prefix("Umask:"))?;
                u32::from_str_radix(line.trim(), 8).ok()
            })
            .unwrap_or(0o022);
        Some(std::fs::Permissions::from_mode(0o666 & !umask))
    }
    #[cfg(not(unix))]
    {
        None
    }
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

    /// Links, devices and modes are treated as `cp` treats them.
    #[cfg(unix)]
    #[test]
    fn links_devices_and_modes_are_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        // A new file: the umask's mode (the tests run with 022 or 002).
        let new = dir.path().join("new.txt");
        write_atomic(&new, b"a").unwrap();
        assert!(matches!(mode(&new), 0o644 | 0o664), "{:o}", mode(&new));
        // An existing file keeps its mode.
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&new, b"b").unwrap();
        assert_eq!(mode(&new), 0o640);
        // A link stays a link; its target gets the content.
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink(&new, &link).unwrap();
        write_atomic(&link, b"c").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read_to_string(&new).unwrap(), "c");
        // A device is written through, not replaced.
        write_atomic(Path::new("/dev/null"), b"d").unwrap();
        let null = std::fs::metadata("/dev/null").unwrap();
        assert!(!null.is_file());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

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
