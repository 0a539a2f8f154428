//! The move itself, phase by phase, each recorded in the journal first:
//! stop the old services but Postgres (so their volumes hold still), take
//! the verified backup set, stop the old Postgres, create the environment's
//! networks and volumes (`--replace`: back up and recreate the ones holding
//! data), start the new Postgres and restore the dump into it with
//! ownership mapped to the new role, copy each other volume with a helper
//! container (`--network none`, source read-only) and check its entry count
//! and bytes, bring the environment up through the one bring-up path (its
//! migrations run on top), and check every table's rows against the
//! manifest. A failure after the first stop undoes everything
//! ([`super::journal::undo`]) and says so, and so does Ctrl-C or SIGTERM
//! (caught; the current phase ends, the next one does not start); the phase times are printed at the
//! end (`--format json`: one JSON line).

use std::{path::Path, time::Instant};

use anyhow::{bail, Context as _, Result};
use xshell::{cmd, Shell};

use super::{
    check::Findings,
    inspect,
    journal::{self, Journal},
    plan::How,
    set::{self, Set},
    Context, Format,
};
use crate::bringup::{self, UpArgs};
use crate::engine::{containers, health};
use crate::process::Runner;
use crate::Global;

/// Phase names and seconds.
type Phases = Vec<(&'static str, f64)>;

/// Run the move; on failure after the first stop, undo and report both.
pub fn run(
    sh: &Shell,
    global: &Global,
    runner: &Runner,
    ctx: &Context,
    findings: &Findings,
    up: &UpArgs,
    format: Format,
) -> Result<()> {
    let began = Instant::now();
    // Ctrl-C or SIGTERM: finish the current phase, then undo like any failure.
    crate::interrupt::catch("finishing the current phase, then bringing the old stack back");
    let mut journal = Journal {
        old_project: ctx.old_project.clone(),
        environment: ctx.environment.to_string(),
        env_file: ctx.project.env.path.clone(),
        new_project: ctx.project.name.clone(),
        ..Journal::default()
    };
    journal.record(&ctx.dir, "checked", runner.dry_run)?;
    let mut phases: Phases = Vec::new();
    match steps(
        sh,
        global,
        runner,
        ctx,
        findings,
        up,
        &mut journal,
        &mut phases,
    ) {
        Ok(set) => {
            journal.record(&ctx.dir, "done", runner.dry_run)?;
            phases.push(("total", began.elapsed().as_secs_f64()));
            print_done(ctx, &set, &phases, format)
        }
        Err(err) if journal.stopped.is_empty() => {
            journal.record(&ctx.dir, "failed", runner.dry_run)?;
            Err(err.context("adopt failed before stopping anything; nothing was changed"))
        }
        Err(err) => {
            eprintln!("adopt failed: {err:#}");
            eprintln!(
                "undoing: stopping {} (project {}), removing the volumes adopt created, starting the old containers of {}",
                ctx.environment, ctx.project.name, ctx.old_project
            );
            let undone = journal::undo(sh, runner, &journal, true);
            journal.record(&ctx.dir, "failed", runner.dry_run)?;
            match undone {
                Ok(()) => Err(err.context(format!(
                    "adopt failed and was undone: the old stack {} is running again with its volumes untouched{}",
                    ctx.old_project,
                    journal
                        .backup_set
                        .as_ref()
                        .map(|s| format!("; the backup set is kept in {}", s.display()))
                        .unwrap_or_default()
                ))),
                Err(undo) => Err(err.context(format!(
                    "adopt failed and undoing it failed too ({undo:#}): start the old containers with `docker start {}`",
                    journal.stopped.join(" ")
                ))),
            }
        }
    }
}

fn timed<T>(phases: &mut Phases, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    crate::interrupt::pause_point(name);
    if crate::interrupt::interrupted() {
        bail!("interrupted (Ctrl-C or SIGTERM) before phase {name}");
    }
    let began = Instant::now();
    eprintln!("adopt: {name} ...");
    let out = f();
    phases.push((name, began.elapsed().as_secs_f64()));
    out
}

#[allow(clippy::too_many_arguments)]
fn steps(
    sh: &Shell,
    global: &Global,
    runner: &Runner,
    ctx: &Context,
    findings: &Findings,
    up: &UpArgs,
    journal: &mut Journal,
    phases: &mut Phases,
) -> Result<Set> {
    let pg_id = findings.old_postgres.clone();
    // 1. Stop the old services but Postgres, so their volumes hold still.
    let others: Vec<String> = ctx
        .old_containers
        .iter()
        .filter(|c| c.is_running() && Some(&c.id) != pg_id.as_ref())
        .map(|c| c.id.clone())
        .collect();
    timed(phases, "stop-services", || {
        if !others.is_empty() {
            journal.stopped = others.clone();
            journal.record(&ctx.dir, "stopping", runner.dry_run)?;
            runner.run(cmd!(sh, "docker stop {others...}"))?;
        }
        Ok(())
    })?;
    // 2. The backup set.
    std::fs::create_dir_all(&ctx.dir)?;
    let mut set = Set::begin(&ctx.dir, &ctx.old_project)?;
    timed(phases, "backup-dump", || {
        if let (Some(pg), Some(id)) = (&ctx.plan.postgres, &pg_id) {
            set.dump(
                sh,
                runner,
                id,
                &pg.user,
                &pg.database,
                pg.password.as_deref(),
            )?;
        }
        Ok(())
    })?;
    // Counted again now that their services are stopped: the plan's figures
    // were taken while they ran.
    let mut source: std::collections::BTreeMap<String, inspect::Figures> = Default::default();
    timed(phases, "backup-volumes", || {
        for v in ctx.plan.volumes.iter().filter(|v| v.how == How::Copy) {
            let figures = inspect::figures(sh, runner, &ctx.helper, &v.old_name)?;
            source.insert(v.old_name.clone(), figures);
            set.volume(runner, &ctx.helper, &v.old_name, figures)?;
        }
        for name in &findings.replace {
            let figures = inspect::figures(sh, runner, &ctx.helper, name)?;
            set.volume(runner, &ctx.helper, name, figures)?;
        }
        Ok(())
    })?;
    let set = timed(phases, "backup-verify", || {
        let set = set.finish(sh, runner)?;
        eprintln!("adopt: backup set {}", set.dir.display());
        Ok(set)
    })?;
    journal.backup_set = Some(set.dir.clone());
    // 3. Stop the old Postgres.
    timed(phases, "stop-postgres", || {
        if let Some(id) = &pg_id {
            journal.stopped.push(id.clone());
            journal.record(&ctx.dir, "stopping", runner.dry_run)?;
            runner.run(cmd!(sh, "docker stop {id}"))?;
        }
        journal.record(&ctx.dir, "stopped", runner.dry_run)
    })?;
    // 4. Networks and volumes of the environment.
    let compose = ctx.project.compose(&ctx.environment);
    timed(phases, "create", || {
        if !findings.replace.is_empty() {
            runner.run(compose.cmd(sh, &["down", "--remove-orphans"]))?;
            for name in &findings.replace {
                runner.run(cmd!(sh, "docker volume rm {name}"))?;
            }
        }
        ctx.project.ensure_networks(sh, runner)?;
        // The volumes the environment's services mount (not every declared one:
        // dev's services mount `*_dev_data`, never base's names).
        let mut keys: Vec<String> = ctx
            .new_model
            .services()
            .iter()
            .filter(|s| s.profiles.is_empty())
            .flat_map(super::plan::named_mounts)
            .map(|(key, _)| key)
            .collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let name = super::plan::engine_volume_name(&ctx.new_model, &ctx.project.name, &key);
            if inspect::volume_exists(sh, runner, &name) {
                continue;
            }
            journal.created_volumes.push(name.clone());
            journal.record(&ctx.dir, "creating", runner.dry_run)?;
            let project = format!("com.docker.compose.project={}", ctx.project.name);
            let volume = format!("com.docker.compose.volume={key}");
            runner.run(cmd!(
                sh,
                "docker volume create --label {project} --label {volume} {name}"
            ))?;
        }
        Ok(())
    })?;
    // 5. The database.
    if let Some(dump) = &set.manifest.postgres {
        timed(phases, "restore", || {
            runner.run(compose.cmd(sh, &["up", "-d", "--renew-anon-volumes", "postgres"]))?;
            health::wait_ready(
                sh,
                runner,
                &ctx.project.name,
                &["postgres".to_string()],
                std::time::Duration::from_secs(up.timeout),
            )?;
            let id = containers::list(sh, runner, &ctx.project.name)?
                .into_iter()
                .find(|c| c.service == crate::database::SERVICE && c.is_running())
                .map(|c| c.id)
                .context("the new postgres container is not running")?;
            let file = set.dir.join(&dump.member.file);
            let inside = format!("{id}:/tmp/adopt.dump");
            runner.run(cmd!(sh, "docker cp {file} {inside}"))?;
            let (user, db) = (&ctx.new_user, &ctx.new_database);
            let role = format!("--role={user}");
            runner
                .read(cmd!(sh, "docker exec {id} pg_restore -l /tmp/adopt.dump"))
                .context("the dump does not list")?;
            let restored = runner.run(cmd!(
                sh,
                "docker exec {id} pg_restore --no-owner --no-privileges {role} -U {user} -d {db} --exit-on-error --single-transaction /tmp/adopt.dump"
            ));
            let _ = runner.run(cmd!(sh, "docker exec {id} rm -f /tmp/adopt.dump"));
            restored.context("pg_restore into the new database")?;
            journal.record(&ctx.dir, "restored", runner.dry_run)
        })?;
    }
    // 6. The other volumes.
    timed(phases, "copy", || {
        for v in ctx.plan.volumes.iter().filter(|v| v.how == How::Copy) {
            let from = format!("{}:/from:ro", v.old_name);
            let to = format!("{}:/to", v.new_name);
            let helper = &ctx.helper;
            runner.run(cmd!(
                sh,
                "docker run --rm --network none --user 0 --entrypoint cp -v {from} -v {to} {helper} -a /from/. /to/"
            ))?;
            let want = source[&v.old_name];
            let got = inspect::figures(sh, runner, helper, &v.new_name)?;
            if got != want {
                bail!(
                    "volume {} after the copy holds {} entries and {} bytes; {} holds {} and {}",
                    v.new_name,
                    got.entries,
                    got.bytes,
                    v.old_name,
                    want.entries,
                    want.bytes
                );
            }
            eprintln!(
                "adopt: {} -> {}: {} entries, {} bytes, equal",
                v.old_name, v.new_name, got.entries, got.bytes
            );
        }
        journal.record(&ctx.dir, "copied", runner.dry_run)
    })?;
    // 7. The environment, through the one bring-up path.
    timed(phases, "up", || {
        bringup::bring_up(
            sh,
            global,
            &ctx.environment,
            &UpArgs {
                skip_images: true,
                ..up.clone()
            },
        )
        .map(|_| ())
    })?;
    journal.record(&ctx.dir, "up", runner.dry_run)?;
    // 8. Every table's rows.
    if let Some(dump) = &set.manifest.postgres {
        timed(phases, "verify", || {
            let id = containers::list(sh, runner, &ctx.project.name)?
                .into_iter()
                .find(|c| c.service == crate::database::SERVICE && c.is_running())
                .map(|c| c.id)
                .context("the new postgres container is not running")?;
            let now = set::row_counts(sh, runner, &id, &ctx.new_user, &ctx.new_database, None)?;
            let mut wrong = Vec::new();
            for (table, rows) in &dump.rows {
                match now.get(table) {
                    Some(n) if n == rows => {}
                    other => wrong.push(format!(
                        "{table}: {} rows, the manifest says {rows}",
                        other.map_or("no table".into(), |n| n.to_string())
                    )),
                }
            }
            if !wrong.is_empty() {
                bail!("row counts differ after the restore: {}", wrong.join("; "));
            }
            eprintln!(
                "adopt: {} tables, {} rows, equal to the manifest",
                dump.rows.len(),
                dump.rows.values().sum::<u64>()
            );
            Ok(())
        })?;
    }
    Ok(set)
}

fn print_done(ctx: &Context, set: &Set, phases: &Phases, format: Format) -> Result<()> {
    let rows: u64 = set
        .manifest
        .postgres
        .as_ref()
        .map_or(0, |p| p.rows.values().sum());
    let bytes: u64 = set.manifest.volumes.iter().map(|v| v.figures.bytes).sum();
    match format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "adopted": ctx.old_project,
                "environment": ctx.environment.to_string(),
                "project": ctx.project.name,
                "backup_set": set.dir,
                "rows": rows,
                "volume_bytes": bytes,
                "phases": phases.iter().map(|(n, s)| (n.to_string(), (s * 1000.0).round() / 1000.0)).collect::<std::collections::BTreeMap<_, _>>(),
            })
        ),
        Format::Text => {
            println!(
                "\nAdopted {} into {} (project {}): {rows} rows and {} of files verified.",
                ctx.old_project,
                ctx.environment,
                ctx.project.name,
                super::render::size(bytes)
            );
            println!("Backup set: {}", set.dir.display());
            println!("Phase times:");
            for (name, secs) in phases {
                println!("  {name:<14} {secs:>8.1}s");
            }
            println!(
                "The old containers are stopped and kept with their volumes. The way back:\n  cargo xtask adopt --rollback --project {}{}",
                ctx.old_project,
                dir_flag(&ctx.dir)
            );
        }
    }
    Ok(())
}

fn dir_flag(dir: &Path) -> String {
    if dir == crate::project_root().join("backups") {
        String::new()
    } else {
        format!(" --dir {}", dir.display())
    }
}

/// `adopt --rollback --project NAME`.
pub fn rollback(sh: &Shell, runner: &Runner, dir: &Path, project: &str) -> Result<()> {
    let mut journal = Journal::read(dir, project)?;
    if matches!(journal.phase.as_str(), "rolled-back" | "failed") {
        crate::usage_bail!(
            "project {project} is not adopted (the journal says `{}`): nothing to roll back",
            journal.phase
        );
    }
    let finished = journal.phase == "done";
    eprintln!(
        "rolling back the adopt of {project} into {}: stopping project {}, starting {} old container(s)",
        journal.environment,
        journal.new_project,
        journal.stopped.len()
    );
    journal::undo(sh, runner, &journal, !finished)?;
    journal.record(dir, "rolled-back", runner.dry_run)?;
    println!(
        "Rolled back: {project} runs again; {} (project {}) is stopped{}.",
        journal.environment,
        journal.new_project,
        if finished {
            " with its volumes kept"
        } else {
            " and the volumes the unfinished adopt created are removed"
        }
    );
    Ok(())
}
