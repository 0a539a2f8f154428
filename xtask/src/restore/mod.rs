//! `cargo xtask restore FILE [--yes]`: put a backup back without ever losing
//! the data in place. In order: verify checksum, manifest and listing (refuse
//! on any mismatch, before touching anything); ask for confirmation (no
//! terminal and no `--yes`: exit 2); finish or undo what an earlier,
//! interrupted restore of the project left (its journal, see
//! [`crate::backups::recover`]); restore aside (a fresh database, or a fresh
//! volume) and check it against the manifest; only then swap it in, keeping
//! the previous data under a `_before_restore_` name. [`postgres`] and
//! [`volume`] hold the two kinds; on any failure or interruption the live
//! data stays in place (or the swap is finished) and the output says which.

mod from_s3;
mod postgres;
mod to_time;
mod volume;

use std::path::PathBuf;

use anyhow::{Context, Result};
use xshell::Shell;

use crate::{
    backups::{self, verify},
    database::{Database, Target},
    process::Runner,
    usage_bail, Global,
};

#[derive(clap::Args)]
#[command(after_help = "\
The live data is replaced only after the backup restored completely aside and
matches its manifest (row counts for a database, the entry count for a volume).
The previous data stays as <db>_before_restore_<stamp> (a database) or
<volume>_before_restore_<stamp> (a volume): the way back; drop it when
satisfied (`cargo xtask backup cleanup`). The services that write to the
database (or use the volume) are stopped for the restore and always started
again. Each step of the swap is journalled in the backup folder: after Ctrl-C,
SIGTERM or a kill, the next restore (or `backup cleanup`) finishes or undoes
it, and the live database always accepts connections again. Tables written to
after the pre-restore snapshot are named. A database restore takes no
separate pre-restore dump unless --pre-backup (the previous database kept
aside is the way back; the dump also survives losing the cluster).

Examples:
  cargo xtask restore backups/fog-postgres-20261201T090000Z.dump
  cargo xtask restore backups/fog-postgres-20261201T090000Z.dump --yes
  cargo xtask restore backups/fog-postgres-20261201T090000Z.dump --yes --pre-backup
  cargo xtask restore backups/fog-prod-postgres-20261201T090000Z.dump --stack fog-prod --yes
  cargo xtask restore backups/fog-volume-grafana_data-20261201T090000Z.tar.gz --yes
  cargo xtask restore s3://fog-backups/prod/fog-postgres-20261201T090000Z.dump --endpoint https://s3.example.net --yes
  cargo xtask restore --to-time '2026-12-01 09:30:00+01' --yes   (point in time: `backup base` + WAL archive)
  cargo xtask restore --to-lsn 0/3000060 --yes
  cargo xtask restore --latest --yes
  cargo xtask restore --to-time '2026-12-01 09:30:00' --from s3://fog-backups/prod --endpoint https://s3.example.net --yes")]
pub struct Cmd {
    /// The backup archive (`.dump` or a volume's `.tar.gz`) to restore, or
    /// `s3://BUCKET/PREFIX/FILE` (downloaded and checked first).
    #[arg(required_unless_present_any = ["to_time", "to_lsn", "latest"], conflicts_with_all = ["to_time", "to_lsn", "latest"])]
    file: Option<PathBuf>,
    /// Point-in-time recovery to this moment: 'YYYY-MM-DD HH:MM:SS[+TZ]' (UTC without a zone).
    #[arg(long, value_name = "TIME", conflicts_with_all = ["to_lsn", "latest"])]
    to_time: Option<String>,
    /// Point-in-time recovery to this LSN (e.g. 0/3000060).
    #[arg(long, value_name = "LSN", conflicts_with = "latest")]
    to_lsn: Option<String>,
    /// Point-in-time recovery to the newest archived WAL.
    #[arg(long)]
    latest: bool,
    /// Point-in-time recovery from the bucket that `backup base --to` and
    /// `backup wal --to` fill: the base backup and the WAL are downloaded and
    /// checked first (with --to-time, --to-lsn or --latest).
    #[arg(long, value_name = "s3://BUCKET/PREFIX", conflicts_with = "file")]
    from: Option<String>,
    #[command(flatten)]
    remote: backups::remote::RemoteArgs,
    /// The age identity (secret key) file of an encrypted (`.age`) backup.
    #[arg(long, value_name = "FILE")]
    identity: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Also dump the database before restoring (a file copy of the previous
    /// state that survives losing the cluster; slower). Volumes always get one.
    #[arg(long)]
    pre_backup: bool,
    /// Folder for the pre-restore backup and the restore journal [default: backups/ in the repository].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[command(flatten)]
    target: Target,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let dir = self
            .dir
            .as_deref()
            .map_or_else(|| crate::project_root().join("backups"), crate::absolute);
        if let Some(goal) =
            to_time::Goal::parse(self.to_time.as_deref(), self.to_lsn.as_deref(), self.latest)?
        {
            to_time::resume_all(&runner, &dir)?;
            if let Some(identity) = &self.identity {
                backups::encrypt::set_identity(identity)?;
            }
            let db = Database::open(sh, &runner, global, &self.target)?;
            let from = self.from.as_deref().map(|url| (url, &self.remote));
            return to_time::run(&db, &runner, goal, &dir, self.yes, from);
        }
        if self.from.is_some() {
            usage_bail!("--from s3://... is for point-in-time recovery: add --to-time, --to-lsn or --latest (a single backup is restored with `restore s3://BUCKET/PREFIX/FILE`)");
        }
        let file = self.file.expect("clap requires FILE");
        let progress = backups::progress();
        if let Some(identity) = &self.identity {
            backups::encrypt::set_identity(identity)?;
        }
        // A bucket's copy is downloaded next to the backups and removed after.
        let downloaded = match file.to_str().filter(|f| f.starts_with("s3://")) {
            Some(url) => Some(
                backups::remote::download(url, &self.remote, &dir)
                    .context("refusing to restore: nothing was touched")?,
            ),
            None => None,
        };
        let path = downloaded
            .as_ref()
            .map_or_else(|| crate::absolute(&file), |d| d.path.clone());
        if path.to_string_lossy().ends_with(".set.json") {
            usage_bail!("{} is a backup set: restore its members one at a time (`cargo xtask backup verify {}` lists them verified), nothing was touched", path.display(), path.display());
        }
        // A volume restore needs no running database; a Postgres one does.
        let db = Database::open(sh, &runner, global, &self.target);
        // No separate full read: pg_restore --exit-on-error reads every byte
        // into a new database before anything is swapped.
        let manifest = verify::verify_with(&path, db.as_ref().ok(), progress, false)
            .context("refusing to restore: nothing was touched")?;
        match manifest.kind.as_str() {
            "postgres" => {
                let db = db?;
                if !self.yes && !global.dry_run {
                    crate::confirm::or_cancel(
                        "restore",
                        &format!(
                            "Replace database {} of {} with the backup of {} taken {}?",
                            db.name,
                            db.describe(),
                            manifest.database,
                            manifest.created_at
                        ),
                    )?;
                }
                backups::leftovers::recover_pending(&runner, &dir, Some(&db), &db.namespace)?;
                postgres::restore(
                    &db,
                    &runner,
                    &path,
                    &manifest,
                    &dir,
                    progress,
                    self.pre_backup,
                )
            }
            "volume" => {
                if let Some(stack) = &self.target.stack {
                    usage_bail!("{} is a volume backup: volumes are restored into a compose project only, not into stack {stack} (its volumes live on the nodes that run its tasks); nothing was touched", path.display());
                }
                let target = volume::Target::open(sh, global, &path, &manifest)?;
                backups::leftovers::recover_pending(
                    &runner,
                    &dir,
                    db.as_ref().ok(),
                    &target.project.name,
                )?;
                if !self.yes && !global.dry_run {
                    crate::confirm::or_cancel("restore", &format!(
                        "Replace the contents of volume {} of project {} with the backup of {} taken {}?",
                        target.live, target.project.name, manifest.database, manifest.created_at
                    ))?;
                }
                target.restore(sh, &runner, global, &path, &manifest, &dir, progress)
            }
            other => usage_bail!(
                "{}: cannot restore a `{other}` backup, nothing was touched",
                path.display()
            ),
        }
    }
}
