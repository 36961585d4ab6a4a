//! Reading one document from a file or stdin, with the checks that turn bad
//! input into a one-line error instead of garbage output.

use std::io::Read;
use std::path::Path;

use anyhow::Result;

use crate::error::Error;

/// A document as read.
#[derive(Debug, Clone)]
pub struct Document {
    /// Where it came from (`-` for stdin), for messages and metadata.
    pub name: String,
    pub text: String,
}

/// Reads `source`: a path, or `-` for stdin.
pub fn read(source: &str) -> Result<Document> {
    let bytes = if source == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| Error::input("stdin", format!("cannot read: {e}")))?;
        buf
    } else {
        let path = Path::new(source);
        if path.is_dir() {
            return Err(Error::input(
                source,
                "is a directory, expected a file (use `glot batch` for folders)",
            )
            .into());
        }
        std::fs::read(path).map_err(|e| {
            let reason = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => format!("cannot read: {e}"),
            };
            Error::input(source, reason)
        })?
    };
    let name = if source == "-" { "stdin" } else { source };
    Ok(Document {
        name: name.to_string(),
        text: decode(name, &bytes)?,
    })
}

/// Checks and decodes document bytes: UTF-8 with an optional BOM or UTF-16
/// with a BOM; not binary, not blank.
pub fn decode(name: &str, bytes: &[u8]) -> Result<String, Error> {
    if let Some(text) = decode_utf16(name, bytes)? {
        return checked(name, text);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        Error::input(
            name,
            format!(
                "is not valid UTF-8 text (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    checked(name, text.to_string())
}

/// UTF-16 text, recognised only by its byte-order mark (without one,
/// UTF-16 is indistinguishable from binary data).
fn decode_utf16(name: &str, bytes: &[u8]) -> Result<Option<String>, Error> {
    let (body, little) = match bytes {
        [0xFF, 0xFE, rest @ ..] => (rest, true),
        [0xFE, 0xFF, rest @ ..] => (rest, false),
        _ => return Ok(None),
    };
    if body.len() % 2 != 0 {
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
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .map(Some)
        .map_err(|_| Error::input(name, "is not valid UTF-16 text (unpaired surrogate)"))
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
        assert_eq!(decode("a", b"\xEF\xBB\xBFhi\r\n").unwrap(), "hi\n");
        assert!(decode("a", b" \n\t ")
            .unwrap_err()
            .to_string()
            .contains("is empty"));
        assert!(decode("a", b"x\0y")
            .unwrap_err()
            .to_string()
            .contains("binary"));
        let e = decode("a", b"ok \xff").unwrap_err().to_string();
        assert!(
            e.contains("not valid UTF-8") && e.contains("offset 3"),
            "{e}"
        );
    }
}
