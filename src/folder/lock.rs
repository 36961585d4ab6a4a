//! Locks and scratch space in `OUT/.glot/`, safe with several processes
//! writing into one output folder.
//!
//! Locks are advisory file locks: the system drops them when a process
//! ends, however it ends, so a killed run never leaves an item locked.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An item being worked on by this process; unlocked on drop.
#[derive(Debug)]
pub struct ItemLock {
    _file: File,
}

/// Takes the lock of `input`'s `task`, or `None` when another process
/// holds it.
pub fn lock_item(out: &Path, input: &str, task: &str) -> Result<Option<ItemLock>> {
    let dir = out.join(".glot").join("locks");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = &crate::digest::sha256_hex(format!("{input}\0{task}").as_bytes())[..32];
    let path = dir.join(format!("{name}.lock"));
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(ItemLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// This process's scratch folder for outputs being written: renamed into
/// place when complete, so no output file is ever partial. Folders left by
/// processes that died are removed on the way.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    _lock: File,
}

impl Scratch {
    pub fn new(out: &Path) -> Result<Scratch> {
        let root = out.join(".glot").join("tmp");
        std::fs::create_dir_all(&root)
            .with_context(|| format!("cannot create {}", root.display()))?;
        remove_abandoned(&root);
        // Locked before it gets the name cleanup looks at, so no other
        // process ever sees it unlocked.
        let staging = tempfile::Builder::new()
            .prefix("staging-")
            .tempdir_in(&root)
            .with_context(|| format!("cannot create a folder in {}", root.display()))?
            .keep();
        let lock = File::create(staging.join(".lock"))?;
        lock.lock()?;
        let name = staging
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| n.replacen("staging-", "run-", 1))
            .expect("a name tempfile made");
        let dir = root.join(name);
        std::fs::rename(&staging, &dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch { dir, _lock: lock })
    }

    /// Writes `data` to `dest` whole: into the scratch folder first, then
    /// renamed into place.
    pub fn write(&self, dest: &Path, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .with_context(|| format!("cannot write in {}", self.dir.display()))?;
        tmp.write_all(data)
            .and_then(|_| crate::output::keep_mode(tmp.as_file(), dest))
            .and_then(|_| tmp.as_file().sync_all())
            .with_context(|| format!("cannot write {}", dest.display()))?;
        match tmp.persist(dest) {
            Ok(_) => Ok(()),
            // Another file system under the output folder: write beside it.
            Err(e) if e.error.raw_os_error() == Some(18) => crate::output::write_atomic(dest, data),
            Err(e) => Err(e.error).with_context(|| format!("cannot write {}", dest.display())),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes scratch folders whose process is gone (their lock is free).
fn remove_abandoned(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        // Only named folders: a staging one is locked by its maker already
        // or about to be.
        if !e.file_name().to_string_lossy().starts_with("run-") {
            continue;
        }
        let Ok(lock) = File::open(dir.join(".lock")) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_per_item_and_scratch_cleans_up() {
        let d = tempfile::tempdir().unwrap();
        let a = lock_item(d.path(), "a.md", "summarize").unwrap();
        assert!(a.is_some());
        assert!(lock_item(d.path(), "a.md", "summarize").unwrap().is_none());
        assert!(lock_item(d.path(), "a.md", "translate:de")
            .unwrap()
            .is_some());
        drop(a);
        assert!(lock_item(d.path(), "a.md", "summarize").unwrap().is_some());

        let s = Scratch::new(d.path()).unwrap();
        let dest = d.path().join("x.txt");
        s.write(&dest, b"whole").unwrap();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "whole");
        // Outputs take the umask's mode, not the temporary file's 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
            assert!(matches!(mode, 0o644 | 0o664), "{mode:o}");
        }
        // A dead run's folder (its lock free) goes when the next one starts.
        let dead = d.path().join(".glot/tmp/run-dead");
        std::fs::create_dir_all(&dead).unwrap();
        File::create(dead.join(".lock")).unwrap();
        std::fs::write(dead.join("half"), b"ha").unwrap();
        let s2 = Scratch::new(d.path()).unwrap();
        assert!(!dead.exists());
        // The live one stays.
        assert!(s.dir.exists());
        drop(s);
        drop(s2);
        assert_eq!(
            std::fs::read_dir(d.path().join(".glot/tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}
