//! The node's long-term secret key on disk: `DATA_DIR/node.key`, 32 raw
//! bytes, mode 0600. The first start generates it and writes it atomically
//! (temp file created 0600, fsync, rename, fsync of the directory), so a
//! crash never leaves a half-written key; later starts reuse it, keeping the
//! node's public key stable across restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::packet::SecretKey;

pub const KEY_FILE: &str = "node.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot create DATA_DIR {path}: {source}; create it writable for this user")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds {len} bytes, expected 32; move it away to generate a new key")]
    BadLength { path: PathBuf, len: usize },
    #[error("cannot write {path}: {source}; check that DATA_DIR is writable")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the key from `dir`, or generates and persists a new one.
/// Returns the key and whether it was newly generated.
pub fn load_or_generate(dir: &Path) -> Result<(SecretKey, bool), KeyError> {
    fs::create_dir_all(dir).map_err(|source| KeyError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(KEY_FILE);
    match File::open(&path) {
        Ok(mut file) => {
            let mut bytes = Vec::with_capacity(32);
            file.read_to_end(&mut bytes)
                .map_err(|source| KeyError::Read {
                    path: path.clone(),
                    source,
                })?;
            let raw: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadLength {
                    path: path.clone(),
                    len: bytes.len(),
                })?;
            // Tighten a key file someone loosened by hand.
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o600));
            Ok((SecretKey::from_bytes(raw), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            write_atomically(&path, &key.to_bytes())
                .map_err(|source| KeyError::Write { path, source })?;
            Ok((key, true))
        }
        Err(source) => Err(KeyError::Read { path, source }),
    }
}

/// Writes `bytes` to `path` through a 0600 temp file, fsync and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{KEY_FILE}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_generated_once_then_reused_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (first, fresh) = load_or_generate(dir.path()).unwrap();
        assert!(fresh);
        let (second, fresh_again) = load_or_generate(dir.path()).unwrap();
        assert!(!fresh_again);
        assert_eq!(first.public_key(), second.public_key());
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
    }

    #[test]
    fn truncated_key_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), [1u8; 7]).unwrap();
        let err = load_or_generate(dir.path()).err().unwrap().to_string();
        assert!(err.contains("holds 7 bytes"), "{err}");
    }
}
