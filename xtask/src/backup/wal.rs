//! `backup wal [--to s3://BUCKET/PREFIX [--encrypt-to age1...]]`: the WAL
//! archive watched and shipped off the host. One run reads the archive
//! volume's finished files through one throwaway container (`tar` of the
//! names not yet in the shipping ledger, no network), gzips (and encrypts)
//! each into a private work folder, uploads it, reads it back and compares
//! sha256, uploads its `.sha256`, and only then records it in the ledger
//! ([`crate::wal_remote`]); nothing in the archive is ever removed here. A
//! run killed at any point re-ships the file in flight next time. Every run
//! writes the archive's node-exporter textfile (`pg_stat_archiver`'s last
//! success and failure, the segments still waiting to be archived); a
//! shipping run also writes the last shipment's time. `backup schedule
//! --wal` runs it every minute. [`prune_local`] and [`prune_remote`] tie
//! WAL retention to base backups: no segment a kept base backup needs goes,
//! and locally none that a shipping ledger does not list as verified.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{archive, encrypt, metrics};
use crate::process::{Cmd, Io};
use crate::{
    database::Database,
    output::Format,
    pitr,
    process::Runner,
    s3::Store,
    wal::{Archive, Segment},
    wal_remote::{self, Ledger, Shipped},
};

/// `pg_stat_archiver` and the segments waiting in `pg_wal/archive_status`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ArchiverStat {
    pub last_archived_wal: String,
    pub last_archived_epoch: f64,
    pub last_failed_wal: String,
    pub last_failed_epoch: f64,
    pub failed_count: u64,
    /// Finished segments not archived yet (`.ready`); `None` when the role
    /// may not list `pg_wal/archive_status`.
    pub ready: Option<u64>,
}

pub fn archiver_stat(db: &Database, runner: &Runner) -> Result<ArchiverStat> {
    let row = db.sql(
        runner,
        &db.name,
        "SELECT coalesce(last_archived_wal, ''), coalesce(extract(epoch FROM last_archived_time), 0), \
         coalesce(last_failed_wal, ''), coalesce(extract(epoch FROM last_failed_time), 0), failed_count \
         FROM pg_stat_archiver",
        false,
    )?;
    let f: Vec<&str> = row.trim().split('|').collect();
    if f.len() != 5 {
        bail!("unexpected pg_stat_archiver row `{row}`");
    }
    let ready = db
        .sql(
            runner,
            &db.name,
            "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
            false,
        )
        .ok()
        .and_then(|s| s.trim().parse().ok());
    Ok(ArchiverStat {
        last_archived_wal: f[0].into(),
        last_archived_epoch: f[1].parse().unwrap_or(0.0),
        last_failed_wal: f[2].into(),
        last_failed_epoch: f[3].parse().unwrap_or(0.0),
        failed_count: f[4].parse().unwrap_or(0),
        ready,
    })
}

fn labels(project: &str) -> String {
    format!(
        "project=\"{}\"",
        project.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

/// The archive's textfile (exposition format 0.0.4).
pub fn render_archive(project: &str, stat: &ArchiverStat, segments: usize) -> String {
    let l = labels(project);
    let mut gauges = vec![
        (
            "fog_wal_last_archived_timestamp_seconds",
            "Unix time Postgres last archived a WAL file (pg_stat_archiver; 0: never).",
            format!("{:.3}", stat.last_archived_epoch),
        ),
        (
            "fog_wal_last_failed_timestamp_seconds",
            "Unix time archive_command last failed (0: never).",
            format!("{:.3}", stat.last_failed_epoch),
        ),
        (
            "fog_wal_archive_segments",
            "WAL segments in the archive volume.",
            segments.to_string(),
        ),
    ];
    if let Some(r) = stat.ready {
        gauges.push((
            "fog_wal_ready_segments",
            "Finished WAL segments waiting to be archived (.ready).",
            r.to_string(),
        ));
    }
    gauges
        .into_iter()
        .map(|(name, help, value)| {
            format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {value}\n")
        })
        .collect()
}

/// The shipping textfile.
pub fn render_shipped(project: &str, at: f64, shipped: usize, unshipped: usize) -> String {
    let l = labels(project);
    [
        (
            "fog_wal_last_shipped_timestamp_seconds",
            "Unix time of the last `backup wal --to` run that shipped every archived file.",
            format!("{at:.3}"),
        ),
        (
            "fog_wal_shipped_files",
            "Archived WAL files whose upload was verified (the ledger).",
            shipped.to_string(),
        ),
        (
            "fog_wal_unshipped_files",
            "Archived WAL files not shipped yet.",
            unshipped.to_string(),
        ),
    ]
    .into_iter()
    .map(|(name, help, value)| {
        format!("# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{l}}} {value}\n")
    })
    .collect()
}

/// The archive volume of `db`'s container, or a usage error naming the fix.
pub fn archive_of(db: &Database, runner: &Runner) -> Result<Archive> {
    let (_, volume) = pitr::volumes(runner, &db.container)?;
    let Some(volume) = volume else {
        crate::usage_bail!(
            "the Postgres container of {} has no WAL archive volume (POSTGRES_WAL_ARCHIVE=on and this version's overlays add it)",
            db.describe()
        );
    };
    Ok(Archive {
        volume,
        image: db.image.clone(),
    })
}

/// A private work folder, removed on drop.
struct Work(PathBuf);

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Work folders of shipping runs that were killed (their process is gone).
fn remove_stale_work(dir: &Path) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for e in read.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(".wal-ship-") else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `backup wal`.
pub fn run(
    db: &Database,
    runner: &Runner,
    dir: &Path,
    store: Option<&Store>,
    format: Format,
) -> Result<()> {
    let archive = archive_of(db, runner)?;
    let names = archive.names(runner)?;
    let segments = names.iter().filter(|n| Segment::parse(n).is_some()).count();
    let stat = archiver_stat(db, runner)?;
    let mut shipped: Vec<(String, Shipped)> = Vec::new();
    let mut ledger_len = None;
    if let Some(base) = store {
        let wal_store = wal_remote::store(base, &db.namespace)?;
        let to = wal_store.location.to_string();
        let mut ledger = wal_remote::load_ledger(dir, &db.namespace)?
            .filter(|l| l.to == to)
            .unwrap_or_else(|| Ledger {
                to: to.clone(),
                ..Default::default()
            });
        let todo: Vec<&String> = names
            .iter()
            .filter(|n| !ledger.files.contains_key(*n))
            .collect();
        if runner.dry_run {
            for chunk in todo.chunks(32) {
                println!("{}", tar_cmd(&archive, chunk).line());
            }
            println!(
                "# each: gzip{}, upload to {to}/<NAME>.gz{} at {}, read back and compare sha256, upload <object>.sha256, record in {}",
                if encrypt::encrypting() { ", age-encrypt" } else { "" },
                if encrypt::encrypting() { ".age" } else { "" },
                wal_store.endpoint,
                wal_remote::ledger_path(dir, &db.namespace).display()
            );
            return Ok(());
        }
        archive::create_dir(dir)?;
        remove_stale_work(dir);
        let work = Work(dir.join(format!(".wal-ship-{}", std::process::id())));
        std::fs::create_dir_all(&work.0)
            .with_context(|| format!("creating {}", work.0.display()))?;
        for chunk in todo.chunks(32) {
            let mut cmd = tar_cmd(&archive, chunk);
            let line = cmd.line();
            let mut child =
                runner.spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Piped))?;
            let stdout = child.stdout.take().expect("piped");
            let result = (|| -> Result<()> {
                let mut tar = tar::Archive::new(stdout);
                for entry in tar.entries()? {
                    let mut entry = entry?;
                    let name = entry.path()?.to_string_lossy().into_owned();
                    if !crate::wal::is_archived_file(&name) {
                        bail!("`{line}` produced an unexpected entry `{name}`");
                    }
                    let object = wal_remote::object_name(&name, encrypt::encrypting());
                    let tmp = work.0.join(&object);
                    let (size, sha256, stored_size, stored_sha256) =
                        wal_remote::encode(&mut entry, &tmp)?;
                    wal_remote::upload(&wal_store, &tmp, &object, &stored_sha256)
                        .with_context(|| format!("shipping {name}; it stays in the archive"))?;
                    let _ = std::fs::remove_file(&tmp);
                    let s = Shipped {
                        object,
                        size,
                        sha256,
                        stored_size,
                        stored_sha256,
                    };
                    ledger.files.insert(name.clone(), s.clone());
                    wal_remote::save_ledger(dir, &db.namespace, &ledger)?;
                    shipped.push((name, s));
                    crate::interrupt::pause_point("wal-shipped-one");
                }
                Ok(())
            })();
            if result.is_err() {
                let _ = child.kill();
            }
            let out = child.wait_with_output()?;
            result?;
            if !out.status.success() {
                bail!(
                    "`{line}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        let missing = names
            .iter()
            .filter(|n| !ledger.files.contains_key(*n))
            .count();
        if missing > 0 {
            bail!("{missing} archived files were not shipped (they vanished from the archive while this run read it?); run `backup wal --to {}` again", base.location);
        }
        ledger_len = Some(ledger.files.len());
        metrics::write_text(
            &format!("fog_wal_{}_shipped.prom", metrics::file_part(&db.namespace)),
            &render_shipped(&db.namespace, metrics::now(), ledger.files.len(), missing),
        );
    }
    metrics::write_text(
        &format!("fog_wal_{}.prom", metrics::file_part(&db.namespace)),
        &render_archive(&db.namespace, &stat, segments),
    );
    let raw: u64 = shipped.iter().map(|(_, s)| s.size).sum();
    let stored: u64 = shipped.iter().map(|(_, s)| s.stored_size).sum();
    if format == Format::Json {
        let files: Vec<_> = shipped
            .iter()
            .map(|(n, s)| serde_json::json!({"name": n, "shipped": s}))
            .collect();
        println!(
            "{}",
            serde_json::json!({"volume": archive.volume, "segments": segments, "files": names.len(), "archiver": stat, "shipped": files, "ledger": ledger_len})
        );
        return Ok(());
    }
    println!(
        "WAL archive {}: {} files ({segments} segments), newest {}; last archived {} ({}), failures {}",
        archive.volume,
        names.len(),
        names
            .iter()
            .rfind(|n| Segment::parse(n).is_some())
            .map_or("none", String::as_str),
        if stat.last_archived_wal.is_empty() { "nothing" } else { &stat.last_archived_wal },
        if stat.last_archived_epoch > 0.0 { crate::wal::show_time(stat.last_archived_epoch) } else { "never".into() },
        stat.failed_count
    );
    if let (Some(base), Some(n)) = (store, ledger_len) {
        println!(
            "shipped {} files ({:.1} MB, stored as {:.2} MB) to {}; {n} verified there in all",
            shipped.len(),
            raw as f64 / 1e6,
            stored as f64 / 1e6,
            wal_remote::store(base, &db.namespace)?.location
        );
    }
    Ok(())
}

/// `tar` of `names` out of the archive volume (read-only, no network).
fn tar_cmd(archive: &Archive, names: &[&String]) -> Cmd {
    let mut cmd = Cmd::new("docker");
    let list: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
    cmd.args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/a:ro", archive.volume))
        .args([
            "--entrypoint",
            "tar",
            &archive.image,
            "-C",
            &format!("/a/{}", crate::wal::ARCHIVE_SUBDIR),
            "-cf",
            "-",
            "--",
        ])
        .args(list);
    cmd
}

/// The oldest start segment among `project`'s base backups in `dir`.
fn oldest_start(bases: &[(PathBuf, super::base::BaseInfo)]) -> Option<Segment> {
    bases
        .iter()
        .filter_map(|(_, i)| Segment::parse(&i.start_wal))
        .min_by_key(|s| s.number)
}

/// Which archived files go: segments (any timeline) before `keep_from`'s
/// number; never a history file.
pub fn prunable(names: &[String], keep_from: Segment) -> Vec<&String> {
    names
        .iter()
        .filter(|n| Segment::parse(n).is_some_and(|s| s.number < keep_from.number))
        .collect()
}

/// After `backup prune`: remove the archive's segments that no kept base
/// backup needs. With a shipping ledger, only segments it lists as verified
/// off the host go; the others stay (and are named).
pub fn prune_local(db: &Database, runner: &Runner, dir: &Path) -> Result<()> {
    let archive = match archive_of(db, runner) {
        Ok(a) => a,
        Err(_) => return Ok(()),
    };
    let bases = pitr::bases(dir, &db.namespace);
    let Some(start) = oldest_start(&bases) else {
        println!(
            "WAL archive {}: no base backup of {} kept, so no segment is pruned",
            archive.volume, db.namespace
        );
        return Ok(());
    };
    let names = archive.names(runner)?;
    let ledger = wal_remote::load_ledger(dir, &db.namespace)?;
    let mut gone = Vec::new();
    let mut unshipped = Vec::new();
    for n in prunable(&names, start) {
        match &ledger {
            Some(l) if !l.files.contains_key(n) => unshipped.push(n.as_str()),
            _ => gone.push(n.as_str()),
        }
    }
    if !unshipped.is_empty() {
        eprintln!(
            "warning: {} segments before {} are not shipped yet (first {}); they stay until `backup wal --to` has verified them",
            unshipped.len(),
            start.name(),
            unshipped[0]
        );
    }
    if gone.is_empty() {
        println!(
            "WAL archive {}: nothing before {} (the oldest kept base backup's start) to prune",
            archive.volume,
            start.name()
        );
        return Ok(());
    }
    for chunk in gone.chunks(200) {
        let script = format!(
            "cd /a/{} && rm -f -- {} && sync .",
            crate::wal::ARCHIVE_SUBDIR,
            chunk.join(" ")
        );
        let mut cmd = Cmd::new("docker");
        cmd.args(["run", "--rm", "--network", "none", "--user", "0:0", "-v"])
            .arg(format!("{}:/a", archive.volume))
            .args(["--entrypoint", "sh", &archive.image, "-c", &script]);
        crate::database::capture(runner, true, cmd, "pruning the WAL archive")?;
    }
    if runner.dry_run {
        println!(
            "would remove {} WAL segments before {} (the oldest kept base backup's start)",
            gone.len(),
            start.name()
        );
        return Ok(());
    }
    if let Some(mut l) = ledger {
        for n in &gone {
            l.files.remove(*n);
        }
        wal_remote::save_ledger(dir, &db.namespace, &l)?;
    }
    println!(
        "removed {} WAL segments ({} .. {}) from {}: before {}, the start of the oldest kept base backup",
        gone.len(),
        gone[0],
        gone[gone.len() - 1],
        archive.volume,
        start.name()
    );
    Ok(())
}

/// After `backup prune --from`: per project with a kept base backup in the
/// bucket, remove the shipped segments before the oldest one's start
/// (the `.sha256` first, so a half-removed segment no longer counts).
pub fn prune_remote(store: &Store, runner: &Runner) -> Result<()> {
    let entries = super::remote::scan(store)?;
    let mut oldest: std::collections::BTreeMap<String, Segment> = Default::default();
    for e in entries.iter().filter(|e| e.kind == "base") {
        let info: super::base::BaseInfo =
            serde_json::from_str(&store.read_small(&format!("{}.base.json", e.name))?)
                .with_context(|| format!("{}.base.json: not a base backup record", e.url))?;
        let Some(s) = Segment::parse(&info.start_wal) else {
            continue;
        };
        let slot = oldest.entry(e.project.clone()).or_insert(s);
        if s.number < slot.number {
            *slot = s;
        }
    }
    for (project, start) in oldest {
        let wal_store = wal_remote::store(store, &project)?;
        let shipped = wal_remote::list(&wal_store)?;
        let names: Vec<String> = shipped.keys().cloned().collect();
        let gone = prunable(&names, start);
        for n in &gone {
            let object = &shipped[*n];
            for o in [format!("{object}.sha256"), object.clone()] {
                if runner.dry_run {
                    println!("# delete {}", wal_store.location.url(&o));
                } else {
                    wal_store.delete(&o)?;
                }
            }
        }
        if !gone.is_empty() && !runner.dry_run {
            println!(
                "pruned {} WAL segments of {project} from {} (before {}, the start of the oldest kept base backup)",
                gone.len(),
                wal_store.location,
                start.name()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_what_the_oldest_base_needs_and_every_history_file() {
        let names: Vec<String> = [
            "000000010000000000000001",
            "000000010000000000000002",
            "000000010000000000000003",
            "00000002.history",
            "000000020000000000000003",
            "000000020000000000000004",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let start = Segment::parse("000000010000000000000003").unwrap();
        let gone: Vec<&str> = prunable(&names, start)
            .into_iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            gone,
            ["000000010000000000000001", "000000010000000000000002"]
        );
    }

    #[test]
    fn textfiles_render() {
        let stat = ArchiverStat {
            last_archived_epoch: 1_796_452_200.0,
            ready: Some(2),
            ..Default::default()
        };
        let text = render_archive("fog", &stat, 7);
        assert!(text
            .contains("fog_wal_last_archived_timestamp_seconds{project=\"fog\"} 1796452200.000\n"));
        assert!(text.contains("fog_wal_ready_segments{project=\"fog\"} 2\n"));
        assert!(text.contains("fog_wal_archive_segments{project=\"fog\"} 7\n"));
        let shipped = render_shipped("fog", 5.0, 3, 0);
        assert!(shipped.contains("fog_wal_unshipped_files{project=\"fog\"} 0\n"));
    }
}
