//! `cargo xtask bench backup`: backup and restore throughput of the real
//! commands beside the ways they replace, on the same data in one run.
//!
//! The bench brings up its own throwaway stack (`fogbench-backup-<pid>`:
//! `compose/base.yml`'s Postgres only, nothing published, its own networks and
//! subnets, a 0600 env file in a temp directory, the offline Postgres image
//! from `images offline --only postgres`), fills the database with at least
//! `--size-mb` MiB (a table of mixed numeric and text columns from
//! `generate_series`, with a primary key) and the overlay volume
//! `grafana_data` with as many MiB of mixed files (many small text files,
//! large random files, log-like text, half-random binary), made inside a
//! container. Then, per run, side by side:
//!
//! - Postgres backup: `cargo xtask backup postgres` (this binary, with the
//!   stack's env file), `docker exec pg_dump -Fc > /dev/null` (what the
//!   engine's stream alone costs), `pg_dump -Fc -f` to a file inside the
//!   container (the cost of streaming and hashing shows against it), and the old design's
//!   `docker run --rm -v VOL:/data IMAGE tar czf` of the live PGDATA;
//! - Postgres restore: `cargo xtask restore --yes` (verify, stop writers,
//!   `pg_restore -j` into a new database, row counts, journalled swap; no
//!   pre-restore dump, the default), `pg_restore`
//!   inside the container of the in-container dump, and `tar xzf` of the
//!   PGDATA archive into a fresh volume;
//! - volume backup: `cargo xtask backup volume` against `tar czf` inside a
//!   container;
//! - volume restore: `cargo xtask restore --yes` of the volume backup
//!   (verify, pre-restore backup, extract aside, check, swap by copying), the
//!   README's by-hand streamed `docker run -i ... tar -xzpf -` of the backup
//!   into a fresh volume, and `tar xzf` inside a container.
//!
//! Each figure is the median wall time over `--runs`, MB/s over the raw data
//! (`pg_database_size`, or the volume's bytes) and the archive's size; MB is
//! 10^6 bytes. Everything the bench created is removed at the end, also on
//! an error or Ctrl-C, unless `--keep`. Figures are printed, never asserted.
//!
//! [`stack`] holds the throwaway stack and the plumbing to reach it,
//! [`measure`] generates the data and times each method, [`report`] holds the
//! rows and prints the table, the JSON and the goals.

mod measure;
mod report;
mod seaweed;
pub(super) mod stack;

use super::median;
use report::Rows;
use stack::{docker, Bench, Stack};

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::Shell;

use crate::{
    backups::stream,
    database::capture,
    dotenv::{random_secret, EnvFile},
    engine::{compose::Compose, health, Engine},
    environments::Environment,
    process::Runner,
    Global,
};

/// The overlay volume filled with mixed files and backed up.
const VOLUME: &str = "grafana_data";
const DB: &str = "fog";
const TABLE: &str = "bench_rows";
/// The in-container dump of the `pg_dump -Fc -f` row.
const INNER_DUMP: &str = "/tmp/fogbench.dump";
const MB: f64 = 1e6;

#[derive(clap::Args)]
#[command(after_help = "\
Rows: postgres backup (`backup postgres`, `docker exec pg_dump > /dev/null`, in-container
`pg_dump -Fc -f`, `tar czf` of PGDATA),
postgres restore (`restore --yes`, in-container `pg_restore`, `tar xzf` of PGDATA), volume
backup (`backup volume`, `tar czf`), volume restore (`restore --yes`, streamed `tar -xzpf -`,
`tar xzf`).
MB is 10^6 bytes; MB/s is over the raw data. Needs about 8x --size-mb of free disk.

Examples:
  cargo xtask bench backup
  cargo xtask bench backup --size-mb 256 --runs 3
  cargo xtask bench backup --size-mb 8 --runs 1 --json")]
pub struct Cmd {
    /// MiB of Postgres data and, separately, of volume files (at least).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    size_mb: u64,
    /// Timed runs of every row (the data is made once).
    #[arg(long, default_value_t = 1, value_name = "N")]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Leave the stack, its volumes and the archives in place at the end.
    #[arg(long)]
    keep: bool,
    /// Subnets of the bench's fog and betanet networks.
    #[arg(long, default_value = "10.240.0.0/24", value_name = "CIDR")]
    fog_subnet: String,
    #[arg(long, default_value = "10.240.1.0/24", value_name = "CIDR")]
    betanet_subnet: String,
    /// SeaweedFS (upload row) on 127.0.0.1 ports PORT..PORT+7 [default: free ports].
    #[arg(long, value_name = "PORT")]
    s3_port: Option<u16>,
}

/// What was generated.
#[derive(Debug, Clone, Default)]
struct Data {
    rows: u64,
    table_bytes: u64,
    database_bytes: u64,
    pgdata_bytes: u64,
    volume_bytes: u64,
    volume_files: u64,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        if global.dry_run {
            bail!("`bench backup` measures real backups; run it without --dry-run");
        }
        if !(1..=65_536).contains(&self.size_mb) || !(1..=20).contains(&self.runs) {
            return Err(crate::UsageError(
                "--size-mb takes 1 to 65536 (MiB) and --runs 1 to 20".into(),
            )
            .into());
        }
        crate::interrupt::catch("removing the bench's containers, networks and volumes");
        let runner = Runner::new(global);
        let root = crate::project_root();
        let engine = Engine::detect(global.verbose)?;
        let project = format!("fogbench-backup-{}", std::process::id());
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

        eprintln!("bringing up {project} (postgres only, nothing published)...");
        runner.run(stack.compose.cmd(sh, &["up", "-d", "postgres"]))?;
        health::wait_ready(
            sh,
            &runner,
            &project,
            &["postgres".to_string()],
            Duration::from_secs(300),
        )?;
        let label = format!("label=com.docker.compose.project={project}");
        let container = runner
            .read(xshell::cmd!(
                sh,
                "docker ps -q --filter {label} --filter label=com.docker.compose.service=postgres"
            ))?
            .lines()
            .next()
            .map(str::to_string)
            .context("the bench's postgres container is not running")?;
        let bench = Bench {
            runner,
            project: project.clone(),
            env_file: env_file.clone(),
            image,
            container,
            dir: dir.clone(),
            weed: seaweed::Weed::start(runner, &dir, self.s3_port)?,
            recipient: age::x25519::Identity::generate().to_public().to_string(),
        };
        let target = self.size_mb << 20;
        let started = Instant::now();
        eprintln!("filling the database with {:.0} MB...", target as f64 / MB);
        let (rows_made, table_bytes) = bench.make_postgres(target)?;
        let database_bytes = bench.sql_u64("SELECT pg_database_size(current_database())")?;
        let pgdata_bytes = capture(
            &runner,
            false,
            bench.exec(&["du", "-sb", "/var/lib/postgresql/data"]),
            "du of PGDATA",
        )?
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
        eprintln!(
            "  {rows_made} rows, {:.0} MB in {:.0}s; filling volume {VOLUME} with {:.0} MB of mixed files...",
            database_bytes as f64 / MB,
            started.elapsed().as_secs_f64(),
            target as f64 / MB
        );
        let data_vol = bench.create_volume(VOLUME)?;
        bench.create_volume("bench_out")?;
        let (volume_bytes, volume_files) = bench.make_volume(&data_vol, target)?;
        let data = Data {
            rows: rows_made,
            table_bytes,
            database_bytes,
            pgdata_bytes,
            volume_bytes,
            volume_files,
        };
        eprintln!(
            "  {volume_files} files, {:.0} MB; data made in {:.0}s",
            volume_bytes as f64 / MB,
            started.elapsed().as_secs_f64()
        );
        let mut rows = Rows::new(self.runs);
        for run in 1..=self.runs {
            bench.run_once(run, &mut rows, &data)?;
        }
        drop(stack);
        if self.json {
            println!("{}", rows.json(&data, self.size_mb));
        } else {
            print!("{}", rows.table(&data));
        }
        Ok(())
    }

    /// The bench's env file: `.env.example`, base recorded as the active
    /// environment, fresh secrets, its own project, network names and subnets.
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
        env.write(path)
    }
}

#[cfg(test)]
mod tests {
    use super::report::Row;
    use super::*;

    fn filled() -> Rows {
        let mut rows = Rows::new(1);
        let set = |r: &mut Row, s: f64, bytes: u64, archive: u64| {
            r.seconds.push(s);
            r.data_bytes = bytes;
            r.archive_bytes = archive;
        };
        set(&mut rows.pg_backup, 10.0, 1_000_000_000, 400_000_000);
        rows.pg_backup.stream_seconds.push(9.0);
        set(&mut rows.pg_dump_inside, 8.5, 1_000_000_000, 400_000_000);
        set(&mut rows.pg_tar, 20.0, 1_000_000_000, 600_000_000);
        set(&mut rows.vol_backup, 5.0, 1_000_000_000, 700_000_000);
        set(&mut rows.vol_tar, 6.0, 1_000_000_000, 650_000_000);
        rows
    }

    #[test]
    fn goals_compare_throughput_and_stream_time() {
        let rows = filled();
        let goals = rows.goals();
        assert_eq!(goals[0].1, 2.0);
        assert!(goals[0].3);
        assert!((goals[1].1 - 1.2).abs() < 1e-9);
        assert!(!goals[1].3, "1.2x misses the 1.5x goal");
        assert!((goals[2].1 - 9.0 / 8.5).abs() < 1e-9);
        assert!(goals[2].3);
        let table = rows.table(&Data::default());
        assert!(table.contains("(stream 9.0s)"), "{table}");
        assert!(table.contains("NOT met"), "{table}");
        let json = rows.json(&Data::default(), 8);
        assert_eq!(json["rows"].as_array().unwrap().len(), 14);
        assert!(table.contains("--encrypt-to age1"), "{table}");
        assert!(table.contains("upload to a local SeaweedFS"), "{table}");
        assert_eq!(json["rows"][0]["mb_per_s"], 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
