//! Restore of a Postgres backup, after [`super`] verified the archive and the
//! user confirmed. The environment's writers (running services that depend
//! on or connect to Postgres, from the compose model) are stopped for the
//! whole restore and started again however it ends. A snapshot of the live
//! database's write counters is taken (and, with `--pre-backup`, a dump);
//! the archive is copied into the Postgres container and restored with
//! parallel `pg_restore -j N --exit-on-error` into a fresh database whose row
//! counts must equal the manifest's; only then is it swapped in by renaming.
//! Every step of the swap (block connections, terminate sessions, rename,
//! re-allow) is journalled first ([`recover`]), so an error, Ctrl-C, SIGTERM
//! or a kill -9 (on the next run) ends with the live database existing and
//! accepting connections. The previous database stays as
//! `<db>_before_restore_<stamp>`, the way back; tables written to after the
//! snapshot are named, and no DROP is offered for it then.

use std::{collections::BTreeMap, path::Path, time::Instant};

use anyhow::{bail, Context, Result};

use crate::{
    backups::{
        archive, postgres,
        recover::{self, Journal},
        volume::Restart,
    },
    database::{capture, Database, Location},
    process::Runner,
};

/// `schema.table|writes` (rows inserted, updated or deleted, as counted by
/// the statistics system) for every user table of the connected database.
const WRITES_SQL: &str = "SELECT format('%s.%s', schemaname, relname) || '|' || \
    (n_tup_ins + n_tup_upd + n_tup_del) FROM pg_stat_user_tables ORDER BY 1";

/// The running services of the database's compose project that write to it:
/// those that depend on `postgres` or name it in a connection variable.
pub fn writers(db: &Database, runner: &Runner) -> Result<Vec<String>> {
    let Location::Compose(_) = db.location else {
        return Ok(Vec::new());
    };
    let names = writer_services(&db.model);
    let sh = xshell::Shell::new()?;
    Ok(
        crate::engine::containers::list(&sh, runner, &db.project.name)?
            .into_iter()
            .filter(|c| c.is_running() && names.contains(&c.service))
            .map(|c| c.service)
            .fold(Vec::new(), |mut v, s| {
                if !v.contains(&s) {
                    v.push(s);
                }
                v
            }),
    )
}

/// The services of `model` that depend on or connect to Postgres.
pub fn writer_services(model: &crate::compose::Project) -> Vec<String> {
    let svc = crate::database::SERVICE;
    model
        .services()
        .iter()
        .filter(|s| s.name != svc)
        .filter(|s| {
            s.depends_on.iter().any(|(d, _)| d == svc)
                || s.environment.values().flatten().any(|v| {
                    v.contains(&format!("@{svc}:"))
                        || v.contains(&format!("@{svc}/"))
                        || v.contains(&format!("host={svc}"))
                })
        })
        .map(|s| s.name.clone())
        .collect()
}

/// Put the verified Postgres backup `path` back into `db`.
#[allow(clippy::too_many_arguments)]
pub fn restore(
    db: &Database,
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    dir: &Path,
    progress: bool,
    pre_backup: bool,
) -> Result<()> {
    recover::catch_interrupts();
    let started = Instant::now();
    // With the pid: two restores within one second get their own names.
    let stamp = format!(
        "{}_{}",
        archive::stamp(&crate::clock::rfc3339_now()).to_lowercase(),
        std::process::id()
    );
    let services = writers(db, runner)?;
    let mut j = Journal {
        kind: "postgres".into(),
        phase: String::new(),
        project: db.namespace.clone(),
        environment: db.environment.to_string(),
        live: db.name.clone(),
        fresh: format!("{}_restore_{stamp}", db.name),
        old: format!("{}_before_restore_{stamp}", db.name),
        stamp: stamp.clone(),
        pid: std::process::id(),
        services: services.clone(),
        container_file: None,
        image: None,
        overlay: None,
        at: String::new(),
        path: Journal::path_for(dir, &db.namespace, "postgres"),
        keep: false,
    };
    // Nothing is changed yet: an interruption here leaves no journal.
    j.step(runner, "stopping").inspect_err(|_| j.finish())?;
    // Started again when this guard drops: on success, error or Ctrl-C.
    let restart = match &db.location {
        Location::Compose(_) => {
            let compose = db.project.compose(&db.environment);
            match Restart::stop(compose, runner, services) {
                Ok(r) => Some(r),
                Err(e) => {
                    recover::start_services(runner, &db.project.compose(&db.environment), &j);
                    j.finish();
                    return Err(e.context("stopping the writers failed: nothing was touched"));
                }
            }
        }
        Location::Stack(_) => {
            eprintln!("note: the writers of stack {} keep running (scale them to 0 for the restore); writes they make during it are named below", db.namespace);
            None
        }
    };
    let result = phases(
        db, runner, path, manifest, dir, progress, pre_backup, &mut j,
    );
    match result {
        Ok(report) => {
            j.finish();
            drop(restart);
            if !runner.dry_run {
                println!(
                    "restored {} into database {} ({} tables, row counts match the manifest) in {:.1}s\n{report}",
                    path.display(),
                    db.name,
                    manifest.tables.len(),
                    started.elapsed().as_secs_f64(),
                );
            }
            Ok(())
        }
        Err(e) if runner.dry_run => Err(e),
        Err(e) => {
            match recover::recover_postgres(db, runner, &j) {
                Ok(line) => {
                    j.finish();
                    eprintln!("{line}");
                }
                Err(r) => eprintln!(
                    "error: putting database {} back failed: {r:#}; the journal {} stays, the next `cargo xtask restore` or `cargo xtask backup cleanup` recovers it",
                    db.name,
                    j.path.display()
                ),
            }
            drop(restart);
            Err(e.context(format!("restore of database {} failed", db.name)))
        }
    }
}

/// Snapshot, restore aside, swap; the report of a success.
#[allow(clippy::too_many_arguments)]
fn phases(
    db: &Database,
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    dir: &Path,
    progress: bool,
    pre_backup: bool,
    j: &mut Journal,
) -> Result<String> {
    let (live, fresh, old) = (j.live.clone(), j.fresh.clone(), j.old.clone());
    let pre = if pre_backup {
        postgres::backup(db, runner, dir, "-pre-restore", progress)
            .context("the pre-restore backup failed: nothing was touched")?
    } else {
        None
    };
    let snapshot = writes(db, runner, &live)?;
    j.container_file = Some(format!("/tmp/fog-restore-{}.dump", j.stamp));
    j.step(runner, "restoring")?;
    db.sql(
        runner,
        "postgres",
        &format!("CREATE DATABASE \"{fresh}\""),
        true,
    )?;
    restore_into(db, runner, path, manifest, j)?;
    j.container_file = None;
    j.step(runner, "blocking")?;
    let sql = |s: String| db.sql(runner, "postgres", &s, true);
    sql(format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS false"))?;
    j.step(runner, "terminating")?;
    terminate(db, runner, &live)?;
    j.step(runner, "renaming")?;
    sql(format!("BEGIN; ALTER DATABASE \"{live}\" RENAME TO \"{old}\"; ALTER DATABASE \"{fresh}\" RENAME TO \"{live}\"; COMMIT;"))?;
    j.step(runner, "allowing")?;
    sql(format!("ALTER DATABASE \"{old}\" ALLOW_CONNECTIONS true"))?;
    sql(format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS true"))?;
    if runner.dry_run {
        return Ok(String::new());
    }
    let later = written_since(&snapshot, &writes(db, runner, &old)?);
    let way_back = match &pre {
        Some(w) => format!("pre-restore backup: {}", w.path.display()),
        None => format!("no pre-restore dump was taken (the default): database {old} is the way back; pass --pre-backup for a file copy that survives losing the cluster"),
    };
    let aside = if later.is_empty() {
        format!("previous database kept as {old}; drop it when satisfied with: cargo xtask psql -- -d postgres -c 'DROP DATABASE \"{old}\"'")
    } else {
        format!(
            "warning: database {old} holds writes made after the pre-restore snapshot, which the restored database does not have: {}\ncopy what you need from it (cargo xtask psql -- -d {old}) before removing it",
            later.join(", ")
        )
    };
    Ok(format!("{way_back}\n{aside}"))
}

/// Per-table write counters of `database`.
fn writes(db: &Database, runner: &Runner, database: &str) -> Result<BTreeMap<String, i64>> {
    if runner.dry_run {
        return Ok(BTreeMap::new());
    }
    postgres::parse_counts(&db.sql(runner, database, WRITES_SQL, false)?)
}

/// Tables written to between the `before` and `after` counters, described.
fn written_since(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> Vec<String> {
    after
        .iter()
        .filter_map(|(t, n)| {
            let extra = n - before.get(t).copied().unwrap_or(0);
            (extra > 0).then(|| format!("{t} ({extra} rows inserted, updated or deleted)"))
        })
        .collect()
}

/// Close the sessions on `live` (its connections are blocked already).
fn terminate(db: &Database, runner: &Runner, live: &str) -> Result<()> {
    let others =
        format!("FROM pg_stat_activity WHERE datname = '{live}' AND pid <> pg_backend_pid()");
    db.sql(
        runner,
        "postgres",
        &format!("SELECT count(pg_terminate_backend(pid)) {others}"),
        true,
    )?;
    // Terminated backends take a moment to leave.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !runner.dry_run
        && db.sql(
            runner,
            "postgres",
            &format!("SELECT count(*) {others}"),
            false,
        )? != "0"
    {
        if Instant::now() > deadline {
            bail!("sessions on database {live} did not close within 30s");
        }
        recover::pause("terminating-wait")?;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Ok(())
}

/// Copy the archive into the container, `pg_restore -j N` it into the
/// fresh database (it must exist) and check its row counts.
fn restore_into(
    db: &Database,
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    j: &Journal,
) -> Result<()> {
    let inside = j.container_file.clone().expect("set by the caller");
    let jobs = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 8)
        .to_string();
    // Streamed in (decrypted on the way when the archive is `.age`): `-j`
    // needs a file, not a pipe. Written and read as the exec's own user.
    let copy_args = ["sh", "-c", "cat > \"$1\"", "sh", &inside].map(str::to_string);
    let copy = db.exec("-i", &copy_args);
    let args = [
        "pg_restore",
        "--exit-on-error",
        "--no-owner",
        "-j",
        &jobs,
        "-U",
        &db.user,
        "-d",
        &j.fresh,
        &inside,
    ]
    .map(str::to_string);
    let restore = db.exec("", &args);
    let rm = db.exec("", &["rm", "-f", &inside].map(str::to_string));
    if runner.dry_run {
        println!("{} < {}", copy.line(), path.display());
        for cmd in [&restore, &rm] {
            println!("{}", cmd.line());
        }
        return Ok(());
    }
    let restored = (|| {
        let file = crate::backups::encrypt::open(path)?;
        let bar = crate::backups::stream::bar(
            progress_enabled(),
            Some(manifest.size),
            &format!("copying {} into the Postgres container", manifest.file),
        );
        let copied = crate::backups::stream::into_child(runner, true, copy, file, &bar, true);
        bar.finish_and_clear();
        copied.context("copying the archive into the Postgres container")?;
        let bar = crate::backups::stream::bar(
            progress_enabled(),
            None,
            &format!("pg_restore -j {jobs} into {}", j.fresh),
        );
        let done = capture(
            runner,
            true,
            restore,
            &format!("pg_restore into {}", j.fresh),
        );
        bar.finish_and_clear();
        done
    })();
    let _ = capture(runner, true, rm, "removing the copied archive");
    restored?;
    recover::pause("restored")?;
    let counts = postgres::parse_counts(&db.sql(runner, &j.fresh, postgres::COUNT_SQL, false)?)?;
    let differ: Vec<String> = manifest
        .tables
        .iter()
        .filter(|(t, n)| counts.get(*t) != Some(n))
        .map(|(t, n)| {
            format!(
                "{t}: {} restored, manifest says {n}",
                counts.get(t).map_or("none".into(), |c| c.to_string())
            )
        })
        .collect();
    if !differ.is_empty() {
        bail!(
            "the restored data does not match the manifest: {}",
            differ.join("; ")
        );
    }
    Ok(())
}

fn progress_enabled() -> bool {
    crate::backups::progress()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_since_the_snapshot_are_named() {
        let before = BTreeMap::from([("public.a".to_string(), 5), ("public.b".to_string(), 1)]);
        let after = BTreeMap::from([
            ("public.a".to_string(), 5),
            ("public.b".to_string(), 251),
            ("public.c".to_string(), 2),
        ]);
        assert_eq!(
            written_since(&before, &after),
            [
                "public.b (250 rows inserted, updated or deleted)",
                "public.c (2 rows inserted, updated or deleted)"
            ]
        );
        assert!(written_since(&after, &after).is_empty());
    }

    #[test]
    fn the_writers_come_from_the_compose_model() {
        let env = crate::compose::EnvSource::from_pairs([
            ("POSTGRES_PASSWORD", "x"),
            ("GRAFANA_ADMIN_PASSWORD", "x"),
            ("GRAFANA_ADMIN_USER", "admin"),
        ]);
        let model = crate::selection::Selection::named("betanet".parse().unwrap(), &env)
            .load()
            .unwrap();
        let writers = writer_services(&model);
        for mixnode in ["mixnode-1", "mixnode-2", "mixnode-3"] {
            assert!(writers.iter().any(|w| w == mixnode), "{writers:?}");
        }
        assert!(
            !writers.iter().any(|w| w == "postgres" || w == "prometheus"),
            "{writers:?}"
        );
    }
}
