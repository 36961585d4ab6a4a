//! Finding the documents of a batch, one at a time.
//!
//! Folders are walked in name order (so every run and every shard sees the
//! same sequence) without collecting them first: memory does not grow with
//! the number of files. Hidden files and folders, the output folder, and
//! files that are not text, Markdown or HTML are passed over. Symbolic links
//! are followed where they point inside the folders given (as a tree of
//! articles links within itself), and passed over where they point outside,
//! unless `follow` says to follow every link, as `fd -L` and `rg -L` do: a
//! `notes -> /etc` link never sends a system's files to a model unasked. A
//! link that loops back is reported, not followed.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::error::Error;

/// File extensions of the documents a folder walk picks up.
const DOCUMENT_EXTENSIONS: &[&str] = &[
    "txt", "text", "md", "markdown", "mdown", "mkd", "html", "htm", "xhtml",
];

/// What to walk and what to keep.
#[derive(Debug, Clone)]
pub struct Selection {
    /// Files and folders named by the user.
    pub roots: Vec<PathBuf>,
    /// Globs over relative paths a document must match (any), if given.
    pub include: Vec<String>,
    /// Globs over relative paths that leave a document out.
    pub exclude: Vec<String>,
    /// The output folder, never read as input.
    pub out: PathBuf,
    /// Follow symbolic links that point outside the roots too (`--follow`).
    pub follow: bool,
}

/// A document found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Where to read it.
    pub path: PathBuf,
    /// Its path relative to its root, `/`-separated: its name in the
    /// manifest and, under the output folder, its outputs' place.
    pub relative: String,
}

/// One step of the walk.
#[derive(Debug)]
pub enum Entry {
    Document(Found),
    /// A file left out, not a document (by extension or glob).
    Skipped,
    /// Something that could not be walked (a loop, a permission error).
    Problem {
        path: String,
        reason: String,
    },
}

/// Walks `sel`, lazily.
pub fn walk(sel: &Selection) -> Result<impl Iterator<Item = Entry>, Error> {
    let include = globs(&sel.include, "--include")?;
    let exclude = globs(&sel.exclude, "--exclude")?;
    for r in &sel.roots {
        if !r.exists() {
            return Err(Error::input(
                r.display().to_string(),
                "no such file or folder",
            ));
        }
    }
    let out = sel.out.canonicalize().ok();
    check_roots(&sel.roots, out.as_deref())?;
    let several = sel.roots.len() > 1;
    let roots = sel.roots.clone();
    let real_roots: Vec<PathBuf> = match sel.follow {
        true => Vec::new(),
        false => roots.iter().filter_map(|r| r.canonicalize().ok()).collect(),
    };
    let follow = sel.follow;
    Ok(roots.into_iter().flat_map(move |root| {
        let include = include.clone();
        let exclude = exclude.clone();
        let out = out.clone();
        let real_roots = real_roots.clone();
        let prefix = if several && root.is_dir() {
            root.file_name()
                .map(|n| format!("{}/", n.to_string_lossy()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let named_file = root.is_file();
        walkdir::WalkDir::new(&root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(move |e| {
                e.depth() == 0
                    || !hidden(e.file_name())
                        && !is_out(e.path(), out.as_deref())
                        && (follow || !e.path_is_symlink() || inside(e.path(), &real_roots))
            })
            .filter_map(move |e| {
                entry(
                    e,
                    &root,
                    &prefix,
                    named_file,
                    include.as_ref(),
                    exclude.as_ref(),
                )
            })
    }))
}

/// Roots must give every document its own relative path, and none may lie
/// inside the output folder (its outputs would become inputs).
fn check_roots(roots: &[PathBuf], out: Option<&Path>) -> Result<(), Error> {
    let mut names: Vec<String> = Vec::new();
    for r in roots {
        let real = r.canonicalize().unwrap_or_else(|_| r.clone());
        if out.is_some_and(|o| real.starts_with(o)) {
            return Err(Error::Usage(format!(
                "{} is inside the output folder: give --out a folder of its own",
                r.display()
            )));
        }
        // A folder among several is known by its name, a file by its name.
        if roots.len() > 1 || r.is_file() {
            let name = real
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if names.contains(&name) {
                return Err(Error::Usage(format!(
                    "two inputs are named `{name}`: their outputs would collide; give their parent folder instead"
                )));
            }
            names.push(name);
        }
    }
    Ok(())
}

fn globs(patterns: &[String], flag: &str) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).map_err(|e| Error::Usage(format!("{flag} `{p}`: {e}")))?);
    }
    b.build()
        .map(Some)
        .map_err(|e| Error::Usage(format!("{flag}: {e}")))
}

/// Whether the link `path` leads inside one of `roots` (canonical paths).
/// A dangling link leads nowhere.
fn inside(path: &Path, roots: &[PathBuf]) -> bool {
    path.canonicalize()
        .is_ok_and(|target| roots.iter().any(|r| target.starts_with(r)))
}

fn hidden(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with('.')
}

fn is_out(path: &Path, out: Option<&Path>) -> bool {
    out.is_some_and(|o| path.is_dir() && path.canonicalize().is_ok_and(|p| p == o))
}

fn entry(
    e: walkdir::Result<walkdir::DirEntry>,
    root: &Path,
    prefix: &str,
    named_file: bool,
    include: Option<&GlobSet>,
    exclude: Option<&GlobSet>,
) -> Option<Entry> {
    let e = match e {
        Ok(e) => e,
        Err(err) => {
            let path = err
                .path()
                .map_or_else(|| root.display().to_string(), |p| p.display().to_string());
            let reason = if err.loop_ancestor().is_some() {
                "a symbolic link loops back to a folder above it: not followed".to_string()
            } else {
                err.io_error()
                    .map_or_else(|| err.to_string(), |io| io.to_string())
            };
            return Some(Entry::Problem { path, reason });
        }
    };
    if !e.file_type().is_file() {
        return None;
    }
    let relative = if named_file {
        e.file_name().to_string_lossy().into_owned()
    } else {
        let rel = e.path().strip_prefix(root).unwrap_or(e.path());
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        format!("{prefix}{}", parts.join("/"))
    };
    // A file named on the command line is taken whatever its extension.
    let document = named_file
        || e.path()
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| DOCUMENT_EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()));
    let included = include.is_none_or(|g| g.is_match(&relative));
    let excluded = exclude.is_some_and(|g| g.is_match(&relative));
    if !document || !included || excluded {
        return Some(Entry::Skipped);
    }
    Some(Entry::Document(Found {
        path: e.into_path(),
        relative,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in [
            "in/a.md",
            "in/b.txt",
            "in/c.png",
            "in/.hidden.md",
            "in/.git/x.md",
            "in/sub/d.html",
            "in/drafts/e.md",
            "in/out/f.md",
        ] {
            let p = d.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "text").unwrap();
        }
        d
    }

    fn docs(sel: &Selection) -> Vec<String> {
        walk(sel)
            .unwrap()
            .filter_map(|e| match e {
                Entry::Document(f) => Some(f.relative),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn walks_documents_in_order_without_hidden_files_or_the_output() {
        let d = tree();
        let sel = Selection {
            roots: vec![d.path().join("in")],
            include: vec![],
            exclude: vec!["drafts/**".into()],
            out: d.path().join("in/out"),
            follow: false,
        };
        assert_eq!(docs(&sel), ["a.md", "b.txt", "sub/d.html"]);
        let sel = Selection {
            include: vec!["*.md".into()],
            exclude: vec![],
            ..sel
        };
        assert_eq!(docs(&sel), ["a.md", "drafts/e.md"]);
    }

    #[test]
    fn named_files_and_several_roots() {
        let d = tree();
        let sel = Selection {
            roots: vec![d.path().join("in/c.png"), d.path().join("in/sub")],
            include: vec![],
            exclude: vec![],
            out: d.path().join("out"),
            follow: false,
        };
        assert_eq!(docs(&sel), ["c.png", "sub/d.html"]);
        let missing = Selection {
            roots: vec![d.path().join("nope")],
            ..sel.clone()
        };
        assert!(walk(&missing).is_err());
        let twice = Selection {
            roots: vec![d.path().join("in/sub"), d.path().join("in/drafts/../sub")],
            ..sel.clone()
        };
        assert!(walk(&twice).is_err());
        let inside = Selection {
            roots: vec![d.path().join("in/out")],
            out: d.path().join("in"),
            ..sel
        };
        let err = walk(&inside).err().expect("refused").to_string();
        assert!(err.contains("inside the output"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_reported_not_followed() {
        let d = tree();
        std::os::unix::fs::symlink(d.path().join("in"), d.path().join("in/sub/loop")).unwrap();
        let sel = Selection {
            roots: vec![d.path().join("in")],
            include: vec![],
            exclude: vec![],
            out: d.path().join("elsewhere"),
            follow: false,
        };
        let entries: Vec<Entry> = walk(&sel).unwrap().collect();
        assert!(entries
            .iter()
            .any(|e| matches!(e, Entry::Problem { reason, .. } if reason.contains("loops"))));
        assert_eq!(
            entries
                .iter()
                .filter(|e| matches!(e, Entry::Document(_)))
                .count(),
            5
        );
    }

    /// Links inside the roots are followed; links out of them only with
    /// `follow`, as `fd -L` follows them.
    #[cfg(unix)]
    #[test]
    fn links_out_of_the_roots_are_followed_only_when_asked() {
        let d = tree();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.txt"), "not an article").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, d.path().join("in").join(name)).unwrap()
        };
        link(&outside, "etc");
        link(&outside.join("secret.txt"), "passwd.txt");
        link(&d.path().join("in/sub"), "also-sub");
        link(&d.path().join("nowhere"), "dangling.txt");
        let sel = Selection {
            roots: vec![d.path().join("in")],
            include: vec![],
            exclude: vec![],
            out: d.path().join("out"),
            follow: false,
        };
        let found = docs(&sel);
        assert!(found.contains(&"also-sub/d.html".to_string()), "{found:?}");
        assert!(
            !found
                .iter()
                .any(|f| f.starts_with("etc/") || f == "passwd.txt"),
            "{found:?}"
        );
        let all = docs(&Selection {
            follow: true,
            ..sel
        });
        assert!(all.contains(&"etc/secret.txt".to_string()), "{all:?}");
        assert!(all.contains(&"passwd.txt".to_string()), "{all:?}");
    }
}
