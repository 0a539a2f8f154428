//! `backup verify FILE`: a backup is trusted only if all of it agrees. The
//! manifest must parse and name this file; the `.sha256` file must name it
//! with the manifest's hash; the archive's size and sha256 (one read) must
//! match; then a Postgres archive must be listed by `pg_restore -l`, with a
//! `TABLE DATA` entry for every table the manifest counted, and a volume
//! archive must read in full with no absolute, `..` or escaping-link entry.
//! Each refusal names what differs.

use std::{path::Path, process::Command};

use anyhow::{bail, Context, Result};

use super::{archive, stream};
use crate::psql::Database;

/// Verify `path`; on success return its manifest.
pub fn verify(path: &Path, db: Option<&Database>, progress: bool) -> Result<archive::Manifest> {
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
    let listing = list_archive(path, db)?;
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

/// `pg_restore -l` of the archive: in the environment's container when one
/// runs, else the host's client.
fn list_archive(path: &Path, db: Option<&Database>) -> Result<String> {
    let cmd = match db {
        Some(db) => db.exec("-i", &["pg_restore".to_string(), "-l".to_string()]),
        None => {
            let mut cmd = Command::new(host_tool("pg_restore")?);
            cmd.arg("-l");
            cmd
        }
    };
    let file = super::encrypt::open(path)?;
    stream::into_child(
        &crate::process::Runner::default(),
        false,
        cmd,
        file,
        &indicatif::ProgressBar::hidden(),
        false,
    )
    .with_context(|| format!("{}: pg_restore cannot read the archive", path.display()))
}

/// A PostgreSQL client tool on the host: PATH, then Debian's versioned folders.
pub fn host_tool(name: &str) -> Result<std::path::PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let debian = (13..=18)
        .rev()
        .map(|v| format!("/usr/lib/postgresql/{v}/bin/{name}").into());
    on_path
        .into_iter()
        .chain(debian)
        .find(|p: &std::path::PathBuf| p.is_file())
        .with_context(|| format!("no Postgres is running in the environment and `{name}` is not installed on the host: start the environment, or install postgresql-client"))
}
