//! Point-in-time recovery facts shared by `backup base`, `backup verify
//! --wal` and `restore --to-time`: the Postgres container's data and WAL
//! archive volumes (from its mounts), this tool's base backups of a project
//! (with their `.base.json` records), what the archive can reach from each
//! base backup ([`Reach`]: the continuous run of segments, the first gap,
//! the newest commit time in the run).

use std::{path::Path, path::PathBuf};

use anyhow::{Context, Result};

use crate::process::Cmd;
use crate::{
    backups::{archive, base},
    database::capture,
    process::Runner,
    wal::{self, Archive, Segment},
};

/// `docker ARGS`, trimmed stdout; `mutating` ones are only printed under --dry-run.
pub fn docker(runner: &Runner, mutating: bool, args: &[&str]) -> Result<String> {
    let mut cmd = Cmd::new("docker");
    cmd.args(args);
    let what = format!("`{}`", cmd.line());
    capture(runner, mutating, cmd, &what).map(|s| s.trim().to_string())
}

/// The named volumes at the data directory and the WAL archive of `container`.
pub fn volumes(runner: &Runner, container: &str) -> Result<(String, Option<String>)> {
    let out = docker(
        runner,
        false,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Destination}}={{.Name}}\n{{end}}",
            container,
        ],
    )?;
    let find = |dest: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{dest}=")))
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    let data = find("/var/lib/postgresql/data")
        .context("the Postgres container has no named volume at /var/lib/postgresql/data")?;
    Ok((data, find(wal::ARCHIVE_MOUNT)))
}

/// This tool's base backups of `namespace` in `dir`, oldest first.
pub fn bases(dir: &Path, namespace: &str) -> Vec<(PathBuf, base::BaseInfo)> {
    records(dir, namespace, true)
}

/// [`bases`], from their records alone (`restore --from` downloads only the
/// archive it restores): with `need_archive` unset, a base backup counts
/// when its manifest and `.base.json` are there.
pub fn records(dir: &Path, namespace: &str, need_archive: bool) -> Vec<(PathBuf, base::BaseInfo)> {
    let mut out = Vec::new();
    let Ok(read) = std::fs::read_dir(dir) else {
        return out;
    };
    let prefix = format!("{namespace}-base-");
    for e in read.filter_map(|e| e.ok()) {
        let listed = e.file_name().to_string_lossy().into_owned();
        let name = if need_archive {
            listed
        } else {
            match listed.strip_suffix(".base.json") {
                Some(n) => n.to_string(),
                None => continue,
            }
        };
        let plain = name
            .strip_suffix(crate::backups::encrypt::SUFFIX)
            .unwrap_or(&name);
        if !name.starts_with(&prefix) || !plain.ends_with(".tar.gz") {
            continue;
        }
        let path = dir.join(&name);
        let (Ok(m), Ok(info)) = (archive::read_manifest(&path), base::read_info(&path)) else {
            continue;
        };
        if m.kind == "base" && m.file == name && m.project == namespace {
            out.push((path, info));
        }
    }
    out.sort_by(|a, b| a.1.stop_epoch.total_cmp(&b.1.stop_epoch));
    out
}

/// What the archive reaches from one base backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reach {
    pub base: String,
    /// The earliest reachable moment (the base backup's end).
    pub from: f64,
    /// The newest commit in the continuous run, if any.
    pub until: Option<f64>,
    /// The last segment of the continuous run.
    pub last_segment: Option<String>,
    /// The first missing segment of each gap after the run.
    pub gaps: Vec<String>,
    /// The run ends at the archive's newest segment of the timeline.
    pub to_newest: bool,
}

impl Reach {
    pub fn describe(&self) -> String {
        match self.until {
            Some(u) if u >= self.from => format!(
                "{} to {} (base {})",
                wal::show_time(self.from),
                wal::show_time(u),
                self.base
            ),
            _ => format!(
                "{} only (base {}; no later commit archived)",
                wal::show_time(self.from),
                self.base
            ),
        }
    }
}

pub fn reach(
    archive: &Archive,
    runner: &Runner,
    segments: &[Segment],
    info: &base::BaseInfo,
) -> Result<Reach> {
    let start = Segment::parse(&info.start_wal)
        .with_context(|| format!("{}: bad start segment {}", info.file, info.start_wal))?;
    let (run, gaps) = wal::runs(segments, start);
    let until = wal::last_commit(archive, runner, &run)?;
    Ok(Reach {
        base: info.file.clone(),
        from: info.stop_epoch,
        until,
        last_segment: run.last().map(Segment::name),
        to_newest: gaps.is_empty(),
        gaps: gaps.iter().map(Segment::name).collect(),
    })
}

/// `backup verify --wal`: from each base backup, is the archive continuous to
/// its newest segment? Gaps are named; exit 1 when any base backup's run
/// stops at a gap.
pub fn verify_wal(
    db: &crate::database::Database,
    runner: &Runner,
    dir: &Path,
    format: crate::output::Format,
) -> Result<()> {
    let (_, volume) = volumes(runner, &db.container)?;
    let Some(volume) = volume else {
        crate::usage_bail!(
            "the Postgres container of {} has no WAL archive volume (POSTGRES_WAL_ARCHIVE=on and this version's overlays add it)",
            db.describe()
        );
    };
    let archive = Archive {
        volume,
        image: db.image.clone(),
    };
    let segments = archive.segments(runner)?;
    let bases = bases(dir, &db.namespace);
    if bases.is_empty() {
        crate::usage_bail!(
            "no base backup of {} in {}: take one with `cargo xtask backup base`",
            db.namespace,
            dir.display()
        );
    }
    let mut reaches = Vec::new();
    for (_, info) in &bases {
        reaches.push(reach(&archive, runner, &segments, info)?);
    }
    if format == crate::output::Format::Json {
        println!(
            "{}",
            serde_json::json!({"volume": archive.volume, "segments": segments.len(), "newest": segments.last().map(Segment::name), "bases": reaches})
        );
    } else {
        println!(
            "WAL archive {}: {} segments, newest {}",
            archive.volume,
            segments.len(),
            segments.last().map_or("none".into(), Segment::name)
        );
        for r in &reaches {
            let status = if r.to_newest {
                "continuous to the newest segment".to_string()
            } else {
                format!("GAP: missing {}", r.gaps.join(", "))
            };
            println!("  {}: {status}; reachable {}", r.base, r.describe());
        }
    }
    if let Some(r) = reaches.iter().find(|r| !r.to_newest) {
        anyhow::bail!(
            "the WAL archive has a gap after base backup {}: segment {} is missing",
            r.base,
            r.gaps[0]
        );
    }
    Ok(())
}
