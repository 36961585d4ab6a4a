//! Where a batch writes: under the output folder, and nowhere else.
//!
//! Output paths mirror the input tree. A relative path is checked part by
//! part (no `..`, no absolute or empty parts), and once its folder exists
//! the folder is resolved on disk, so a symbolic link inside the output
//! folder cannot lead a write outside it either.

use std::path::{Component, Path, PathBuf};

/// Why an output path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Escape(pub String);

/// The output file for `relative` (a document's `/`-separated path) with
/// its name turned into `name(stem, extension)`.
pub fn output_path(
    out: &Path,
    relative: &str,
    name: impl Fn(&str, &str) -> String,
) -> Result<PathBuf, Escape> {
    let rel = Path::new(relative);
    let mut parts: Vec<&str> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| Escape(format!("`{relative}` is not valid UTF-8")))?,
            ),
            Component::CurDir => {}
            _ => {
                return Err(Escape(format!(
                    "`{relative}` would be written outside the output folder"
                )))
            }
        }
    }
    let file = parts
        .pop()
        .ok_or_else(|| Escape(format!("`{relative}` has no file name")))?;
    let (stem, ext) = match file.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, e),
        _ => (file, ""),
    };
    let mut path = out.to_path_buf();
    for p in parts {
        path.push(p);
    }
    path.push(name(stem, ext));
    Ok(path)
}

/// Creates the folder of `path` one level at a time, checking before each
/// step that what exists so far, resolved on disk, lies inside `out`.
pub fn prepare(out: &Path, path: &Path) -> Result<(), Escape> {
    let real_out = out
        .canonicalize()
        .map_err(|e| Escape(format!("cannot resolve {}: {e}", out.display())))?;
    let dir = path
        .parent()
        .ok_or_else(|| Escape(format!("{} has no folder", path.display())))?;
    let rest = dir
        .strip_prefix(out)
        .map_err(|_| Escape(format!("{} is not under {}", dir.display(), out.display())))?;
    let mut current = out.to_path_buf();
    for part in rest.components() {
        current.push(part);
        match std::fs::create_dir(&current) {
            // Another process may create it at the same moment.
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Escape(format!(
                    "cannot create folder {}: {e}",
                    current.display()
                )))
            }
            _ => {}
        }
        let real = current
            .canonicalize()
            .map_err(|e| Escape(format!("cannot resolve {}: {e}", current.display())))?;
        if !real.starts_with(&real_out) || !real.is_dir() {
            return Err(Escape(format!(
                "{} leads outside the output folder (to {})",
                current.display(),
                real.display()
            )));
        }
    }
    if path.is_symlink() {
        return Err(Escape(format!(
            "{} is a symbolic link: not replaced",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(stem: &str, _: &str) -> String {
        format!("{stem}.summary.md")
    }

    #[test]
    fn mirrors_the_tree_and_refuses_escapes() {
        let out = Path::new("/o");
        assert_eq!(
            output_path(out, "a/b/post.md", summary).unwrap(),
            Path::new("/o/a/b/post.summary.md")
        );
        assert_eq!(
            output_path(out, "x.tar.gz", |s, e| format!("{s}.fr.{e}")).unwrap(),
            Path::new("/o/x.tar.fr.gz")
        );
        assert_eq!(
            output_path(out, ".profile", summary).unwrap(),
            Path::new("/o/.profile.summary.md")
        );
        for bad in ["../x.md", "a/../../x.md", "/etc/passwd", ""] {
            assert!(output_path(out, bad, summary).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_inside_the_output_cannot_lead_outside() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        let elsewhere = d.path().join("elsewhere");
        std::fs::create_dir_all(&out).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
        let p = output_path(&out, "sub/deeper/a.md", summary).unwrap();
        assert!(prepare(&out, &p).unwrap_err().0.contains("outside"));
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        let ok = output_path(&out, "fine/a.md", summary).unwrap();
        prepare(&out, &ok).unwrap();
        assert!(out.join("fine").is_dir());
        std::os::unix::fs::symlink(elsewhere.join("t"), out.join("fine/l.summary.md")).unwrap();
        let link = output_path(&out, "fine/l.md", summary).unwrap();
        assert!(prepare(&out, &link)
            .unwrap_err()
            .0
            .contains("symbolic link"));
    }
}
