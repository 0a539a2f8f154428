//! Files written whole or not at all: a temp file beside the target (from
//! `tempfile`, so a crash leaves only a dot file and an error path removes
//! it), the bytes, the mode, fsync, rename onto the target, fsync of the
//! folder. `.env`, secrets, keys, manifests, journals, release artifacts and
//! metrics textfiles are all written this way; a backup archive streams
//! through `backups::archive::Atomic`, which commits the same way.

use std::{fs, io::Write, os::unix::fs::PermissionsExt, path::Path};

use anyhow::{Context, Result};

/// Write `bytes` to `path` with `mode` (not masked by the umask), atomically.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let result = (|| -> Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("fsync of folder {}", dir.display()))
    })();
    result.with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_with_their_mode_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt");
        write(&path, b"one", 0o600).unwrap();
        write(&path, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing = dir.path().join("no/such/dir/b.txt");
        let err = write(&missing, b"x", 0o600).unwrap_err();
        assert!(format!("{err:#}").contains("b.txt"), "{err:#}");
    }
}
