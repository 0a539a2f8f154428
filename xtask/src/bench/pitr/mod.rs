//! `cargo xtask bench pitr`: the three figures of point-in-time recovery,
//! measured side by side in one run on a throwaway stack
//! (`fogbench-pitr-<pid>`: `compose/base.yml`'s Postgres only, the offline
//! image, nothing published, subnets 10.229.0.0/24 and 10.229.1.0/24, removed
//! on exit, failure or Ctrl-C unless `--keep`). With archiving off it fills a
//! table with `--size-mb` MiB and initialises `pgbench` (scale 10); then, per
//! run, `pgbench -c 4 -j 2 -T S` inside the Postgres container with
//! `POSTGRES_WAL_ARCHIVE=off` and `=on`, alternated (the container is
//! recreated for each switch, the data volume stays), tps each. With archiving
//! on: `cargo xtask backup base`; the RPO under constant writes (an INSERT
//! about every 0.1 s for `--rpo-seconds`, kill -9 of Postgres, the newest
//! committed row that survives from the base backup and the WAL archive alone,
//! in a throwaway Postgres on a fresh volume, and after crash recovery on the
//! kept data volume, each against the wall clock of the kill); then UPDATEs
//! until at least `--size-mb` MiB of WAL were written after the base backup,
//! and `cargo xtask restore --to-time T --yes` to just before a marker row,
//! timed by the phases the restore prints. Figures are printed with the
//! command that reproduces each and the load average, never asserted.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::json;
use xshell::Shell;

use super::backup::stack::{docker, Stack};
use crate::{
    database::capture,
    dotenv::{random_secret, EnvFile},
    engine::{compose::Compose, health, Engine},
    environments::Environment,
    process::{self, Io, Runner},
    wal, Global,
};

const DB: &str = "fog";
const TABLE: &str = "bench_rows";
const MIB: f64 = 1048576.0;

#[derive(clap::Args)]
#[command(after_help = "\
Figures: pgbench tps with WAL archiving off and on (alternated), `backup base`,
the RPO of a kill -9 under constant writes (base backup + WAL archive only, and
crash recovery on the kept data volume), and `restore --to-time` of a database
of --size-mb plus --size-mb of WAL, by phase. Needs about 6x --size-mb of free
disk.

Examples:
  cargo xtask bench pitr
  cargo xtask bench pitr --size-mb 1024 --runs 1
  cargo xtask bench pitr --size-mb 16 --runs 1 --pgbench-seconds 5 --rpo-seconds 20 --json")]
pub struct Cmd {
    /// MiB of table data, and MiB of WAL written after the base backup.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    size_mb: u64,
    /// pgbench pairs (archiving off, then on).
    #[arg(long, default_value_t = 1, value_name = "N")]
    runs: usize,
    /// Seconds of each pgbench run.
    #[arg(long, default_value_t = 30, value_name = "S")]
    pgbench_seconds: u64,
    /// Seconds of constant writes before the kill -9.
    #[arg(long, default_value_t = 130, value_name = "S")]
    rpo_seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Leave the stack, its volumes and the backups in place at the end.
    #[arg(long)]
    keep: bool,
    /// Subnets of the bench's fog and betanet networks.
    #[arg(long, default_value = "10.229.0.0/24", value_name = "CIDR")]
    fog_subnet: String,
    #[arg(long, default_value = "10.229.1.0/24", value_name = "CIDR")]
    betanet_subnet: String,
}

mod report;
mod stack;

use stack::*;

/// What one run measured.
#[derive(Debug, Default, serde::Serialize)]
struct Figures {
    size_mb: u64,
    rows: u64,
    database_mb: f64,
    tps_off: Vec<f64>,
    tps_on: Vec<f64>,
    archived_mb_during_pgbench: f64,
    base_seconds: f64,
    base_mb: f64,
    rpo_kill_at: String,
    rpo_archive_rows: u64,
    rpo_archive_seconds: f64,
    rpo_archive_replay_seconds: f64,
    rpo_crash_rows: u64,
    rpo_crash_seconds: f64,
    archive_timeout: String,
    wal_mb: f64,
    wal_segments: u64,
    restore_seconds: f64,
    restore_prepare_seconds: f64,
    restore_replay_seconds: f64,
    restore_swap_seconds: f64,
    restored_mb: f64,
    load_before: String,
    load_after: String,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        if global.dry_run {
            bail!("`bench pitr` measures real restores; run it without --dry-run");
        }
        if !(1..=65_536).contains(&self.size_mb)
            || !(1..=20).contains(&self.runs)
            || !(1..=3600).contains(&self.pgbench_seconds)
            || !(5..=3600).contains(&self.rpo_seconds)
        {
            return Err(crate::UsageError(
                "--size-mb takes 1 to 65536 (MiB), --runs 1 to 20, --pgbench-seconds 1 to 3600, --rpo-seconds 5 to 3600".into(),
            )
            .into());
        }
        crate::interrupt::catch("finishing the current step, then removing the bench's stack");
        let runner = Runner::new(global);
        let root = crate::project_root();
        let engine = Engine::detect(global.verbose)?;
        let project = format!("fogbench-pitr-{}", std::process::id());
        let dir = std::env::temp_dir().join(&project);
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let env_file = dir.join("bench.env");
        let base: Environment = "base".parse()?;
        let stack = Stack {
            sh,
            runner,
            compose: Compose::new(engine, &root, project.clone(), &env_file, base.files()),
            project: project.clone(),
            dir: dir.clone(),
            keep: self.keep,
        };
        self.write_env(&root, &project, &base, &env_file)?;
        sh.change_dir(&root);
        let image = stack.offline_postgres(&root, &env_file)?;
        let mut bench = Bench {
            sh,
            runner,
            compose: &stack.compose,
            project: project.clone(),
            env_file: env_file.clone(),
            image,
            container: String::new(),
        };
        let figures = self.measure(&mut bench, &dir)?;
        drop(stack);
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json!(figures))?);
        } else {
            print!("{}", self.table(&figures));
        }
        Ok(())
    }

    fn measure(&self, b: &mut Bench, dir: &Path) -> Result<Figures> {
        let mut f = Figures {
            size_mb: self.size_mb,
            load_before: load_average(),
            ..Figures::default()
        };
        eprintln!(
            "bringing up {} (postgres only, archiving off)...",
            b.project
        );
        b.postgres("off")?;
        let target = self.size_mb << 20;
        eprintln!("filling {TABLE} with {} MiB...", self.size_mb);
        f.rows = b.fill(target)?;
        eprintln!("pgbench -i -s 10...");
        b.quiet(
            "pgbench -i",
            docker(&[
                "exec",
                &b.container,
                "pgbench",
                "-i",
                "-q",
                "-s",
                "10",
                "-U",
                DB,
                DB,
            ]),
        )?;
        f.database_mb = b.sql_f64("SELECT pg_database_size(current_database())")? / MIB;
        for run in 1..=self.runs {
            for mode in ["off", "on"] {
                b.postgres(mode)?;
                let before = if mode == "on" {
                    b.archived_count()?
                } else {
                    0.0
                };
                eprintln!(
                    "run {run}: pgbench -T {} with archiving {mode}...",
                    self.pgbench_seconds
                );
                let tps = b.pgbench(self.pgbench_seconds)?;
                eprintln!("  {tps:.0} tps");
                if mode == "on" {
                    f.tps_on.push(tps);
                    f.archived_mb_during_pgbench += (b.archived_count()? - before) * 16.0;
                } else {
                    f.tps_off.push(tps);
                }
            }
        }
        f.archive_timeout = b.sql("SHOW archive_timeout")?;

        // The base backup every recovery below starts from.
        let backups = dir.join("backups");
        let backups_arg = backups.display().to_string();
        b.sql("CREATE TABLE r (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")?;
        eprintln!("cargo xtask backup base...");
        let started = Instant::now();
        let out = b.quiet(
            "backup base",
            b.xtask(&["backup", "base", "--dir", &backups_arg, "--format", "json"])?,
        )?;
        f.base_seconds = started.elapsed().as_secs_f64();
        let written: serde_json::Value =
            serde_json::from_str(&out).context("backup base --format json")?;
        let base_path = written["path"]
            .as_str()
            .context("backup base printed no path")?
            .to_string();
        let base_lsn = written["base"]["stop_lsn"]
            .as_str()
            .context("no stop_lsn")?
            .to_string();
        f.base_mb = std::fs::metadata(&base_path)?.len() as f64 / MIB;

        // RPO: constant writes, kill -9, what survives.
        eprintln!(
            "RPO: an INSERT about every 0.1 s for {} s, then kill -9...",
            self.rpo_seconds
        );
        let mut writer = docker(&[
            "exec",
            &b.container,
            "sh",
            "-c",
            "while :; do psql -X -q -U fog -d fog -c 'INSERT INTO r DEFAULT VALUES' >/dev/null 2>&1; sleep 0.1; done",
        ]);
        writer.stdin(Io::Null).stdout(Io::Null).stderr(Io::Null);
        let writes_started = now_epoch();
        let writer = b.runner.spawn(writer)?.guard();
        let until = Instant::now() + Duration::from_secs(self.rpo_seconds);
        while Instant::now() < until {
            b.check()?;
            std::thread::sleep(Duration::from_millis(200));
        }
        b.quiet("kill -9", docker(&["kill", "-s", "KILL", &b.container]))?;
        // Read once the kill has taken effect: a row committed while
        // `docker kill` ran is still before it, so the crash RPO is never
        // negative (it was -0.007 s on one run with the clock read first).
        let killed = now_epoch();
        drop(writer);
        f.rpo_kill_at = wal::show_time(killed);
        eprintln!(
            "  killed at {}; recovering base backup + archive in a throwaway Postgres...",
            f.rpo_kill_at
        );
        let (replay, rows, newest) = b.recover_from_archive(Path::new(&base_path))?;
        f.rpo_archive_replay_seconds = replay;
        f.rpo_archive_rows = rows;
        // No row survived: everything written since the writes began is lost.
        f.rpo_archive_seconds = killed - newest.unwrap_or(writes_started);
        eprintln!(
            "  archive only: {rows} rows, newest {:.1} s before the kill",
            f.rpo_archive_seconds
        );
        b.quiet("docker start", docker(&["start", &b.container]))?;
        b.wait_healthy()?;
        let (rows, newest) = split_pair(&b.sql(
            "SELECT count(*) || '|' || coalesce(extract(epoch FROM max(at))::text, '') FROM r",
        )?)?;
        f.rpo_crash_rows = rows;
        f.rpo_crash_seconds = killed - newest.unwrap_or(writes_started);
        eprintln!(
            "  data volume kept: {rows} rows, newest {:.2} s before the kill",
            f.rpo_crash_seconds
        );

        // SIZE of WAL after the base backup, then restore --to-time.
        eprintln!("writing {} MiB of WAL (UPDATEs)...", self.size_mb);
        let wal_bytes = |b: &Bench| {
            b.sql_f64(&format!(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{base_lsn}')"
            ))
        };
        let (mut from, step) = (0u64, (f.rows / 8).max(1000));
        while wal_bytes(b)? < target as f64 {
            b.sql(&format!(
                "UPDATE {TABLE} SET amount = amount + 1, note = md5(note) WHERE id > {from} AND id <= {}",
                from + step
            ))?;
            from = if from + step >= f.rows {
                0
            } else {
                from + step
            };
        }
        b.sql("CREATE TABLE marker (at timestamptz NOT NULL DEFAULT clock_timestamp())")?;
        std::thread::sleep(Duration::from_millis(300));
        let to_time = b.sql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        )?;
        std::thread::sleep(Duration::from_millis(300));
        b.sql("INSERT INTO marker DEFAULT VALUES")?;
        f.wal_mb = wal_bytes(b)? / MIB;
        // The 16 MiB segments the replay reads after the base backup (the
        // archiver's own count restarts with the swapped-in server).
        f.wal_segments = b.sql_f64(&format!(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint / 16777216 \
             - pg_wal_lsn_diff('{base_lsn}', '0/0')::bigint / 16777216 + 1"
        ))? as u64;
        eprintln!(
            "cargo xtask restore --to-time '{to_time}' --yes ({:.0} MiB of WAL)...",
            f.wal_mb
        );
        let mut restore = b.xtask(&[
            "restore",
            "--to-time",
            &to_time,
            "--yes",
            "--dir",
            &backups_arg,
        ])?;
        restore.stdout(Io::Piped).stderr(Io::Piped);
        let started = Instant::now();
        b.check()?;
        let out = b.runner.output(restore)?;
        f.restore_seconds = started.elapsed().as_secs_f64();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if !out.status.success() {
            bail!("restore --to-time failed: {stderr}");
        }
        let replayed = number_after(&stderr, "replayed and promoted in").unwrap_or(0.0);
        let total = number_after(
            &stdout,
            &format!(
                "from {} in",
                written["base"]["file"].as_str().unwrap_or_default()
            ),
        )
        .unwrap_or(f.restore_seconds);
        f.restore_prepare_seconds = (f.restore_seconds - total).max(0.0);
        f.restore_replay_seconds = replayed;
        f.restore_swap_seconds = (total - replayed).max(0.0);
        b.wait_healthy()?;
        if b.sql("SELECT count(*) FROM marker")? != "0" {
            bail!("the marker row written after {to_time} survived restore --to-time");
        }
        f.restored_mb = b.sql_f64("SELECT pg_database_size(current_database())")? / MIB;
        f.load_after = load_average();
        Ok(f)
    }

    /// The bench's env file: `.env.example`, fresh secrets, its own project,
    /// networks and subnets.
    fn write_env(&self, root: &Path, project: &str, base: &Environment, path: &Path) -> Result<()> {
        let mut env = EnvFile::read(&root.join(".env.example"))?;
        let files: Vec<String> = base
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        env.set("COMPOSE_PROJECT_NAME", project);
        env.set("COMPOSE_FILE", &files.join(":"));
        env.set("POSTGRES_USER", DB);
        env.set("POSTGRES_DB", DB);
        env.set("POSTGRES_PASSWORD", &random_secret(32)?);
        env.set("GRAFANA_ADMIN_PASSWORD", &random_secret(32)?);
        env.set("FOG_NETWORK_NAME", &format!("{project}-fog"));
        env.set("BETANET_NETWORK_NAME", &format!("{project}-betanet"));
        env.set("FOG_NETWORK_SUBNET", &self.fog_subnet);
        env.set("BETANET_NETWORK_SUBNET", &self.betanet_subnet);
        env.set("POSTGRES_WAL_ARCHIVE", "off");
        env.write(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_from_pgbench_and_restore_output() {
        let pgbench = "number of failed transactions: 0 (0.000%)\nlatency average = 2.4 ms\n\
                       initial connection time = 12.3 ms\ntps = 1646.123456 (without initial connection time)\n";
        assert_eq!(number_after(pgbench, "tps ="), Some(1646.123456));
        assert_eq!(
            number_after(
                "replayed and promoted in 12.5s: 3 tables",
                "replayed and promoted in"
            ),
            Some(12.5)
        );
        assert_eq!(number_after("no figure here", "tps ="), None);
        assert_eq!(
            split_pair("12|1764950000.25").unwrap(),
            (12, Some(1764950000.25))
        );
        assert_eq!(split_pair("0|").unwrap(), (0, None));
        assert!(split_pair("garbage").is_err());
    }
}
