//! Reading one document from a file or stdin, with the checks that turn bad
//! input into a one-line error instead of garbage output.

use std::path::Path;

use anyhow::Result;

use crate::bounded::read_at_most;
use crate::error::Error;

/// A document as read.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from (`-` for stdin), for messages and metadata.
    pub name: String,
    pub text: String,
    /// Undecodable byte sequences replaced by U+FFFD (only with `lossy`).
    pub replaced: usize,
}

/// The default of `--max-bytes`, and the bound on the small files glot
/// reads besides documents (glossaries, prompt files).
pub const MAX_BYTES: u64 = 10_000_000;

/// Reads `source`: a path, or `-` for stdin, of at most `max_bytes` bytes
/// (`/dev/zero` or an endless pipe is refused at that size, not read into
/// memory). With `lossy`, bytes that are not valid text become U+FFFD
/// instead of an error.
pub fn read(source: &str, lossy: bool, max_bytes: u64) -> Result<Document> {
    let name = if source == "-" { "stdin" } else { source };
    let cannot = |e: std::io::Error| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => format!("cannot read: {e}"),
        };
        Error::input(name, reason)
    };
    let bytes = if source == "-" {
        read_at_most(std::io::stdin().lock(), max_bytes).map_err(cannot)?
    } else {
        let path = Path::new(source);
        if path.is_dir() {
            return Err(Error::input(
                source,
                "is a directory, expected a file (use `glot batch` for folders)",
            )
            .into());
        }
        read_at_most(std::fs::File::open(path).map_err(cannot)?, max_bytes).map_err(cannot)?
    };
    let Some(bytes) = bytes else {
        return Err(Error::input(
            name,
            format!("is larger than {max_bytes} bytes (--max-bytes sets the limit)"),
        )
        .into());
    };
    let (text, replaced) = decode(name, &bytes, lossy)?;
    Ok(Document {
        name: name.to_string(),
        text,
        replaced,
    })
}

/// A glossary file: one `term<TAB>translation` pair per line; blank lines
/// and lines starting with `#` are skipped.
pub fn glossary(path: &str) -> Result<Vec<(String, String)>> {
    let doc = read(path, false, MAX_BYTES)?;
    let mut terms = Vec::new();
    for (i, line) in doc.text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::input(format!("{path}:{}", i + 1), why.to_string());
        let Some((term, translation)) = line.split_once('\t') else {
            return Err(bad("expected TERM<TAB>TRANSLATION").into());
        };
        let (term, translation) = (term.trim(), translation.trim());
        if term.is_empty() || translation.is_empty() {
            return Err(bad("a term and its translation may not be empty").into());
        }
        terms.push((term.to_string(), translation.to_string()));
    }
    Ok(terms)
}

/// Checks and decodes document bytes: UTF-8 with an optional BOM or UTF-16
/// with a BOM; not binary, not blank. Returns the text and how many
/// undecodable sequences `lossy` replaced.
pub fn decode(name: &str, bytes: &[u8], lossy: bool) -> Result<(String, usize), Error> {
    if let Some((text, replaced)) = decode_utf16(name, bytes, lossy)? {
        return Ok((checked(name, text)?, replaced));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((checked(name, text.to_string())?, 0)),
        Err(_) if lossy => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let replaced =
                text.matches('\u{FFFD}').count() - count_valid_replacement_chars(bytes);
            Ok((checked(name, text)?, replaced))
        }
        Err(e) => Err(Error::input(
            name,
            format!(
                "is not valid UTF-8 text (bad byte at offset {}): convert it to UTF-8, or pass --lossy to replace bad bytes",
                e.valid_up_to()
            ),
        )),
    }
}

/// U+FFFD characters the input itself contains, which are not replacements.
fn count_valid_replacement_chars(bytes: &[u8]) -> usize {
    bytes
        .windows(3)
        .filter(|w| *w == "\u{FFFD}".as_bytes())
        .count()
}

/// UTF-16 text, recognised only by its byte-order mark (without one,
/// UTF-16 is indistinguishable from binary data).
fn decode_utf16(name: &str, bytes: &[u8], lossy: bool) -> Result<Option<(String, usize)>, Error> {
    let (body, little) = match bytes {
        [0xFF, 0xFE, rest @ ..] => (rest, true),
        [0xFE, 0xFF, rest @ ..] => (rest, false),
        _ => return Ok(None),
    };
    if body.len() % 2 != 0 && !lossy {
        return Err(Error::input(
            name,
            "is not valid UTF-16 text (odd number of bytes)",
        ));
    }
    let units = body.chunks_exact(2).map(|c| {
        if little {
            u16::from_le_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], c[1]])
        }
    });
    let mut text = String::with_capacity(body.len() / 2);
    let mut replaced = body.len() % 2;
    for c in char::decode_utf16(units) {
        match c {
            Ok(c) => text.push(c),
            Err(_) if lossy => {
                text.push('\u{FFFD}');
                replaced += 1;
            }
            Err(_) => {
                return Err(Error::input(
                    name,
                    "is not valid UTF-16 text (unpaired surrogate): pass --lossy to replace it",
                ))
            }
        }
    }
    if replaced > 0 && body.len() % 2 == 1 {
        text.push('\u{FFFD}');
    }
    Ok(Some((text, replaced)))
}

fn checked(name: &str, text: String) -> Result<String, Error> {
    if text.contains('\0') {
        return Err(Error::input(
            name,
            "looks like a binary file (it contains NUL characters)",
        ));
    }
    if text.trim().is_empty() {
        return Err(Error::input(name, "is empty"));
    }
    Ok(text.replace("\r\n", "\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_checks() {
        assert_eq!(
            decode("a", b"\xEF\xBB\xBFhi\r\n", false).unwrap(),
            ("hi\n".to_string(), 0)
        );
        assert!(decode("a", b" \n\t ", false)
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        assert!(decode("a", b"x\0y", true)
            .unwrap_err()
            .to_string()
            .contains("binary"));
        let e = decode("a", b"ok \xff", false).unwrap_err().to_string();
        assert!(
            e.contains("not valid UTF-8") && e.contains("offset 3") && e.contains("--lossy"),
            "{e}"
        );
    }

    #[test]
    fn lossy_decoding_replaces_and_counts_bad_bytes() {
        let (text, n) = decode("a", b"ok \xEF\xBF\xBD \xff x \xc3", true).unwrap();
        assert_eq!((text.as_str(), n), ("ok \u{FFFD} \u{FFFD} x \u{FFFD}", 2));
        // Latin-1 bytes of "café".
        assert_eq!(
            decode("a", b"caf\xe9", true).unwrap(),
            ("caf\u{FFFD}".into(), 1)
        );
        // UTF-16 with a lone surrogate and an odd trailing byte.
        let (text, n) = decode("a", b"\xFF\xFEh\x00\x00\xD8i\x00!", true).unwrap();
        assert_eq!((text.as_str(), n), ("h\u{FFFD}i\u{FFFD}", 2));
        assert!(decode("a", b"\xFF\xFEh\x00\x00\xD8", false).is_err());
    }
}
