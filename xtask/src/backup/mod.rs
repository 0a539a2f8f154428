//! `cargo xtask backup postgres|volume|all|list|verify|prune`: backups that can be
//! trusted at 3 a.m. `postgres` streams `pg_dump -Fc` out of the running
//! container into `backups/` with a `.sha256` and a JSON manifest, written
//! atomically (`backups::archive`); `verify` checks checksum, manifest and the
//! archive's own listing, and with `--restore` runs a restore drill in a
//! throwaway container (`backups::drill`); `prune` applies a last/daily/weekly/monthly
//! policy (`backups::retention`) to one project's backups, each kind on its own,
//! keeps sets whole, removes only files this tool wrote and never the newest
//! backup that passed a drill (`backups::prune`). The archives are plain
//! `pg_restore` input. The machinery is [`crate::backups`], shared with
//! `restore`; `wal`, `schedule` and `metrics` are this command's own.

pub mod metrics;
pub mod schedule;
pub mod wal;

// The shared machinery, named here so `super::archive` and friends read the
// same in this command's files.
use crate::backups::{
    archive, base, drill, encrypt, leftovers, postgres, progress, prune, remote, retention, set,
    verify, volume,
};

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::Shell;

use crate::{
    database::{Database, Target},
    output::Format,
    process::Runner,
    Global,
};

#[derive(clap::Args)]
#[command(after_help = "\
Backups go to backups/ (gitignored): <project>-postgres-<UTC stamp>.dump, its .sha256
(`sha256sum -c` reads it) and .manifest.json. Restore without this tool:
  pg_restore --exit-on-error --no-owner -d NEWDB FILE.dump
`postgres` and `verify` take --stack NAME for a Swarm stack's database (its task on this
node); without it they use the compose project, else the stack named like it.

Examples:
  cargo xtask backup postgres
  cargo xtask backup postgres --keep 7 --format json
  cargo xtask backup postgres --stack fog-prod
  cargo xtask backup volume grafana_data
  cargo xtask backup base
  cargo xtask backup base --to s3://fog-backups/prod --endpoint https://s3.example.net
  cargo xtask backup base --encrypt-to age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  cargo xtask backup wal --to s3://fog-backups/prod --endpoint https://s3.example.net
  cargo xtask backup verify --wal
  cargo xtask backup all
  cargo xtask backup list
  cargo xtask backup verify backups/fog-postgres-20261201T090000Z.dump --restore
  cargo xtask backup prune --keep-last 3 --keep-daily 7 --keep-weekly 4 --keep-monthly 6
  cargo xtask backup prune --keep-last 1 --dry-run
  cargo xtask backup postgres --encrypt-to age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  cargo xtask backup verify backups/fog-postgres-20261201T090000Z.dump.age --identity key.txt --restore
  cargo xtask backup all --to s3://fog-backups/prod --endpoint https://s3.example.net
  cargo xtask backup list --from s3://fog-backups/prod --endpoint https://s3.example.net
  cargo xtask backup prune --from s3://fog-backups/prod --keep 7
  cargo xtask backup schedule --keep 7 --to s3://fog-backups/prod --install
  cargo xtask backup cleanup --dry-run
  cargo xtask backup cleanup --yes")]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Dump the environment's database (pg_dump -Fc, streamed, sha256, manifest).
    Postgres {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        /// After a successful backup, keep only this project's newest N
        /// database backups (`prune --keep-last N` on the database kind).
        #[arg(long, value_name = "N")]
        keep: Option<usize>,
        #[command(flatten)]
        upload: Upload,
    },
    /// A base backup for point-in-time recovery (pg_basebackup, pg_verifybackup, start/stop LSN).
    Base {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        /// After the local base backup is complete, upload it (archive,
        /// .sha256, .base.json, manifest), each object read back and compared.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        to: Option<String>,
        /// Encrypt to this age X25519 recipient (`age1...`) in the stream; the
        /// archive is `.tar.gz.age`, its checksum covers the ciphertext, and
        /// `restore --to-time` needs `--identity`.
        #[arg(long, value_name = "RECIPIENT")]
        encrypt_to: Option<String>,
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// The WAL archive: write its metrics and, with --to, ship every archived
    /// file not shipped yet (gzip, optional age, read back and compared;
    /// nothing local is removed). Run it every minute (`backup schedule --wal`).
    Wal {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        upload: Upload,
    },
    /// Back up a named volume (overlay name `grafana_data` or engine name) as tar.gz.
    Volume {
        /// The volume, e.g. `grafana_data` or `fog_grafana_data`.
        name: String,
        /// Stop the services using the volume for the copy (always started again).
        #[arg(long)]
        stop: bool,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        upload: Upload,
    },
    /// Postgres and every named volume, as one set with one manifest (before an upgrade).
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        upload: Upload,
    },
    /// The backups in the folder (or with --from, in a bucket), newest first,
    /// and every leftover of interrupted restores and drills (journals,
    /// `_restore_` and `_before_restore_` databases and volumes, helper containers).
    List {
        #[command(flatten)]
        common: Common,
        /// List the bucket instead of the folder.
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        from: Option<String>,
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// Finish or undo interrupted restores, then remove the leftovers `list`
    /// shows (asking first). The previous data restores keep
    /// (`_before_restore_`, the way back) goes only with --way-back.
    #[command(after_help = "\
Examples:
  cargo xtask backup cleanup --dry-run
  cargo xtask backup cleanup --yes
  cargo xtask backup cleanup --way-back")]
    Cleanup {
        /// Do not ask (also answers the --way-back question).
        #[arg(long)]
        yes: bool,
        /// Also remove the `_before_restore_` databases and volumes.
        #[arg(long)]
        way_back: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Check checksum, manifest and listing; --restore also runs a restore drill.
    Verify {
        /// The backup to verify (not with --wal).
        #[arg(required_unless_present = "wal")]
        file: Option<PathBuf>,
        /// Check that the WAL archive is continuous from each base backup to its newest segment.
        #[arg(long, conflicts_with_all = ["file", "restore"])]
        wal: bool,
        /// Restore into a throwaway container and compare row counts, run amcheck.
        #[arg(long)]
        restore: bool,
        /// The age identity (secret key) file of an encrypted (`.age`) backup.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        target: Target,
    },
    /// Apply a retention policy to one project's backups, each kind (the
    /// database, each volume, sets) on its own; --dry-run says why each is kept.
    Prune {
        #[command(flatten)]
        policy: PolicyArgs,
        /// Whose backups [default: this checkout's compose project]; a
        /// stack's are under its stack name.
        #[arg(long, value_name = "NAME")]
        project: Option<String>,
        #[command(flatten)]
        common: Common,
        /// Prune the bucket instead of the folder (the same policy: per
        /// project and kind, sets kept whole, the newest drilled kept).
        #[arg(long, value_name = "s3://BUCKET/PREFIX")]
        from: Option<String>,
        #[command(flatten)]
        remote: remote::RemoteArgs,
    },
    /// Print (or --install) a systemd timer and a cron line running `backup all` and `prune`.
    Schedule {
        #[command(flatten)]
        schedule: schedule::ScheduleArgs,
        #[command(flatten)]
        common: Common,
    },
}

/// `--encrypt-to` and `--to s3://BUCKET/PREFIX`: what happens to the bytes.
#[derive(clap::Args)]
struct Upload {
    /// Encrypt to this age X25519 recipient (`age1...`) before anything is
    /// written; the archive is named `.age` and its checksum covers the ciphertext.
    #[arg(long, value_name = "RECIPIENT")]
    encrypt_to: Option<String>,
    /// After the local backup is complete, upload it (archive, .sha256,
    /// manifest) and verify each object by reading it back.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    to: Option<String>,
    #[command(flatten)]
    remote: remote::RemoteArgs,
}

impl Upload {
    /// Open the bucket before the backup starts, so a bad URL, endpoint or
    /// credentials fail fast.
    fn open(&self) -> Result<Option<crate::s3::Store>> {
        if let Some(r) = &self.encrypt_to {
            encrypt::set_recipient(r)?;
        }
        self.to
            .as_deref()
            .map(|to| remote::open(to, &self.remote))
            .transpose()
    }
}

/// Upload `paths` (finished backups) to `store`, if any.
fn ship(store: Option<&crate::s3::Store>, paths: &[&Path], runner: &Runner) -> Result<()> {
    let Some(store) = store else { return Ok(()) };
    let mut all = Vec::new();
    for path in paths {
        all.extend(remote::upload(store, path, runner).with_context(|| {
            format!(
                "the local backup {} is complete, but its upload to {} failed",
                path.display(),
                store.location
            )
        })?);
    }
    remote::print_uploaded(&all);
    Ok(())
}

/// The retention rules (restic's): a backup stays when any rule keeps it.
#[derive(clap::Args)]
struct PolicyArgs {
    /// Keep the newest N backups of each kind.
    #[arg(long, value_name = "N")]
    keep_last: Option<usize>,
    /// The same as --keep-last.
    #[arg(long, value_name = "N", conflicts_with = "keep_last")]
    keep: Option<usize>,
    /// Keep the newest backup of each of the last N days that have one (UTC).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_daily: usize,
    /// Keep the newest backup of each of the last N ISO weeks that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_weekly: usize,
    /// Keep the newest backup of each of the last N months that have one.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_monthly: usize,
}

impl PolicyArgs {
    fn policy(&self) -> Result<retention::Policy> {
        let policy = retention::Policy {
            last: self.keep_last.or(self.keep).unwrap_or(0),
            daily: self.keep_daily,
            weekly: self.keep_weekly,
            monthly: self.keep_monthly,
        };
        if policy.is_empty() {
            crate::usage_bail!("backup prune needs a policy: --keep-last N, --keep-daily N, --keep-weekly N or --keep-monthly N (the newest backup of each kind is always kept)");
        }
        Ok(policy)
    }
}

#[derive(clap::Args)]
struct Common {
    /// The backup folder [default: backups/ in the repository].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

impl Common {
    fn dir(&self) -> PathBuf {
        self.dir
            .as_deref()
            .map_or_else(|| crate::project_root().join("backups"), crate::absolute)
    }
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        match self.action {
            Action::Postgres {
                common,
                keep,
                target,
                upload,
            } => {
                let store = upload.open()?;
                let db = Database::open(sh, &runner, global, &target)?;
                let Some(written) = postgres::backup(&db, &runner, &common.dir(), "", progress())?
                else {
                    return Ok(());
                };
                record(&written, "postgres");
                print_written(&written, common.format)?;
                ship(store.as_ref(), &[&written.path], &runner)?;
                if let Some(keep) = keep {
                    let policy = retention::Policy {
                        last: keep,
                        ..Default::default()
                    };
                    prune::prune_database(&common.dir(), &db.namespace, policy, &runner)?;
                }
                Ok(())
            }
            Action::Base {
                common,
                target,
                to,
                encrypt_to,
                remote,
            } => {
                if let Some(r) = &encrypt_to {
                    encrypt::set_recipient(r)?;
                }
                let store = to
                    .as_deref()
                    .map(|t| remote::open(t, &remote))
                    .transpose()?;
                let db = Database::open(sh, &runner, global, &target)?;
                let Some((w, info)) = base::backup(&db, &runner, &common.dir(), progress())? else {
                    return Ok(());
                };
                record(&w, "base");
                if common.format == Format::Json {
                    println!(
                        "{}",
                        serde_json::json!({"path": w.path, "size": w.size, "sha256": w.sha256, "seconds": w.seconds, "base": info})
                    );
                } else {
                    println!(
                        "base backup {} ({:.1} MB, {:.1}s, pg_verifybackup passed)\nLSN {} .. {} (timeline {}), recoverable from {}",
                        w.path.display(),
                        w.size as f64 / 1e6,
                        w.seconds,
                        info.start_lsn,
                        info.stop_lsn,
                        info.timeline,
                        info.stop_time
                    );
                }
                ship(store.as_ref(), &[&w.path], &runner)
            }
            Action::Wal {
                common,
                target,
                upload,
            } => {
                let store = upload.open()?;
                let db = Database::open(sh, &runner, global, &target)?;
                wal::run(&db, &runner, &common.dir(), store.as_ref(), common.format)
            }
            Action::Volume {
                name,
                stop,
                common,
                upload,
            } => {
                let store = upload.open()?;
                let written =
                    volume::backup(sh, &runner, global, &name, &common.dir(), stop, progress())?;
                match written {
                    Some(w) => {
                        record(&w, "volume");
                        print_written(&w, common.format)?;
                        ship(store.as_ref(), &[&w.path], &runner)
                    }
                    None => Ok(()),
                }
            }
            Action::All { common, upload } => {
                let store = upload.open()?;
                let started = std::time::Instant::now();
                if let Some(set) = set::backup_all(sh, &runner, global, &common.dir(), progress())?
                {
                    record_set(&set, started.elapsed().as_secs_f64());
                    if common.format == Format::Json {
                        println!("{}", serde_json::json!({"path": set}));
                    } else {
                        println!("backup set {}", set.display());
                    }
                    if let Some(store) = &store {
                        let parsed: set::Set = serde_json::from_str(&archive::read_small(&set)?)?;
                        let dir = set.parent().unwrap_or(Path::new("."));
                        let members: Vec<PathBuf> =
                            parsed.members.iter().map(|m| dir.join(&m.file)).collect();
                        let mut paths: Vec<&Path> = members.iter().map(PathBuf::as_path).collect();
                        // The set file last: it names members already in the bucket.
                        paths.push(&set);
                        ship(Some(store), &paths, &runner)?;
                    }
                }
                Ok(())
            }
            Action::List {
                common,
                from: Some(from),
                remote,
            } => remote::list(&remote::open(&from, &remote)?, common.format),
            Action::List { common, .. } => {
                let dir = common.dir();
                let project =
                    crate::engine::project::Project::open(global.dry_run, global.verbose)?;
                let db = Database::open(sh, &runner, global, &Target::default()).ok();
                let namespace = db
                    .as_ref()
                    .map_or(project.name.clone(), |d| d.namespace.clone());
                let found = leftovers::find(&runner, &dir, &namespace, db.as_ref())?;
                if common.format == Format::Json {
                    let (entries, partial) = prune::scan(&dir)?;
                    println!(
                        "{}",
                        serde_json::json!({"dir": dir, "backups": entries, "partial": partial, "leftovers": found})
                    );
                    return Ok(());
                }
                prune::list(&dir, common.format)?;
                leftovers::print(&found);
                Ok(())
            }
            Action::Cleanup {
                yes,
                way_back,
                common,
            } => {
                let project =
                    crate::engine::project::Project::open(global.dry_run, global.verbose)?;
                let db = Database::open(sh, &runner, global, &Target::default()).ok();
                let namespace = db
                    .as_ref()
                    .map_or(project.name.clone(), |d| d.namespace.clone());
                leftovers::cleanup(
                    &runner,
                    &common.dir(),
                    &namespace,
                    db.as_ref(),
                    yes,
                    way_back,
                )
            }
            Action::Schedule { schedule, common } => schedule::run(
                &schedule,
                &common.dir(),
                &runner,
                common.format == Format::Json,
            ),
            Action::Verify {
                file,
                wal,
                restore,
                identity,
                common,
                target,
            } => {
                if wal {
                    let db = Database::open(sh, &runner, global, &target)?;
                    return crate::pitr::verify_wal(&db, &runner, &common.dir(), common.format);
                }
                if let Some(identity) = &identity {
                    encrypt::set_identity(identity)?;
                }
                let path = crate::absolute(file.expect("clap requires FILE without --wal"));
                // Optional (the host's pg_restore will do), unless --stack names one.
                let db = match target.stack {
                    Some(_) => Some(Database::open(sh, &runner, global, &target)?),
                    None => Database::open(sh, &runner, global, &target).ok(),
                };
                if path.to_string_lossy().ends_with(".set.json") {
                    let set = set::verify_set(&path, db.as_ref(), progress())?;
                    println!(
                        "verified set {} ({} members)",
                        path.display(),
                        set.members.len()
                    );
                    return Ok(());
                }
                // The drill restores every byte itself; plain verify reads them all.
                let manifest = verify::verify_with(&path, db.as_ref(), progress(), !restore)?;
                let mut report = serde_json::json!({"path": path, "verified": true, "sha256": manifest.sha256, "size": manifest.size});
                if restore && manifest.kind != "postgres" {
                    crate::usage_bail!(
                        "--restore drills Postgres backups; {} is a {} backup",
                        path.display(),
                        manifest.kind
                    );
                }
                if restore && runner.dry_run {
                    println!("# restore drill: docker run a throwaway Postgres (--network none), pg_restore {} into it, compare row counts, amcheck, docker rm -f", path.display());
                } else if restore {
                    let fallback = db.as_ref().map(|d| d.image.as_str());
                    let result = drill::drill(&runner, &path, &manifest, fallback, progress());
                    let record = match &result {
                        Ok(d) => d.clone(),
                        Err(_) => drill::Drill {
                            passed: false,
                            image: String::new(),
                            restore_seconds: 0.0,
                            tables: 0,
                            indexes_checked: 0,
                            at: crate::clock::rfc3339_now(),
                        },
                    };
                    archive::write_atomic(
                        &archive::drill_path(&path),
                        serde_json::to_string_pretty(&record)?.as_bytes(),
                    )?;
                    let d = result?;
                    metrics::record(&metrics::Run {
                        project: &manifest.project,
                        kind: "drill",
                        target: &manifest.database,
                        at: metrics::now(),
                        size: manifest.size,
                        seconds: d.restore_seconds,
                    });
                    report["drill"] = serde_json::to_value(&d)?;
                }
                if common.format == Format::Json {
                    println!("{report}");
                } else {
                    let content = manifest.entries.map_or_else(
                        || format!("{} tables", manifest.tables.len()),
                        volume::entries_text,
                    );
                    println!(
                        "verified {} ({} bytes, sha256 {}, {content})",
                        path.display(),
                        manifest.size,
                        manifest.sha256,
                    );
                    if let Some(d) = report.get("drill") {
                        println!("restore drill passed: restored in {:.1}s, row counts match, amcheck passed on {} indexes", d["restore_seconds"].as_f64().unwrap_or(0.0), d["indexes_checked"]);
                    }
                }
                Ok(())
            }
            Action::Prune {
                policy,
                project,
                common,
                from,
                remote,
            } => {
                let policy = policy.policy()?;
                let project = match project {
                    Some(p) => p,
                    None => {
                        crate::engine::project::Project::open(global.dry_run, global.verbose)?.name
                    }
                };
                if let Some(from) = from {
                    let store = remote::open(&from, &remote)?;
                    remote::prune(&store, &project, policy, &runner, common.format)?;
                    return wal::prune_remote(&store, &runner);
                }
                prune::prune(
                    &common.dir(),
                    &project,
                    policy,
                    true,
                    &runner,
                    common.format,
                )?;
                // The WAL that no kept base backup needs (when this
                // project's Postgres runs with an archive volume).
                match Database::open(sh, &runner, global, &Target::default()) {
                    Ok(db) if db.namespace == project && common.format != Format::Json => {
                        wal::prune_local(&db, &runner, &common.dir())
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// Metrics for a finished backup (see [`metrics`]).
fn record(w: &postgres::Written, kind: &str) {
    metrics::record(&metrics::Run {
        project: &w.manifest.project,
        kind,
        target: &w.manifest.database,
        at: metrics::now(),
        size: w.size,
        seconds: w.seconds,
    });
}

/// Metrics for a finished `backup all` (its members' total size).
fn record_set(set: &Path, seconds: f64) {
    let Ok(parsed) = archive::read_small(set)
        .and_then(|t| serde_json::from_str::<set::Set>(&t).map_err(Into::into))
    else {
        return;
    };
    metrics::record(&metrics::Run {
        project: &parsed.project,
        kind: "all",
        target: "",
        at: metrics::now(),
        size: parsed.members.iter().map(|m| m.size).sum(),
        seconds,
    });
}

fn print_written(w: &postgres::Written, format: Format) -> Result<()> {
    if format == Format::Json {
        println!("{}", serde_json::to_string(w)?);
        return Ok(());
    }
    let mb = w.size as f64 / 1e6;
    let content = match w.manifest.entries {
        Some(n) => volume::entries_text(n),
        None => format!("{} tables", w.manifest.tables.len()),
    };
    println!(
        "backup {} ({mb:.1} MB, {content}, {:.1}s, {:.1} MB/s)\nsha256 {}",
        w.path.display(),
        w.seconds,
        mb / w.seconds.max(1e-3),
        w.sha256
    );
    Ok(())
}
