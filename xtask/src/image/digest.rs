//! Content hashes for build inputs and bundles: a sha256 over a directory
//! tree (relative paths, modes and contents, in sorted order) that decides
//! whether an image is stale, and small helpers to stream into a hasher and
//! print digests as hex.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// sha256 over every file below `dir` (sorted relative path, mode and
/// contents) plus `extra` (the version, which ends up in the labels).
pub fn hash_tree(dir: &Path, extra: &str) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(extra.as_bytes());
    for rel in files {
        let path = dir.join(&rel);
        let meta = fs::symlink_metadata(&path)?;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(meta.permissions().mode().to_le_bytes());
        if meta.is_file() {
            let mut file = fs::File::open(&path)?;
            std::io::copy(&mut file, &mut HashWriter(&mut hasher))?;
        }
        hasher.update([0]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        out.push(path.strip_prefix(base).expect("below base").to_path_buf());
        if path.is_dir() && !path.is_symlink() {
            collect(base, &path, out)?;
        }
    }
    Ok(())
}

/// Adapter so `io::copy` can stream into a hasher.
pub struct HashWriter<'a>(pub &'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_changes_with_content_and_version() {
        let dir = std::env::temp_dir().join(format!("xtask-hash-{}", std::process::id()));
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::write(dir.join("a/f"), "one").unwrap();
        let first = hash_tree(&dir, "0.1.0").unwrap();
        assert_eq!(first, hash_tree(&dir, "0.1.0").unwrap());
        assert_ne!(first, hash_tree(&dir, "0.2.0").unwrap());
        fs::write(dir.join("a/f"), "two").unwrap();
        assert_ne!(first, hash_tree(&dir, "0.1.0").unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
