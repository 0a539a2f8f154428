//! `cargo xtask restore FILE [--yes]`: put a Postgres backup back without ever
//! losing the data in place. In order: verify checksum, manifest and listing
//! (refuse on any mismatch, before touching anything); ask for confirmation
//! (no terminal and no `--yes`: exit 2); take a pre-restore backup; restore
//! into a fresh database with `pg_restore --exit-on-error` and compare its row
//! counts with the manifest; only then swap it in by renaming (connections
//! to the old database are closed first). The old database is kept under a
//! `_before_restore_` name. On any failure the live database is untouched and
//! the error says where the pre-restore backup is.

use std::{
    fs::File,
    io::{BufRead, IsTerminal, Write},
    path::PathBuf,
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::{
    backup::{self, archive, postgres, stream, verify},
    process::Runner,
    psql::{Database, Target},
    usage_bail, Global,
};

#[derive(clap::Args)]
#[command(after_help = "\
The live database is replaced only after the backup restored completely into a
new database and its row counts match the manifest. The previous database stays
as <db>_before_restore_<stamp>; drop it when satisfied.

Examples:
  cargo xtask restore backups/fog-postgres-20261201T090000Z.dump
  cargo xtask restore backups/fog-postgres-20261201T090000Z.dump --yes
  cargo xtask restore backups/fog-prod-postgres-20261201T090000Z.dump --stack fog-prod --yes")]
pub struct Cmd {
    /// The backup archive (`.dump`) to restore.
    file: PathBuf,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Folder for the pre-restore backup [default: backups/ in the repository].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let path = backup::absolute(&self.file);
        let db = Database::open(sh, &runner, global, &self.target)?;
        let progress = backup::progress();
        let manifest = verify::verify(&path, Some(&db), progress)
            .context("refusing to restore: nothing was touched")?;
        if manifest.kind != "postgres" {
            bail!("{} is a {} backup: `restore` puts Postgres backups back; restore a volume by hand into a new volume (README, \"Without this tool\"), nothing was touched", path.display(), manifest.kind);
        }
        if !self.yes && !global.dry_run {
            confirm(&db, &manifest)?;
        }
        let dir = self
            .dir
            .as_deref()
            .map_or_else(|| crate::project_root().join("backups"), backup::absolute);
        let stamp = archive::stamp(&crate::images::build::rfc3339_now()).to_lowercase();
        let pre = postgres::backup(&db, &runner, &dir, "-pre-restore", progress)
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
        restore_into(&db, &runner, &path, &manifest, &fresh, progress).map_err(fail)?;
        swap(&db, &runner, &fresh, &old).map_err(fail)?;
        if !global.dry_run {
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
}

fn confirm(db: &Database, manifest: &archive::Manifest) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        usage_bail!(
            "restore replaces database {} of {}: pass --yes to confirm (no terminal to ask on)",
            db.name,
            db.describe()
        );
    }
    eprint!(
        "Replace database {} of {} with the backup of {} taken {}? [y/N] ",
        db.name,
        db.describe(),
        manifest.database,
        manifest.created_at
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes") {
        usage_bail!("restore cancelled: nothing was touched");
    }
    Ok(())
}

/// Restore into the new database `fresh` and check its row counts; drop it on failure.
fn restore_into(
    db: &Database,
    runner: &Runner,
    path: &std::path::Path,
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
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
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
