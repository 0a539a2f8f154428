//! `backup list` and `backup prune --keep N`. A backup is an archive whose
//! manifest this tool wrote (its `tool` field); everything else in the folder
//! is left alone. Prune keeps the newest N and, in addition, the newest backup
//! whose restore drill passed; it runs after a successful backup, or on its
//! own only once the newest backup verifies.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::{archive, drill::Drill};
use crate::{migrate::Format, process::Runner};

/// One backup found in the folder.
#[derive(Debug, serde::Serialize)]
pub struct Entry {
    pub path: PathBuf,
    pub kind: String,
    pub size: u64,
    pub created_at: String,
    /// `passed`, `failed` or `none`.
    pub drill: String,
}

/// This tool's backups in `dir`, newest first, and the count of leftovers
/// (`.partial` files of interrupted runs).
pub fn scan(dir: &Path) -> Result<(Vec<Entry>, usize)> {
    let mut out = Vec::new();
    let mut partial = 0;
    let Ok(read) = fs::read_dir(dir) else {
        return Ok((out, 0));
    };
    for entry in read.filter_map(|e| e.ok()) {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        // An interrupted run: a half-written file, or a `restore s3://` download folder.
        if name.contains(".partial-") || name.starts_with(".s3-download-") {
            partial += 1;
            continue;
        }
        let plain = name.strip_suffix(super::encrypt::SUFFIX).unwrap_or(&name);
        if !(plain.ends_with(".dump") || plain.ends_with(".tar.gz")) || name.starts_with('.') {
            continue;
        }
        let Ok(m) = archive::read_manifest(&path) else {
            continue;
        };
        if !m.tool.starts_with("xtask ") || m.file != name {
            continue;
        }
        let drill = match archive::read_small(&archive::drill_path(&path))
            .ok()
            .and_then(|t| serde_json::from_str::<Drill>(&t).ok())
        {
            Some(d) if d.passed => "passed",
            Some(_) => "failed",
            None => "none",
        };
        out.push(Entry {
            path,
            kind: m.kind,
            size: m.size,
            created_at: m.created_at,
            drill: drill.into(),
        });
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.path.cmp(&a.path)));
    Ok((out, partial))
}

pub fn list(dir: &Path, format: Format) -> Result<()> {
    let (entries, partial) = scan(dir)?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"dir": dir, "backups": entries, "partial": partial})
        );
        return Ok(());
    }
    if entries.is_empty() {
        println!("no backups in {}", dir.display());
    } else {
        println!(
            "{:<56} {:<9} {:>10}  {:<20}  DRILL",
            "FILE", "KIND", "SIZE", "CREATED"
        );
        for e in &entries {
            let name = e.path.file_name().unwrap_or_default().to_string_lossy();
            println!(
                "{name:<56} {:<9} {:>10}  {:<20}  {}",
                e.kind,
                human(e.size),
                e.created_at,
                e.drill
            );
        }
    }
    if partial > 0 {
        println!(
            "note: {partial} unfinished file(s) from interrupted runs (.partial-*, .s3-download-*): safe to delete"
        );
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// The newest backup must verify by checksum before a lone prune.
pub fn verify_newest(dir: &Path) -> Result<()> {
    let (entries, _) = scan(dir)?;
    let Some(newest) = entries.first() else {
        bail!("no backups in {}: nothing to prune", dir.display());
    };
    let m = archive::read_manifest(&newest.path)?;
    let (size, sha) = archive::hash_file(&newest.path, &indicatif::ProgressBar::hidden())?;
    if size != m.size || sha != m.sha256 {
        bail!(
            "the newest backup {} does not match its manifest: take a new backup before pruning",
            newest.path.display()
        );
    }
    Ok(())
}

/// Which entries to delete: all but the newest `keep`, and never the newest drill-passed one.
pub fn to_remove(entries: &[Entry], keep: usize) -> Vec<&Entry> {
    let drilled = entries.iter().position(|e| e.drill == "passed");
    entries
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= keep.max(1) && Some(*i) != drilled)
        .map(|(_, e)| e)
        .collect()
}

pub fn prune(dir: &Path, keep: usize, runner: &Runner) -> Result<()> {
    let (entries, _) = scan(dir)?;
    for e in to_remove(&entries, keep) {
        let files = [
            e.path.clone(),
            archive::sha256_path(&e.path),
            archive::manifest_path(&e.path),
            archive::drill_path(&e.path),
        ];
        for f in files.iter().filter(|f| f.exists()) {
            if runner.dry_run {
                println!("rm {}", f.display());
            } else {
                fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
            }
        }
        if !runner.dry_run {
            println!("pruned {}", e.path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u32, drill: &str) -> Entry {
        Entry {
            path: format!("/b/{n}.dump").into(),
            kind: "postgres".into(),
            size: 1,
            created_at: format!("2026-12-0{n}"),
            drill: drill.into(),
        }
    }

    #[test]
    fn prune_keeps_newest_and_newest_drilled() {
        let entries = vec![
            entry(5, "none"),
            entry(4, "failed"),
            entry(3, "passed"),
            entry(2, "passed"),
            entry(1, "none"),
        ];
        let gone: Vec<_> = to_remove(&entries, 2)
            .iter()
            .map(|e| e.path.clone())
            .collect();
        assert_eq!(
            gone,
            [PathBuf::from("/b/2.dump"), PathBuf::from("/b/1.dump")]
        );
        // keep 0 still keeps the newest.
        assert_eq!(to_remove(&entries, 0).len(), 3);
    }
}
