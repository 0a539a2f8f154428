//! `backup all`: what a user runs before an upgrade. The environment's
//! database (by pg_dump; its data volume is left out, since a file copy of a
//! running cluster is inconsistent) and every other named volume that exists, each as its own verified
//! backup, tied together by one set manifest `<project>-all-<stamp>.set.json`
//! (written atomically, last) that names each member with its kind, size and
//! sha256. `backup verify SET.set.json` verifies every member against it.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::{archive, postgres, verify, volume};
use crate::{database::Database, process::Runner, Global};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Set {
    /// `set`.
    pub kind: String,
    pub project: String,
    pub environment: String,
    pub created_at: String,
    pub tool: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Member {
    pub file: String,
    pub kind: String,
    pub size: u64,
    pub sha256: String,
}

/// Back up everything; the set file's path (`None` under `--dry-run`).
pub fn backup_all(
    sh: &Shell,
    runner: &Runner,
    global: &Global,
    dir: &Path,
    progress: bool,
) -> Result<Option<PathBuf>> {
    let db = Database::open(sh, runner, global, &crate::database::Target::default())?;
    if let crate::database::Location::Stack(stack) = &db.location {
        crate::usage_bail!(
            "backup all covers a compose project's volumes; stack {stack} is not one: back up its database with `cargo xtask backup postgres --stack {stack}`"
        );
    }
    let created_at = crate::clock::rfc3339_now();
    let mut written = Vec::new();
    written.extend(postgres::backup(&db, runner, dir, "", progress)?);
    let (_, _, model, volumes) = volume::volumes(global)?;
    // The database's own data directory is covered by pg_dump: a file copy of
    // a running cluster is not consistent.
    let pg_volumes: Vec<String> = model
        .service(crate::database::SERVICE)
        .map(|s| s.volumes.iter().filter_map(|m| m.source.clone()).collect())
        .unwrap_or_default();
    for (overlay, engine) in volumes {
        if pg_volumes.contains(&overlay) {
            continue;
        }
        if !volume::exists(sh, &engine) {
            eprintln!("note: volume {engine} does not exist yet; nothing to back up");
            continue;
        }
        written.extend(volume::backup(
            sh, runner, global, &overlay, dir, false, progress,
        )?);
    }
    if runner.dry_run {
        return Ok(None);
    }
    let set = Set {
        kind: "set".into(),
        project: db.namespace.clone(),
        environment: db.environment.to_string(),
        created_at: created_at.clone(),
        tool: archive::tool(),
        members: written
            .iter()
            .map(|w| Member {
                file: w.manifest.file.clone(),
                kind: w.manifest.kind.clone(),
                size: w.size,
                sha256: w.sha256.clone(),
            })
            .collect(),
    };
    let path = dir.join(format!(
        "{}-all-{}.set.json",
        db.namespace,
        archive::stamp(&created_at)
    ));
    let mut json = serde_json::to_string_pretty(&set)?;
    json.push('\n');
    archive::write_atomic(&path, json.as_bytes())?;
    Ok(Some(path))
}

/// Verify every member of a set against the set file.
pub fn verify_set(path: &Path, db: Option<&Database>, progress: bool) -> Result<Set> {
    let set: Set = serde_json::from_str(&archive::read_small(path)?)
        .with_context(|| format!("{}: not a backup set", path.display()))?;
    if set.kind != "set" || set.members.is_empty() {
        bail!("{}: not a backup set with members", path.display());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    for member in &set.members {
        let m = verify::verify(&dir.join(&member.file), db, progress).with_context(|| {
            format!("{}: member {} does not verify", path.display(), member.file)
        })?;
        if m.sha256 != member.sha256 || m.size != member.size {
            bail!(
                "{}: member {} is not the archive the set recorded (sha256 {} vs {})",
                path.display(),
                member.file,
                m.sha256,
                member.sha256
            );
        }
    }
    Ok(set)
}
