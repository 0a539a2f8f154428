//! `backup verify FILE`: a backup is trusted only if all of it agrees. The
//! manifest must parse and name this file; the `.sha256` file must name it
//! with the manifest's hash; the archive's size and sha256 (one read) must
//! match; then a Postgres archive must be read in full by `pg_restore -f
//! /dev/null` (every data block decompressed, so bytes changed and resealed
//! with a new checksum are caught) and listed by `pg_restore -l`, with a
//! `TABLE DATA` entry for every table the manifest counted, and a volume
//! archive must read in full with no absolute, `..` or escaping-link entry.
//! Each refusal names what differs.

use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{archive, stream};
use crate::database::Database;
use crate::process::Cmd;

/// Verify `path`, reading a dump in full; on success return its manifest.
pub fn verify(path: &Path, db: Option<&Database>, progress: bool) -> Result<archive::Manifest> {
    verify_with(path, db, progress, true)
}

/// [`verify`]; without `full_read` a dump is only listed (`pg_restore -l`):
/// for callers that restore every byte next (a drill, `restore`), whose
/// `pg_restore --exit-on-error` fails on damage before anything is swapped.
pub fn verify_with(
    path: &Path,
    db: Option<&Database>,
    progress: bool,
    full_read: bool,
) -> Result<archive::Manifest> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !path.is_file() {
        bail!("{} does not exist (or is not a file)", path.display());
    }
    if name.starts_with('.') || name.contains(".partial-") {
        bail!(
            "{}: an unfinished backup (a run was interrupted); it cannot be verified",
            path.display()
        );
    }
    let manifest = archive::read_manifest(path).with_context(|| {
        format!(
            "{}: no usable manifest, so the backup is incomplete or not this tool's",
            path.display()
        )
    })?;
    if manifest.file != name {
        bail!(
            "{}: the manifest describes `{}`, not this file",
            path.display(),
            manifest.file
        );
    }
    let sha_path = archive::sha256_path(path);
    let sha_text = archive::read_small(&sha_path)?;
    let recorded = sha_text.split_whitespace().collect::<Vec<_>>();
    match recorded.as_slice() {
        [hash, file] if file.trim_start_matches('*') == name => {
            if *hash != manifest.sha256 {
                bail!(
                    "{}: the .sha256 file says {hash} but the manifest says {}",
                    path.display(),
                    manifest.sha256
                );
            }
        }
        _ => bail!("{}: not a `<sha256>  {name}` line", sha_path.display()),
    }
    let bar = stream::bar(progress, Some(manifest.size), &format!("sha256 {name}"));
    let hashed = archive::hash_file(path, &bar);
    bar.finish_and_clear();
    let (size, sha256) = hashed?;
    if size != manifest.size {
        bail!("{}: {size} bytes, the manifest says {}: the archive is truncated or damaged; do not restore it", path.display(), manifest.size);
    }
    if sha256 != manifest.sha256 {
        bail!("{}: checksum mismatch: the file hashes to {sha256}, the manifest says {}: the archive is damaged; do not restore it", path.display(), manifest.sha256);
    }
    match manifest.kind.as_str() {
        "postgres" => {}
        "base" => {
            super::base::verify(path, &manifest, db.map(|d| d.image.as_str()))?;
            return Ok(manifest);
        }
        "volume" => {
            let entries = super::volume::check_archive(path)?;
            if manifest.entries.is_some_and(|n| n != entries) {
                bail!(
                    "{}: {entries} entries, the manifest says {}",
                    path.display(),
                    manifest.entries.unwrap_or(0)
                );
            }
            return Ok(manifest);
        }
        other => bail!("{}: unknown backup kind `{other}`", path.display()),
    }
    if full_read {
        let bar = stream::bar(progress, Some(manifest.size), &format!("pg_restore {name}"));
        let read = pg_restore(path, db, &["-f", "/dev/null"], &bar);
        bar.finish_and_clear();
        read.with_context(|| {
            format!(
                "{}: the archive does not read in full (damaged, even though its checksum matches); do not restore it",
                path.display()
            )
        })?;
    }
    let listing = pg_restore(path, db, &["-l"], &indicatif::ProgressBar::hidden())
        .with_context(|| format!("{}: pg_restore cannot read the archive", path.display()))?;
    for table in manifest.tables.keys() {
        let (schema, table_name) = table.split_once('.').unwrap_or(("public", table));
        let entry = format!(" TABLE DATA {schema} {table_name} ");
        if !listing.lines().any(|l| l.contains(&entry)) {
            bail!(
                "{}: the manifest counts table {table} but the archive has no data for it",
                path.display()
            );
        }
    }
    Ok(manifest)
}

/// `pg_restore ARGS` over the archive on stdin: in the environment's
/// container when one runs, else the host's client. `-l` may stop after the
/// table of contents; anything else must read the whole archive.
fn pg_restore(
    path: &Path,
    db: Option<&Database>,
    args: &[&str],
    bar: &indicatif::ProgressBar,
) -> Result<String> {
    let cmd = match db {
        Some(db) => {
            let mut all = vec!["pg_restore".to_string()];
            all.extend(args.iter().map(|a| a.to_string()));
            db.exec("-i", &all)
        }
        None => {
            let mut cmd = Cmd::new(host_tool("pg_restore")?);
            cmd.args(args);
            cmd
        }
    };
    let file = super::encrypt::open(path)?;
    let reads_all = args != ["-l"];
    stream::into_child(
        &crate::process::Runner::default(),
        false,
        cmd,
        std::io::BufReader::with_capacity(archive::CHUNK, file),
        bar,
        reads_all,
    )
}

/// A PostgreSQL client tool on the host: PATH, then Debian's versioned folders.
pub fn host_tool(name: &str) -> Result<std::path::PathBuf> {
    let on_path = which::which(name).ok();
    let debian = (13..=18)
        .rev()
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/{name}").into());
    on_path
        .into_iter()
        .chain(debian)
        .find(|p: &std::path::PathBuf| p.is_file())
        .with_context(|| format!("no Postgres is running in the environment and `{name}` is not installed on the host: start the environment, or install postgresql-client"))
}
