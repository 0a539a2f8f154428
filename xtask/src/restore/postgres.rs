//! Restore of a Postgres backup: after [`super`] verified the archive and the
//! user confirmed, take a pre-restore backup, restore into a fresh database
//! with `pg_restore --exit-on-error` and compare its row counts with the
//! manifest; only then swap it in by renaming (connections to the old
//! database are closed first). The old database is kept under a
//! `_before_restore_` name. On any failure the live database is untouched and
//! the error says where the pre-restore backup is.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::{
    backup::{archive, postgres, stream},
    process::Runner,
    psql::Database,
};

/// Put the verified Postgres backup `path` back into `db`.
pub fn restore(
    db: &Database,
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    dir: &Path,
    progress: bool,
) -> Result<()> {
    let stamp = archive::stamp(&crate::images::build::rfc3339_now()).to_lowercase();
    let pre = postgres::backup(db, runner, dir, "-pre-restore", progress)
        .context("the pre-restore backup failed: nothing was touched")?;
    let pre_path = pre
        .as_ref()
        .map_or_else(|| dir.join("<pre-restore backup>"), |w| w.path.clone());
    let fresh = format!("{}_restore_{stamp}", db.name);
    let old = format!("{}_before_restore_{stamp}", db.name);
    let fail = |e: anyhow::Error| {
        e.context(format!(
            "restore failed; database {} is untouched and the pre-restore backup is {}",
            db.name,
            pre_path.display()
        ))
    };
    restore_into(db, runner, path, manifest, &fresh, progress).map_err(fail)?;
    swap(db, runner, &fresh, &old).map_err(fail)?;
    if !runner.dry_run {
        println!(
            "restored {} into database {} ({} tables, row counts match the manifest)\npre-restore backup: {}\nprevious database kept as {old}; drop it with: cargo xtask psql -- -d postgres -c 'DROP DATABASE \"{old}\"'",
            path.display(),
            db.name,
            manifest.tables.len(),
            pre_path.display()
        );
    }
    Ok(())
}

/// Restore into the new database `fresh` and check its row counts; drop it on failure.
fn restore_into(
    db: &Database,
    runner: &Runner,
    path: &Path,
    manifest: &archive::Manifest,
    fresh: &str,
    progress: bool,
) -> Result<()> {
    db.sql(
        runner,
        "postgres",
        &format!("CREATE DATABASE \"{fresh}\""),
        true,
    )?;
    let args: Vec<String> = [
        "pg_restore",
        "--exit-on-error",
        "--no-owner",
        "-U",
        &db.user,
        "-d",
        fresh,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cmd = db.exec("-i", &args);
    if runner.dry_run {
        println!("{} < {}", crate::psql::render(&cmd), path.display());
        return Ok(());
    }
    let result = (|| {
        let file = crate::backup::encrypt::open(path)?;
        let bar = stream::bar(
            progress,
            Some(manifest.size),
            &format!("pg_restore into {fresh}"),
        );
        let restored = stream::into_child(runner, true, cmd, file, &bar, true);
        bar.finish_and_clear();
        restored?;
        let counts = postgres::parse_counts(&db.sql(runner, fresh, postgres::COUNT_SQL, false)?)?;
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
    })();
    if result.is_err() {
        let _ = db.sql(
            runner,
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{fresh}\" WITH (FORCE)"),
            true,
        );
    }
    result
}

/// Close connections to the live database and rename: live -> old, fresh -> live.
fn swap(db: &Database, runner: &Runner, fresh: &str, old: &str) -> Result<()> {
    let live = &db.name;
    let block = format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS false");
    db.sql(runner, "postgres", &block, true)?;
    let renamed = (|| {
        let others =
            format!("FROM pg_stat_activity WHERE datname = '{live}' AND pid <> pg_backend_pid()");
        db.sql(
            runner,
            "postgres",
            &format!("SELECT count(pg_terminate_backend(pid)) {others}"),
            true,
        )?;
        // Terminated backends take a moment to leave.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !runner.dry_run
            && db.sql(
                runner,
                "postgres",
                &format!("SELECT count(*) {others}"),
                false,
            )? != "0"
        {
            if std::time::Instant::now() > deadline {
                bail!("sessions on database {live} did not close within 30s");
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        db.sql(
            runner,
            "postgres",
            &format!("BEGIN; ALTER DATABASE \"{live}\" RENAME TO \"{old}\"; ALTER DATABASE \"{fresh}\" RENAME TO \"{live}\"; COMMIT;"),
            true,
        )
    })();
    if let Err(e) = renamed {
        let _ = db.sql(
            runner,
            "postgres",
            &format!("ALTER DATABASE \"{live}\" ALLOW_CONNECTIONS true"),
            true,
        );
        let _ = db.sql(
            runner,
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{fresh}\" WITH (FORCE)"),
            true,
        );
        return Err(e.context("swapping the restored database in"));
    }
    Ok(())
}
