//! The files of one backup and how they are written: the archive, its
//! `<file>.sha256` (what `sha256sum -c` reads) and its `<file>.manifest.json`.
//! Every file is written under a temporary `.<name>.partial-<pid>` name,
//! fsynced, renamed and the folder fsynced; the archive is renamed last, so a
//! backup killed at any moment leaves only `.partial` files, which `list`
//! ignores and `verify` refuses. Streams are hashed in the same pass that
//! writes them.

use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

/// Chunk size of every stream.
pub const CHUNK: usize = 1 << 20;
/// Manifests and checksum files larger than this are not ours.
const SMALL_FILE_LIMIT: u64 = 4 << 20;

/// What a backup says about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Manifest {
    /// `postgres`.
    pub kind: String,
    /// `pg_dump -Fc`.
    pub format: String,
    /// The archive's file name (in the same folder).
    pub file: String,
    pub project: String,
    pub environment: String,
    pub service: String,
    pub image: String,
    pub server_version: String,
    pub database: String,
    pub size: u64,
    pub sha256: String,
    /// `schema.table` -> rows.
    pub tables: BTreeMap<String, i64>,
    pub created_at: String,
    /// Volume backups: entries in the tar archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// `xtask <version>`: marks files this tool wrote (`prune` touches no others).
    pub tool: String,
}

pub fn tool() -> String {
    format!("xtask {}", env!("CARGO_PKG_VERSION"))
}

pub fn manifest_path(archive: &Path) -> PathBuf {
    sibling(archive, ".manifest.json")
}

pub fn sha256_path(archive: &Path) -> PathBuf {
    sibling(archive, ".sha256")
}

pub fn drill_path(archive: &Path) -> PathBuf {
    sibling(archive, ".drill.json")
}

fn sibling(archive: &Path, suffix: &str) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    archive.with_file_name(name)
}

/// A file that appears under its name only when [`Atomic::commit`] succeeds.
pub struct Atomic {
    tmp: PathBuf,
    dest: PathBuf,
    file: Option<File>,
}

impl Atomic {
    pub fn create(dest: &Path) -> Result<Atomic> {
        let name = dest
            .file_name()
            .context("a backup path needs a file name")?;
        let tmp = dest.with_file_name(format!(
            ".{}.partial-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        // Backups hold the whole database: owner-only.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Atomic {
            tmp,
            dest: dest.to_path_buf(),
            file: Some(file),
        })
    }

    /// Where the data is until [`Atomic::commit`].
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("open until commit")
    }

    /// fsync, rename onto the destination, fsync the folder.
    pub fn commit(mut self) -> Result<()> {
        let file = self.file.take().expect("open until commit");
        file.sync_all()
            .with_context(|| format!("fsync {}", self.tmp.display()))?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).with_context(|| {
            format!("renaming {} to {}", self.tmp.display(), self.dest.display())
        })?;
        fsync_dir(self.dest.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for Atomic {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Create the backup folder (0700) if it is missing.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync of folder {}", dir.display()))
}

/// Write `bytes` to `dest` atomically, owner-only like every backup file.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic::write(dest, bytes, 0o600)
}

/// Copy `from` into `to` in one pass, hashing and counting on `bar`.
/// Returns the bytes copied and the hex sha256.
pub fn copy_hashed(
    mut from: impl Read,
    mut to: impl Write,
    bar: &ProgressBar,
) -> Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("reading the stream"),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).context("writing the stream")?;
        total += n as u64;
        bar.inc(n as u64);
    }
    to.flush().context("flushing the stream")?;
    Ok((total, hex::encode(hasher.finalize())))
}

/// A writer that hashes and counts what passes through it.
pub struct HashWriter<W> {
    pub inner: W,
    hasher: Sha256,
    pub written: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written and their hex sha256.
    pub fn finish(self) -> (W, u64, String) {
        (
            self.inner,
            self.written,
            hex::encode(self.hasher.finalize()),
        )
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// sha256 and size of a file.
pub fn hash_file(path: &Path, bar: &ProgressBar) -> Result<(u64, String)> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    copy_hashed(file, std::io::sink(), bar)
}

/// Read a small file (manifest, checksum), refusing huge ones.
pub fn read_small(path: &Path) -> Result<String> {
    let meta = fs::metadata(path).with_context(|| format!("{} is missing", path.display()))?;
    if meta.len() > SMALL_FILE_LIMIT {
        bail!(
            "{} is {} bytes: not a file this tool wrote",
            path.display(),
            meta.len()
        );
    }
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

pub fn read_manifest(archive: &Path) -> Result<Manifest> {
    let path = manifest_path(archive);
    let text = read_small(&path)?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a backup manifest (damaged or hand-edited)",
            path.display()
        )
    })
}

/// The three files of a finished backup, archive last.
pub fn commit_backup(archive: Atomic, manifest: &Manifest, dest: &Path) -> Result<()> {
    let mut json = serde_json::to_string_pretty(manifest)?;
    json.push('\n');
    write_atomic(
        &sha256_path(dest),
        format!("{}  {}\n", manifest.sha256, manifest.file).as_bytes(),
    )?;
    write_atomic(&manifest_path(dest), json.as_bytes())?;
    archive.commit()
}

/// Whether `e` is a full disk (ENOSPC) or an exhausted quota (EDQUOT).
pub fn is_no_space(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| matches!(io.raw_os_error(), Some(28) | Some(122)))
    })
}

/// Name the folder of a full disk: "no space left on device in DIR".
pub fn no_space(e: anyhow::Error, dir: &Path) -> anyhow::Error {
    if is_no_space(&e) {
        e.context(format!(
            "no space left on device in {}: the unfinished backup was removed; free space there or choose another folder with --dir",
            dir.display()
        ))
    } else {
        e
    }
}

/// The UTC timestamp for file names: `20261201T090611Z`.
pub fn stamp(rfc3339: &str) -> String {
    rfc3339.replace(['-', ':'], "")
}

/// Newest first: by `created_at` (whole seconds), then, for backups of the
/// same second, by the `-N` a later one gets before its extension
/// (`…Z-2.dump` after `…Z.dump`, `-10` after `-9`), then by name. A plain
/// name order put `…Z.dump` before `…Z-2.dump`.
pub fn newest_first(a: (&str, &str), b: (&str, &str)) -> std::cmp::Ordering {
    let ((a_at, a_name), (b_at, b_name)) = (a, b);
    b_at.cmp(a_at)
        .then(same_second_rank(b_name).cmp(&same_second_rank(a_name)))
        .then(b_name.cmp(a_name))
}

/// The `N` of a name whose stem (before its first `.`) ends in `-N`; 1 for
/// none (the first backup of its second).
fn same_second_rank(name: &str) -> u32 {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.split('.').next().unwrap_or(file);
    stem.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backups_of_one_second_list_newest_first() {
        let at = "2026-12-05T14:42:04Z";
        let mut names = vec![
            "p-postgres-20261205T144204Z.dump",
            "p-postgres-20261205T144204Z-10.dump.age",
            "p-postgres-20261205T144204Z-2.dump",
            "p-postgres-20261205T144205Z.dump",
            "p-postgres-20261205T144204Z-pre-restore.dump",
        ];
        let created = |n: &str| {
            if n.contains("144205Z") {
                "2026-12-05T14:42:05Z"
            } else {
                at
            }
        };
        names.sort_by(|a, b| newest_first((created(a), a), (created(b), b)));
        assert_eq!(
            names,
            [
                "p-postgres-20261205T144205Z.dump",
                "p-postgres-20261205T144204Z-10.dump.age",
                "p-postgres-20261205T144204Z-2.dump",
                "p-postgres-20261205T144204Z.dump",
                "p-postgres-20261205T144204Z-pre-restore.dump",
            ]
        );
    }

    #[test]
    fn atomic_files_appear_only_on_commit() {
        let dir = std::env::temp_dir().join(format!("xtask-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("a.dump");
        let mut f = Atomic::create(&dest).unwrap();
        f.file().write_all(b"half").unwrap();
        assert!(!dest.exists());
        drop(f); // an error path: the temp file goes too
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let mut f = Atomic::create(&dest).unwrap();
        f.file().write_all(b"whole").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        let (n, sha) = hash_file(&dest, &ProgressBar::hidden()).unwrap();
        assert_eq!(n, 5);
        assert_eq!(sha, hex::encode(Sha256::digest(b"whole")));
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(stamp("2026-12-01T09:06:11Z"), "20261201T090611Z");
        assert_eq!(
            manifest_path(&dest).file_name().unwrap(),
            "a.dump.manifest.json"
        );
    }
}
