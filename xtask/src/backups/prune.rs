//! `backup list` and `backup prune`. A backup is ours only when its file
//! name is exactly the one this tool gives it (`<project>-postgres-<stamp>
//! [-pre-restore][-N].dump`, `<project>-volume-<name>-<stamp>.tar.gz`,
//! `<project>-all-<stamp>.set.json`) and its manifest (written by this tool)
//! agrees on project, kind and time; everything else in the folder is left
//! alone. Prune acts on one project, and within it on each kind on its own:
//! the database, each volume by name, and sets, with the policy of
//! [`retention`] (`--keep-last/daily/weekly/monthly`). A kept set keeps all
//! its members; a pruned set's members go only when their own kind's policy
//! lets them go and no kept set names them. It runs after a successful
//! backup, or on its own once each kind's newest backup verifies.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::{
    archive,
    drill::Drill,
    retention::{self, Candidate, Policy},
    set::Set,
};
use crate::{output::Format, process::Runner};

/// One backup found in the folder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    pub path: PathBuf,
    /// `postgres`, `volume` or `set`.
    pub kind: String,
    pub project: String,
    /// What prune groups by: `database`, `base`, `volume NAME` or `set`.
    pub group: String,
    pub size: u64,
    pub created_at: String,
    /// `passed`, `failed` or `none`.
    pub drill: String,
    /// A set's member files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// Whether `name` is exactly what this tool names a backup of `kind` for
/// `project` (and volume `service`) taken at `stamp`.
pub fn our_name(name: &str, project: &str, kind: &str, service: &str, stamp: &str) -> bool {
    match kind {
        "postgres" => {
            let Some(rest) = name
                .strip_prefix(&format!("{project}-postgres-{stamp}"))
                .and_then(|r| r.strip_suffix(".dump"))
            else {
                return false;
            };
            let rest = rest.strip_prefix("-pre-restore").unwrap_or(rest);
            rest.is_empty()
                || rest.strip_prefix('-').is_some_and(|n| {
                    !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && !n.starts_with('0')
                })
        }
        "volume" => {
            !service.is_empty() && name == format!("{project}-volume-{service}-{stamp}.tar.gz")
        }
        "set" => name == format!("{project}-all-{stamp}.set.json"),
        "base" => name == format!("{project}-base-{stamp}.tar.gz"),
        _ => false,
    }
}

fn drill_of(path: &Path) -> &'static str {
    match archive::read_small(&archive::drill_path(path))
        .ok()
        .and_then(|t| serde_json::from_str::<Drill>(&t).ok())
    {
        Some(d) if d.passed => "passed",
        Some(_) => "failed",
        None => "none",
    }
}

/// What prune groups a backup of `kind` by (`service`: a volume's overlay
/// name): `database`, `base`, `volume NAME` or `set`. The same in a folder
/// and in a bucket.
pub fn group_of(kind: &str, service: &str) -> String {
    match kind {
        "postgres" => "database".to_string(),
        // Base backups for point-in-time recovery: a kind of their own, so a
        // policy for dumps never removes them.
        "base" => "base".to_string(),
        "set" => "set".to_string(),
        _ => format!("volume {service}"),
    }
}

/// Whether an archive named `name` (plain or `.age`) with this manifest is
/// one this tool wrote: the tool, the file and the strict name agree.
pub fn ours(name: &str, m: &archive::Manifest) -> bool {
    let plain = name.strip_suffix(super::encrypt::SUFFIX).unwrap_or(name);
    if !(plain.ends_with(".dump") || plain.ends_with(".tar.gz")) {
        return false;
    }
    if retention::parse_time(&m.created_at).is_none() {
        return false;
    }
    let stamp = archive::stamp(&m.created_at);
    m.tool.starts_with("xtask ")
        && m.file == name
        && our_name(plain, &m.project, &m.kind, &m.service, &stamp)
}

/// Whether a set file named `name` is one this tool wrote.
pub fn our_set(name: &str, set: &Set) -> bool {
    retention::parse_time(&set.created_at).is_some()
        && set.kind == "set"
        && set.tool.starts_with("xtask ")
        && our_name(
            name,
            &set.project,
            "set",
            "",
            &archive::stamp(&set.created_at),
        )
}

/// One file of the folder as a backup of ours, or `None`.
fn read_entry(path: &Path, name: &str) -> Option<Entry> {
    if name.starts_with('.') || name.contains(".partial-") {
        return None;
    }
    if name.ends_with(".set.json") {
        let set: Set = serde_json::from_str(&archive::read_small(path).ok()?).ok()?;
        if !our_set(name, &set) {
            return None;
        }
        return Some(Entry {
            path: path.to_path_buf(),
            kind: "set".into(),
            project: set.project,
            group: "set".into(),
            size: set.members.iter().map(|m| m.size).sum(),
            created_at: set.created_at,
            drill: "none".into(),
            members: set.members.into_iter().map(|m| m.file).collect(),
        });
    }
    // An encrypted archive is named like a plain one plus `.age`.
    let plain = name.strip_suffix(super::encrypt::SUFFIX).unwrap_or(name);
    if !(plain.ends_with(".dump") || plain.ends_with(".tar.gz")) {
        return None;
    }
    let m = archive::read_manifest(path).ok()?;
    if !ours(name, &m) {
        return None;
    }
    let group = group_of(&m.kind, &m.service);
    Some(Entry {
        path: path.to_path_buf(),
        drill: drill_of(path).into(),
        kind: m.kind,
        project: m.project,
        group,
        size: m.size,
        created_at: m.created_at,
        members: Vec::new(),
    })
}

/// This tool's backups and sets in `dir`, newest first, and the count of
/// leftovers (`.partial` files of interrupted runs).
pub fn scan(dir: &Path) -> Result<(Vec<Entry>, usize)> {
    let mut out = Vec::new();
    let mut partial = 0;
    let Ok(read) = fs::read_dir(dir) else {
        return Ok((out, 0));
    };
    for entry in read.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        // An interrupted run: a half-written file, a `restore s3://` or
        // `restore --from` download folder, a `backup wal` work folder.
        if name.contains(".partial-")
            || name.starts_with(".s3-download-")
            || name.starts_with(".pitr-fetch-")
            || name.starts_with(".wal-ship-")
        {
            partial += 1;
            continue;
        }
        out.extend(read_entry(&entry.path(), &name));
    }
    out.sort_by(|a, b| {
        archive::newest_first(
            (&a.created_at, &a.path.to_string_lossy()),
            (&b.created_at, &b.path.to_string_lossy()),
        )
    });
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
            "note: {partial} unfinished file(s) from interrupted runs (.partial-*, .s3-download-*, .pitr-fetch-*, .wal-ship-*): safe to delete"
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

/// What prune decided for one backup.
#[derive(Debug, serde::Serialize)]
pub struct Decision {
    pub path: PathBuf,
    pub group: String,
    pub created_at: String,
    /// Why it is kept; empty: it goes.
    pub keep: Vec<String>,
}

/// The decisions for `project`'s backups among `entries` (others' are not
/// looked at), newest first within each kind.
pub fn plan(entries: &[Entry], project: &str, policy: Policy) -> Vec<Decision> {
    let ours: Vec<&Entry> = entries.iter().filter(|e| e.project == project).collect();
    let mut groups: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
    for e in &ours {
        groups.entry(e.group.as_str()).or_default().push(e);
    }
    let mut decisions = Vec::new();
    for members in groups.values() {
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|e| Candidate {
                at: retention::parse_time(&e.created_at).expect("scan parsed it"),
                drilled: e.drill == "passed",
            })
            .collect();
        let reasons = retention::decide(&candidates, policy);
        let mut rows: Vec<Decision> = members
            .iter()
            .zip(reasons)
            .map(|(e, keep)| Decision {
                path: e.path.clone(),
                group: e.group.clone(),
                created_at: e.created_at.clone(),
                keep,
            })
            .collect();
        rows.sort_by(|a, b| {
            archive::newest_first(
                (&a.created_at, &a.path.to_string_lossy()),
                (&b.created_at, &b.path.to_string_lossy()),
            )
        });
        decisions.extend(rows);
    }
    // A kept set keeps every member whole.
    let kept_sets: Vec<(String, &Entry)> = ours
        .iter()
        .filter(|e| e.kind == "set")
        .filter(|e| {
            decisions
                .iter()
                .any(|d| d.path == e.path && !d.keep.is_empty())
        })
        .map(|e| (file_name(&e.path), *e))
        .collect();
    for d in decisions.iter_mut() {
        let name = file_name(&d.path);
        for (set, e) in &kept_sets {
            if e.members.contains(&name) {
                d.keep.push(format!("member of kept set {set}"));
            }
        }
    }
    decisions
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Each kind's newest backup of `project` must verify by checksum before a
/// lone prune removes anything of that kind.
pub fn verify_newest(dir: &Path, decisions: &[Decision]) -> Result<()> {
    let groups: BTreeSet<&str> = decisions
        .iter()
        .filter(|d| d.keep.is_empty() && d.group != "set")
        .map(|d| d.group.as_str())
        .collect();
    for group in groups {
        let Some(newest) = decisions.iter().find(|d| d.group == group) else {
            continue;
        };
        let m = archive::read_manifest(&newest.path)?;
        let (size, sha) = archive::hash_file(&newest.path, &indicatif::ProgressBar::hidden())?;
        if size != m.size || sha != m.sha256 {
            bail!(
                "the newest {group} backup {} does not match its manifest: take a new backup before pruning {} (nothing was removed)",
                newest.path.display(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Prune `project`'s backups in `dir` by `policy`; `verify` first checks
/// each kind's newest backup (a lone prune). Under `--dry-run` it lists
/// what would go and why each other backup is kept.
pub fn prune(
    dir: &Path,
    project: &str,
    policy: Policy,
    verify: bool,
    runner: &Runner,
    format: Format,
) -> Result<()> {
    let (entries, _) = scan(dir)?;
    let decisions = plan(&entries, project, policy);
    act(dir, project, policy, verify, runner, format, decisions)
}

/// `backup postgres --keep N`: only the database kind of `project` (sets
/// still keep their members).
pub fn prune_database(dir: &Path, project: &str, policy: Policy, runner: &Runner) -> Result<()> {
    let (entries, _) = scan(dir)?;
    let mut decisions = plan(&entries, project, policy);
    decisions.retain(|d| d.group == "database");
    act(
        dir,
        project,
        policy,
        false,
        runner,
        Format::Table,
        decisions,
    )
}

fn act(
    dir: &Path,
    project: &str,
    policy: Policy,
    verify: bool,
    runner: &Runner,
    format: Format,
    decisions: Vec<Decision>,
) -> Result<()> {
    if decisions.is_empty() {
        println!("no backups of project {project} in {}", dir.display());
        return Ok(());
    }
    if verify {
        verify_newest(dir, &decisions)?;
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"dir": dir, "project": project, "dry_run": runner.dry_run, "backups": decisions})
        );
    }
    for d in &decisions {
        let name = file_name(&d.path);
        if !d.keep.is_empty() {
            if format != Format::Json {
                println!("keep   {name} ({})", d.keep.join(", "));
            }
            continue;
        }
        let why = format!("no rule of {} keeps it", policy.describe());
        if runner.dry_run {
            if format != Format::Json {
                println!("would remove {name} ({why})");
            }
            continue;
        }
        let files = [
            d.path.clone(),
            archive::sha256_path(&d.path),
            archive::manifest_path(&d.path),
            archive::drill_path(&d.path),
            super::base::info_path(&d.path),
        ];
        // The archive (or set file) first: a half-pruned backup is then not listed.
        for f in files.iter().filter(|f| f.exists()) {
            fs::remove_file(f).with_context(|| format!("removing {}", f.display()))?;
        }
        if format != Format::Json {
            println!("removed {name} ({why})");
        }
    }
    archive::fsync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(project: &str, group: &str, day: u32, drill: &str) -> Entry {
        let kind = match group {
            "set" => "set",
            "database" => "postgres",
            _ => "volume",
        };
        Entry {
            path: format!("/b/{project}-{group}-{day}").into(),
            kind: kind.into(),
            project: project.into(),
            group: group.into(),
            size: 1,
            created_at: format!("2026-12-{day:02}T09:00:00Z"),
            drill: drill.into(),
            members: Vec::new(),
        }
    }

    fn gone(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep.is_empty())
            .map(|d| file_name(&d.path))
            .collect()
    }

    const LAST1: Policy = Policy {
        last: 1,
        daily: 0,
        weekly: 0,
        monthly: 0,
    };

    #[test]
    fn each_kind_and_project_on_its_own() {
        let entries = vec![
            entry("fog", "volume grafana_data", 3, "none"),
            entry("fog", "database", 2, "none"),
            entry("fog", "database", 1, "none"),
            entry("other", "database", 4, "none"),
            entry("other", "database", 3, "none"),
        ];
        let d = plan(&entries, "fog", LAST1);
        // The only volume backup does not push out the newest database backup.
        assert_eq!(gone(&d), ["fog-database-1"]);
        assert!(d
            .iter()
            .all(|d| !d.path.to_string_lossy().contains("other")));
    }

    #[test]
    fn drilled_backups_and_sets_are_kept_whole() {
        let mut set_new = entry("fog", "set", 5, "none");
        set_new.members = vec!["fog-database-5".into(), "fog-volume a-5".into()];
        let mut set_old = entry("fog", "set", 2, "none");
        set_old.members = vec!["fog-database-2".into(), "fog-volume a-2".into()];
        let entries = vec![
            set_new,
            entry("fog", "database", 6, "none"),
            entry("fog", "database", 5, "none"),
            entry("fog", "volume a", 5, "none"),
            entry("fog", "database", 3, "passed"),
            set_old,
            entry("fog", "database", 2, "none"),
            entry("fog", "volume a", 2, "none"),
        ];
        let d = plan(&entries, "fog", LAST1);
        // The newest set keeps its members although newer backups exist;
        // the old set goes with the members no kept set names; the newest
        // drilled backup stays.
        let mut g = gone(&d);
        g.sort();
        assert_eq!(g, ["fog-database-2", "fog-set-2", "fog-volume a-2"]);
        let member = d
            .iter()
            .find(|d| file_name(&d.path) == "fog-database-5")
            .unwrap();
        assert_eq!(member.keep, ["member of kept set fog-set-5"]);
        let drilled = d
            .iter()
            .find(|d| file_name(&d.path) == "fog-database-3")
            .unwrap();
        assert_eq!(drilled.keep, ["newest passed drill"]);
        // Keeping two sets keeps the old set's members too.
        let two_sets = Policy {
            last: 2,
            ..Policy::default()
        };
        assert!(gone(&plan(&entries, "fog", two_sets)).is_empty());
    }

    #[test]
    fn names_are_parsed_strictly() {
        let s = "20261201T090000Z";
        assert!(our_name(
            "fog-postgres-20261201T090000Z.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(our_name(
            "fog-postgres-20261201T090000Z-2.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(our_name(
            "fog-postgres-20261201T090000Z-pre-restore-3.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(our_name(
            "fog-base-20261201T090000Z.tar.gz",
            "fog",
            "base",
            "postgres",
            s
        ));
        assert!(!our_name(
            "fog-base-20261201T090000Z-2.tar.gz",
            "fog",
            "base",
            "postgres",
            s
        ));
        // Another project whose name starts like ours, edits and copies.
        assert!(!our_name(
            "fog-x-postgres-20261201T090000Z.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(!our_name(
            "fog-postgres-20261201T090000Z.dump",
            "fog-x",
            "postgres",
            "",
            s
        ));
        assert!(!our_name(
            "fog-postgres-20261201T090000Z-copy.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(!our_name(
            "fog-postgres-20261201T090000Z-02.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(!our_name(
            "fog-postgres-20261202T090000Z.dump",
            "fog",
            "postgres",
            "",
            s
        ));
        assert!(our_name(
            "fog-volume-grafana_data-20261201T090000Z.tar.gz",
            "fog",
            "volume",
            "grafana_data",
            s
        ));
        assert!(!our_name(
            "fog-volume-grafana_data-20261201T090000Z.tar.gz",
            "fog",
            "volume",
            "grafana",
            s
        ));
        assert!(our_name(
            "fog-all-20261201T090000Z.set.json",
            "fog",
            "set",
            "",
            s
        ));
        assert!(!our_name(
            "fog-all-20261201T090000Z.set.json",
            "fo",
            "set",
            "",
            s
        ));
    }
}
