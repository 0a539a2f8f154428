//! The node's long-term secret key on disk: `DATA_DIR/node.key`, 32 raw
//! bytes, mode 0600. The first start generates it and writes it atomically
//! (temp file created 0600, fsync, rename, fsync of the directory), so a
//! crash never leaves a half-written key; later starts reuse it, keeping the
//! node's public key stable across restarts. An existing key must be a
//! regular file (a FIFO or a device is refused before it is opened for
//! reading, and it is opened non-blocking), exactly 32 bytes, not all zero,
//! and readable by its owner only: a key open to group or others is refused
//! unless `FIX_KEY_PERMISSIONS=true`, which tightens it to 0600 with a warning.

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
    BadLength { path: PathBuf, len: u64 },
    #[error("{path} is not a regular file; move it away to generate a new key")]
    NotRegular { path: PathBuf },
    #[error("{path} has mode {mode:o}, readable by others; run `chmod 600 {path}` or set FIX_KEY_PERMISSIONS=true")]
    Loose { path: PathBuf, mode: u32 },
    #[error("{path} is all zeros, not a usable key; move it away to generate a new key")]
    AllZero { path: PathBuf },
    #[error("cannot write {path}: {source}; check that DATA_DIR is writable")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Loads the key from `dir`, or generates and persists a new one.
/// Returns the key and whether it was newly generated. With
/// `fix_permissions` a key readable by others is tightened to 0600 instead
/// of refused.
pub fn load_or_generate(dir: &Path, fix_permissions: bool) -> Result<(SecretKey, bool), KeyError> {
    fs::create_dir_all(dir).map_err(|source| KeyError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(KEY_FILE);
    let read_err = |source| KeyError::Read {
        path: path.clone(),
        source,
    };
    match fs::metadata(&path) {
        Ok(meta) => {
            if !meta.is_file() {
                return Err(KeyError::NotRegular { path });
            }
            if meta.len() != 32 {
                return Err(KeyError::BadLength {
                    path,
                    len: meta.len(),
                });
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                if !fix_permissions {
                    return Err(KeyError::Loose { path, mode });
                }
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "key readable by others; tightening to 0600 (FIX_KEY_PERMISSIONS)");
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(read_err)?;
            }
            // Non-blocking, so a FIFO swapped in since the check cannot hang us.
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc_o_nonblock())
                .open(&path)
                .map_err(read_err)?;
            if !file.metadata().map_err(read_err)?.is_file() {
                return Err(KeyError::NotRegular { path });
            }
            let mut bytes = Vec::with_capacity(33);
            file.take(33).read_to_end(&mut bytes).map_err(read_err)?;
            let raw: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| KeyError::BadLength {
                    path: path.clone(),
                    len: bytes.len() as u64,
                })?;
            if raw == [0u8; 32] {
                return Err(KeyError::AllZero { path });
            }
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

/// `O_NONBLOCK` on Linux (the only platform the node ships for).
const fn libc_o_nonblock() -> i32 {
    0o4000
}

/// Writes `bytes` to `path` through a 0600 temp file, fsync and rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// Creates `path` atomically: `write` fills a 0600 temp file beside it,
/// which is fsynced and renamed over `path`, and the directory is fsynced;
/// on any error the temp file is removed and `path` is untouched.
pub fn write_atomically_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        write(&mut file)?;
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
        let (first, fresh) = load_or_generate(dir.path(), false).unwrap();
        assert!(fresh);
        let (second, fresh_again) = load_or_generate(dir.path(), false).unwrap();
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
        let err = load_or_generate(dir.path(), false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("holds 7 bytes"), "{err}");
    }

    fn key_file_with(dir: &Path, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(KEY_FILE);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn hostile_key_files_are_refused_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let err = |fix| load_or_generate(dir.path(), fix).err().unwrap().to_string();
        key_file_with(dir.path(), &[0u8; 32], 0o600);
        assert!(err(false).contains("all zeros"), "{}", err(false));
        let path = key_file_with(dir.path(), &[9u8; 32], 0o644);
        assert!(
            err(false).contains("mode 644, readable by others"),
            "{}",
            err(false)
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // The flag tightens it and goes on.
        assert!(load_or_generate(dir.path(), true).is_ok());
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_file(&path).unwrap();
        // A directory, a symlink to /dev/zero and a FIFO: refused at once.
        fs::create_dir(&path).unwrap();
        assert!(err(false).contains("not a regular file"));
        fs::remove_dir(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        assert!(err(false).contains("not a regular file"));
        fs::remove_file(&path).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&path).status();
        if made.is_ok_and(|s| s.success()) {
            assert!(err(false).contains("not a regular file"));
        }
    }
}
