//! Reads with a ceiling. Every file glot reads may be hostile or simply
//! wrong (`/dev/zero` given as a template, a config.json of gigabytes), so
//! none is read whole before its size is known to be sane: a file over its
//! ceiling is one error naming it, never memory exhausted.

use std::io::Read;
use std::path::Path;

use crate::error::Error;

/// Templates, manifests and chat templates: text people write.
pub const TEXT: u64 = 1 << 20;
/// JSON a model is published with (config, generation config, tokenizer
/// config, safetensors index): tokenizer configs with long chat templates
/// and vocabularies reach megabytes, never this.
pub const MODEL_JSON: u64 = 64 << 20;

/// All of `r` if it holds at most `max` bytes, else `None` (having read
/// one byte more than `max`, no more).
pub fn read_at_most(r: impl Read, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= max).then_some(buf))
}

/// The file at `path` as UTF-8 text, if it holds at most `max` bytes; the
/// errors name the file.
pub fn read_to_string(path: &Path, max: u64) -> Result<String, Error> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::input(&name, e.to_string()))?;
    let bytes = read_at_most(file, max)
        .map_err(|e| Error::input(&name, e.to_string()))?
        .ok_or_else(|| Error::input(&name, format!("is larger than {max} bytes")))?;
    String::from_utf8(bytes).map_err(|_| Error::input(&name, "is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_its_ceiling_is_refused_after_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.txt");
        std::fs::write(&p, "12345").unwrap();
        assert_eq!(read_to_string(&p, 5).unwrap(), "12345");
        let e = read_to_string(&p, 4).unwrap_err().to_string();
        assert!(e.ends_with("t.txt: is larger than 4 bytes"), "{e}");
        #[cfg(unix)]
        {
            let e = read_to_string(Path::new("/dev/zero"), 1000).unwrap_err();
            assert!(e.to_string().contains("larger than 1000 bytes"), "{e}");
        }
    }
}
