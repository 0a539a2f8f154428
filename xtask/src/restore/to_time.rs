//! `restore --to-time T | --to-lsn L | --latest`: point-in-time recovery of a
//! compose project's Postgres from a base backup (`backup base`) and the WAL
//! archive volume (or, with `--from s3://...`, from the bucket that `backup
//! base --to` and `backup wal --to` fill: [`super::from_s3`] downloads and
//! checks the base backup and the WAL first). In order: finish or roll back a journalled swap an earlier
//! run left, and remove its leftovers; refuse (exit 2, naming the reachable
//! span) a target before the oldest base backup, after the newest archived
//! commit or beyond a gap in the archive; `pg_switch_wal()` on the live
//! server and wait until the segment is archived; extract the newest base
//! backup before the target into a fresh volume with `recovery.signal`,
//! `restore_command` and the target; let a throwaway Postgres (no network,
//! the environment's image, nothing archived) replay and promote; check it
//! (row counts, amcheck in a rolled-back transaction); only then stop the live
//! Postgres and swap the data in under a journal
//! (`<backups>/.pitr-<project>.journal.json`, written before each step): the
//! live data is copied aside to `<volume>_before_pitr_<stamp>` first, and a
//! run killed midway is rolled back by the next.

use std::{
    path::{Path, PathBuf},
    time::Duration,
    time::Instant,
};

use anyhow::{bail, Context, Result};

use crate::process::Cmd;
use crate::{
    backups::{archive, base, postgres::COUNT_SQL, remote::RemoteArgs, stream},
    database::{Database, Location},
    interrupt::pause_point,
    pitr::{self, docker},
    process::Runner,
    usage_bail,
    wal::{self, Archive, Lsn},
};

/// What to recover to.
#[derive(Debug, Clone)]
pub enum Goal {
    Time(String, f64),
    Lsn(Lsn),
    Latest,
}

impl Goal {
    pub fn parse(time: Option<&str>, lsn: Option<&str>, latest: bool) -> Result<Option<Goal>> {
        Ok(match (time, lsn, latest) {
            (Some(t), None, false) => {
                let Some(epoch) = wal::parse_time(t) else {
                    usage_bail!(
                        "--to-time `{t}`: expected 'YYYY-MM-DD HH:MM:SS[+TZ]' (UTC without a zone)"
                    );
                };
                if !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " :+-.".contains(c))
                {
                    usage_bail!("--to-time `{t}`: unexpected characters");
                }
                Some(Goal::Time(t.trim().to_string(), epoch))
            }
            (None, Some(l), false) => match Lsn::parse(l) {
                Some(l) => Some(Goal::Lsn(l)),
                None => usage_bail!("--to-lsn `{l}`: expected an LSN such as 0/3000060"),
            },
            (None, None, true) => Some(Goal::Latest),
            (None, None, false) => None,
            _ => usage_bail!("give one of --to-time, --to-lsn and --latest"),
        })
    }

    fn settings(&self) -> String {
        match self {
            Goal::Time(t, _) => format!("recovery_target_time = '{t}'\n"),
            Goal::Lsn(l) => format!("recovery_target_lsn = '{l}'\n"),
            Goal::Latest => String::new(),
        }
    }
}

/// The swap's journal: written before each step, removed when done.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal {
    phase: String,
    container: String,
    live: String,
    aside: String,
    recovered: String,
    image: String,
}

/// The newest base backup that ends before the target.
pub(super) fn choose<'a>(
    bases: &'a [(PathBuf, base::BaseInfo)],
    goal: &Goal,
) -> Option<&'a (PathBuf, base::BaseInfo)> {
    match goal {
        Goal::Time(_, t) => bases.iter().rev().find(|(_, i)| i.stop_epoch <= *t),
        Goal::Lsn(l) => bases
            .iter()
            .rev()
            .find(|(_, i)| Lsn::parse(&i.stop_lsn).is_some_and(|s| s <= *l)),
        Goal::Latest => bases.last(),
    }
}

pub fn run(
    db: &Database,
    runner: &Runner,
    goal: Goal,
    dir: &Path,
    yes: bool,
    from: Option<(&str, &RemoteArgs)>,
) -> Result<()> {
    if matches!(db.location, Location::Stack(_)) {
        usage_bail!("restore --to-time works on a compose project's Postgres, not on stack {}; nothing was touched", db.namespace);
    }
    let journal_path = dir.join(format!(".pitr-{}.journal.json", db.namespace));
    wait_live(db, runner)?;
    cleanup_leftovers(runner, &db.namespace)?;
    let stamp = archive::stamp(&crate::clock::rfc3339_now()).to_lowercase();
    let (live, local_archive) = pitr::volumes(runner, &db.container)?;
    let fetched;
    let (archive_volume, bases_dir) = match from {
        None => {
            let Some(archive_volume) = local_archive else {
                usage_bail!("the Postgres container of {} has no WAL archive volume: restart it with this version's overlays and POSTGRES_WAL_ARCHIVE=on; nothing was touched", db.describe());
            };
            let mode = db.sql(runner, &db.name, "SHOW archive_mode", false)?;
            if mode != "on" && mode != "always" {
                usage_bail!("WAL archiving is off in {} (archive_mode={mode}): set POSTGRES_WAL_ARCHIVE=on in .env and run `cargo xtask up`; nothing was touched", db.describe());
            }
            if pitr::bases(dir, &db.namespace).is_empty() {
                usage_bail!(
                    "no base backup of {} in {}: take one with `cargo xtask backup base`; nothing was touched",
                    db.namespace,
                    dir.display()
                );
            }
            switch_wal(db, runner)?;
            (archive_volume, dir.to_path_buf())
        }
        Some((url, args)) => {
            if runner.dry_run {
                println!("# download the manifests and .base.json of {}'s base backups in {url}, the newest base before the target (checked: .sha256, manifest, pg_verifybackup) and every shipped WAL file from its start segment (each checked against its .sha256, decrypted with --identity, gunzipped) into a scratch volume {live}_pitr_wal_{stamp}; then replay as below", db.namespace);
                return Ok(());
            }
            fetched = super::from_s3::fetch(runner, db, url, args, dir, &goal, &live, &stamp)?;
            (fetched.volume.clone(), fetched.dir.clone())
        }
    };
    let bases = pitr::records(&bases_dir, &db.namespace, from.is_none());
    let archive = Archive {
        volume: archive_volume.clone(),
        image: db.image.clone(),
    };
    let segments = archive.segments(runner)?;
    let Some((base_path, info)) = choose(&bases, &goal) else {
        let oldest = &bases[0].1;
        usage_bail!(
            "the target is before the oldest base backup ({}, which ends at {} / LSN {}): the earliest reachable moment is {}; nothing was touched",
            oldest.file,
            oldest.stop_time,
            oldest.stop_lsn,
            oldest.stop_time
        );
    };
    // An encrypted base backup needs --identity, and the right one: checked
    // (the age header opened) before anything is touched.
    drop(crate::backups::encrypt::open(base_path)?);
    let reach = pitr::reach(&archive, runner, &segments, info)?;
    let refuse = |what: &str| -> Result<()> {
        let gap = reach.gaps.first().map_or(String::new(), |g| {
            format!(" (segment {g} is missing from the archive)")
        });
        usage_bail!(
            "the target is {what}{gap}: reachable from {}; nothing was touched",
            reach.describe()
        )
    };
    match &goal {
        Goal::Time(_, t) => {
            if reach.until.is_none_or(|u| *t > u) {
                refuse(if reach.to_newest {
                    "after the newest archived WAL"
                } else {
                    "inside a gap in the WAL archive"
                })?;
            }
        }
        Goal::Lsn(l) => {
            let end = reach
                .last_segment
                .as_deref()
                .and_then(wal::Segment::parse)
                .map_or(0, |s| (s.number + 1) << 24);
            if l.0 >= end {
                refuse(if reach.to_newest {
                    "after the newest archived WAL"
                } else {
                    "inside a gap in the WAL archive"
                })?;
            }
        }
        Goal::Latest => {
            if !reach.to_newest {
                eprintln!(
                    "warning: the archive has a gap after {}: recovering up to it",
                    reach.last_segment.as_deref().unwrap_or("the base backup")
                );
            }
        }
    }
    if !yes && !runner.dry_run {
        crate::confirm::or_cancel(
            "restore",
            &format!(
                "Replace the data of {} (volume {live}) with base backup {} replayed to {goal:?}?",
                db.describe(),
                info.file
            ),
        )?;
    }
    let recovered = format!("{live}_pitr_{stamp}");
    let aside = format!("{live}_before_pitr_{stamp}");
    if runner.dry_run {
        println!("docker volume create {recovered}\n# extract {} into it, add recovery.signal and: restore_command = 'cp {}/{}/%f %p' {}recovery_target_action = 'promote'", base_path.display(), wal::RECOVERY_MOUNT, wal::ARCHIVE_SUBDIR, goal.settings().replace('\n', " "));
        println!("docker run -d --network none -v {recovered}:/var/lib/postgresql/data -v {archive_volume}:{}:ro {} postgres -c archive_command=false", wal::RECOVERY_MOUNT, db.image);
        println!("# verify row counts and amcheck, docker stop {}, copy {live} aside into {aside}, copy {recovered} in, docker start {}", db.container, db.container);
        return Ok(());
    }
    let started = Instant::now();
    let label = format!("dev.fog-compute.pitr={}", db.namespace);
    docker(
        runner,
        true,
        &["volume", "create", "--label", &label, &recovered],
    )?;
    eprintln!("extracting {} into {recovered}", info.file);
    fill(runner, base_path, &recovered, &db.image, &goal)?;
    pause_point("extracted");
    let replay = replay(runner, db, &recovered, &archive_volume, &stamp)?;
    eprintln!(
        "replayed and promoted in {:.1}s: {} tables, amcheck {}",
        started.elapsed().as_secs_f64(),
        replay.0.lines().count(),
        replay.1
    );
    pause_point("verified");
    let mut journal = Journal {
        phase: "stopping".into(),
        container: db.container.clone(),
        live: live.clone(),
        aside: aside.clone(),
        recovered: recovered.clone(),
        image: db.image.clone(),
    };
    swap(runner, &journal_path, &mut journal)?;
    wait_live(db, runner)?;
    println!(
        "recovered {} to {} from {} in {:.1}s; row counts:\n{}\nthe previous data is kept in volume {aside} (docker volume rm it when satisfied)",
        db.describe(),
        match &goal {
            Goal::Time(t, _) => t.clone(),
            Goal::Lsn(l) => format!("LSN {l}"),
            Goal::Latest => "the newest archived WAL".into(),
        },
        info.file,
        started.elapsed().as_secs_f64(),
        replay.0.replace('|', ": ")
    );
    Ok(())
}

/// Close the current segment and wait (up to 60 s) until it is archived.
fn switch_wal(db: &Database, runner: &Runner) -> Result<()> {
    if runner.dry_run {
        println!("# SELECT pg_switch_wal() on {}, then wait until pg_stat_archiver shows the segment archived", db.describe());
        return Ok(());
    }
    let seg = db.sql(
        runner,
        &db.name,
        "SELECT pg_walfile_name(pg_switch_wal())",
        false,
    )?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = db.sql(
            runner,
            &db.name,
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
            false,
        )?;
        if last.as_str() >= seg.as_str() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("segment {seg} was not archived within 60 s (last archived: `{last}`): check `cargo xtask logs postgres` for archive_command errors; nothing was touched");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Extract the base backup into `volume` and configure recovery.
fn fill(runner: &Runner, base: &Path, volume: &str, image: &str, goal: &Goal) -> Result<()> {
    let mut lines = vec![format!(
        "restore_command = 'cp {}/{}/%f %p'",
        wal::RECOVERY_MOUNT,
        wal::ARCHIVE_SUBDIR
    )];
    lines.extend(goal.settings().lines().map(str::to_string));
    lines.push("recovery_target_action = 'promote'".into());
    // The target's characters are checked in Goal::parse: no `"`, `$` or backquote.
    let conf: String = lines
        .iter()
        .map(|l| format!("echo \"{l}\" >> $d/postgresql.auto.conf; "))
        .collect();
    let script = format!(
        "set -e; d=/var/lib/postgresql/data; tar -xzf - -C $d; rm -f $d/postmaster.pid; \
         sed -i -e '/^restore_command/d' -e '/^recovery_target/d' $d/postgresql.auto.conf; {conf}\
         touch $d/recovery.signal; chown -R postgres:postgres $d; chmod 0700 $d"
    );
    let mut cmd = Cmd::new("docker");
    cmd.args([
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--user",
        "0:0",
        "-v",
    ])
    .arg(format!("{volume}:/var/lib/postgresql/data"))
    .args(["--entrypoint", "sh", image, "-c", &script]);
    let file =
        std::io::BufReader::with_capacity(archive::CHUNK, crate::backups::encrypt::open(base)?);
    stream::into_child(
        runner,
        true,
        cmd,
        file,
        &indicatif::ProgressBar::hidden(),
        true,
    )
    .context("extracting the base backup")
    .map(|_| ())
}

/// Run the throwaway server on `volume` until it has promoted; check it;
/// stop it cleanly. Returns the row counts and the amcheck result.
fn replay(
    runner: &Runner,
    db: &Database,
    volume: &str,
    archive: &str,
    stamp: &str,
) -> Result<(String, String)> {
    let name = format!("{}-pitr-{stamp}", db.namespace);
    let label = format!("dev.fog-compute.pitr={}", db.namespace);
    docker(
        runner,
        true,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--label",
            &label,
            "-v",
            &format!("{volume}:/var/lib/postgresql/data"),
            "-v",
            &format!("{archive}:{}:ro", wal::RECOVERY_MOUNT),
            "--entrypoint",
            "sh",
            &db.image,
            "-c",
            // Its log on stdout, so that a failure can quote it. Archiving
            // on with a failing command: the new timeline's history file and
            // segments stay `.ready` and the live server archives them once
            // the data is swapped in; nothing reaches the archive from here.
            "exec docker-entrypoint.sh postgres -c archive_mode=on -c archive_command=false -c listen_addresses= 2>&1",
        ],
    )?;
    let result = (|| {
        let psql = |sql: &str| {
            docker(
                runner,
                false,
                &[
                    "exec",
                    "-u",
                    "postgres",
                    &name,
                    "psql",
                    "-X",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-U",
                    &db.user,
                    "-d",
                    &db.name,
                    "-c",
                    sql,
                ],
            )
        };
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            if psql("SELECT pg_is_in_recovery()").is_ok_and(|s| s == "f") {
                break;
            }
            let state = docker(
                runner,
                false,
                &["inspect", "--format", "{{.State.Status}}", &name],
            )?;
            if state != "running" || Instant::now() > deadline {
                let logs =
                    docker(runner, false, &["logs", "--tail", "15", &name]).unwrap_or_default();
                bail!("the recovery server {name} did not promote ({state}); the live database is untouched: {}", logs.trim());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let counts = psql(COUNT_SQL)?;
        let amcheck = match psql(
            "BEGIN; CREATE EXTENSION IF NOT EXISTS amcheck; \
             SELECT count(bt_index_check(c.oid)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             JOIN pg_am a ON a.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.amname = 'btree' AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast'); ROLLBACK;",
        ) {
            Ok(out) => format!(
                "passed on {} indexes",
                out.lines().rfind(|l| l.parse::<u64>().is_ok()).unwrap_or("0")
            ),
            Err(e) if e.to_string().contains("amcheck") && e.to_string().contains("not available") => {
                "not available in the image".to_string()
            }
            Err(e) => bail!("amcheck failed on the recovered data; the live database is untouched: {e:#}"),
        };
        docker(runner, true, &["stop", "-t", "120", &name])?;
        Ok((counts, amcheck))
    })();
    let _ = docker(runner, true, &["rm", "-f", &name]);
    result
}

fn write_journal(path: &Path, j: &Journal) -> Result<()> {
    archive::create_dir(path.parent().unwrap_or(Path::new(".")))?;
    archive::write_atomic(path, serde_json::to_string_pretty(j)?.as_bytes())
}

/// One root helper container with the three volumes, running `script`.
fn helper(runner: &Runner, j: &Journal, script: &str) -> Result<()> {
    docker(
        runner,
        true,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0:0",
            "-v",
            &format!("{}:/live", j.live),
            "-v",
            &format!("{}:/aside", j.aside),
            "-v",
            &format!("{}:/new", j.recovered),
            "--entrypoint",
            "sh",
            &j.image,
            "-c",
            script,
        ],
    )
    .map(|_| ())
}

/// Stop the live server, copy its data aside, copy the recovered data in,
/// start it; the journal names each step before it runs.
fn swap(runner: &Runner, path: &Path, j: &mut Journal) -> Result<()> {
    let step = |phase: &str, j: &mut Journal| -> Result<()> {
        j.phase = phase.into();
        write_journal(path, j)?;
        pause_point(phase);
        Ok(())
    };
    step("stopping", j)?;
    docker(runner, true, &["stop", "-t", "120", &j.container])?;
    step("copy-aside", j)?;
    helper(runner, j, "set -e; cp -a /live/. /aside/; sync")?;
    step("copy-in", j)?;
    helper(
        runner,
        j,
        "set -e; find /live -mindepth 1 -delete; cp -a /new/. /live/; sync",
    )?;
    step("starting", j)?;
    docker(runner, true, &["start", &j.container])?;
    let _ = docker(runner, true, &["volume", "rm", &j.recovered]);
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    archive::fsync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Finish or roll back every swap a killed run left in `dir` (before the
/// database is looked for: a run killed midway leaves its Postgres stopped).
pub fn resume_all(runner: &Runner, dir: &Path) -> Result<()> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in read.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".pitr-") && name.ends_with(".journal.json") {
            resume(runner, &e.path())?;
        }
    }
    Ok(())
}

/// Finish or roll back the swap a killed run left behind.
fn resume(runner: &Runner, path: &Path) -> Result<()> {
    let Ok(text) = archive::read_small(path) else {
        return Ok(());
    };
    let j: Journal = serde_json::from_str(&text)
        .with_context(|| format!("{}: unreadable journal of an earlier restore --to-time; inspect it and remove it by hand", path.display()))?;
    if runner.dry_run {
        println!("# an earlier restore --to-time stopped at `{}` ({}): it would be finished or rolled back first", j.phase, path.display());
        return Ok(());
    }
    eprintln!(
        "an earlier restore --to-time stopped at `{}`: {}",
        j.phase,
        path.display()
    );
    match j.phase.as_str() {
        "stopping" | "copy-aside" => {
            let _ = docker(runner, true, &["volume", "rm", &j.aside]);
            eprintln!("rolled back: the live data in {} was never touched", j.live);
        }
        "copy-in" => {
            helper(
                runner,
                &j,
                "set -e; find /live -mindepth 1 -delete; cp -a /aside/. /live/; sync",
            )?;
            eprintln!(
                "rolled back: {} holds its previous data again (copied back from {})",
                j.live, j.aside
            );
        }
        _ => eprintln!(
            "the recovered data was copied in completely; the previous data is in {}",
            j.aside
        ),
    }
    docker(runner, true, &["start", &j.container])?;
    let _ = docker(runner, true, &["volume", "rm", &j.recovered]);
    std::fs::remove_file(path)?;
    Ok(())
}

/// Containers and scratch volumes of earlier runs killed before the swap.
fn cleanup_leftovers(runner: &Runner, namespace: &str) -> Result<()> {
    let filter = format!("label=dev.fog-compute.pitr={namespace}");
    let containers = docker(runner, false, &["ps", "-aq", "--filter", &filter])?;
    for c in containers.lines().filter(|l| !l.is_empty()) {
        docker(runner, true, &["rm", "-f", c])?;
        eprintln!("removed container {c} left by an interrupted restore --to-time");
    }
    let volumes = docker(runner, false, &["volume", "ls", "-q", "--filter", &filter])?;
    for v in volumes.lines().filter(|l| l.contains("_pitr_")) {
        docker(runner, true, &["volume", "rm", v])?;
        eprintln!("removed volume {v} left by an interrupted restore --to-time");
    }
    Ok(())
}

fn wait_live(db: &Database, runner: &Runner) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while db.sql(runner, &db.name, "SELECT 1", false).is_err() {
        if Instant::now() > deadline {
            bail!("the recovered Postgres of {} did not accept connections within 180 s: see `cargo xtask logs postgres`", db.describe());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Ok(())
}
