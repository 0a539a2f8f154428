//! Reading input files within documented bounds, so hostile input ends
//! quickly with a clear error instead of exhausting memory or the stack:
//! compose files are at most [`MAX_FILE_BYTES`] and env files at most
//! [`MAX_ENV_FILE_BYTES`] (checked on the
//! metadata and again while reading, so a larger file is never read whole),
//! must be regular files (a directory or fifo is named as such), valid UTF-8
//! (the error gives the line of the first bad byte); a UTF-8 byte-order mark
//! is dropped. The other limits live next to the code they bound and are
//! listed here: YAML nesting [`MAX_DEPTH`], interpolated values
//! [`MAX_VALUE_BYTES`], total interpolated output per file
//! [`MAX_EXPANDED_BYTES`], `${...}` nesting [`MAX_NESTING`], and `extends`
//! or `include` chains [`MAX_CHAIN`].

use std::io::Read;
use std::path::Path;

use super::{LoadError, LoadErrorKind};

/// Largest compose file read: 1 MB (the largest public compose files are
/// tens of KB; a 1 MB file of 10,000 services loads in about a second).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Largest env file read: 4 MB (room for values up to [`MAX_VALUE_BYTES`]).
pub const MAX_ENV_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Largest single value after interpolation: 1 MB.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most bytes interpolation may add across one file: 16 MB.
pub const MAX_EXPANDED_BYTES: usize = 16 * 1024 * 1024;
/// Deepest YAML nesting of mappings and sequences.
pub const MAX_DEPTH: usize = 64;
/// Deepest nesting of `${VAR:-${...}}` defaults.
pub const MAX_NESTING: usize = 32;
/// Longest chain of `extends` or nested `include`s.
pub const MAX_CHAIN: usize = 32;

fn error(path: &Path, line: Option<usize>, message: String) -> LoadError {
    LoadError {
        kind: LoadErrorKind::Read,
        file: path.to_path_buf(),
        line,
        column: None,
        message,
    }
}

/// Why `path` cannot be used as a compose file, if it cannot.
pub fn unusable(path: &Path) -> Option<String> {
    unusable_within(path, MAX_FILE_BYTES)
}

fn unusable_within(path: &Path, limit: u64) -> Option<String> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist".into()),
        Err(e) => Some(format!("cannot be read: {e}")),
        Ok(m) if m.is_dir() => Some("is a directory, not a file".into()),
        Ok(m) if !m.is_file() => Some("is not a regular file (a fifo, socket or device)".into()),
        Ok(m) if m.len() > limit => Some(format!(
            "is {} bytes, over the {} MB limit for this kind of file",
            m.len(),
            limit / (1024 * 1024)
        )),
        Ok(_) => None,
    }
}

/// Read a compose file within the limits above.
pub fn read_text(path: &Path) -> Result<String, LoadError> {
    read_within(path, MAX_FILE_BYTES)
}

/// Read an env file within the limits above.
pub fn read_env_text(path: &Path) -> Result<String, LoadError> {
    read_within(path, MAX_ENV_FILE_BYTES)
}

fn read_within(path: &Path, limit: u64) -> Result<String, LoadError> {
    if let Some(why) = unusable_within(path, limit) {
        return Err(error(path, None, why));
    }
    let file = std::fs::File::open(path).map_err(|e| LoadError::read(path, &e))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LoadError::read(path, &e))?;
    if bytes.len() as u64 > limit {
        return Err(error(
            path,
            None,
            format!(
                "is over the {} MB limit for this kind of file",
                limit / (1024 * 1024)
            ),
        ));
    }
    decode(path, bytes)
}

/// UTF-8 text without a leading byte-order mark; the error names the line.
pub fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<String, LoadError> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        error(
            path,
            Some(line),
            format!(
                "invalid UTF-8 (byte 0x{:02x}); save the file as UTF-8",
                bytes[at]
            ),
        )
    })
}

/// Strip a byte-order mark from text that was already decoded.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_its_line_and_bom_is_dropped() {
        let err = decode(Path::new("x.yml"), b"a: 1\nb: \xff\n".to_vec()).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("0xff"), "{err}");
        let text = decode(Path::new("x"), b"\xEF\xBB\xBFA=1".to_vec()).unwrap();
        assert_eq!(text, "A=1");
    }

    #[test]
    fn directories_and_missing_files_are_named() {
        let dir = std::env::temp_dir();
        assert!(unusable(&dir).unwrap().contains("directory"));
        assert!(unusable(&dir.join("no-such-file-here"))
            .unwrap()
            .contains("does not exist"));
    }
}
