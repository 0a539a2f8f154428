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
//! - Postgres restore: `cargo xtask restore --yes` (verify, pre-restore
//!   backup, restore into a new database, row counts, swap), `pg_restore`
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

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use xshell::Shell;

use crate::{
    backup::stream,
    dotenv::{random_secret, EnvFile},
    engine::{compose::Compose, health, Engine},
    environments::Environment,
    process::Runner,
    psql::capture,
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
}

/// One measured method.
#[derive(Debug, Clone)]
struct Row {
    id: &'static str,
    group: &'static str,
    method: String,
    seconds: Vec<f64>,
    /// Only the stream and hashing, as the command itself reports it.
    stream_seconds: Vec<f64>,
    data_bytes: u64,
    archive_bytes: u64,
    note: Option<String>,
}

impl Row {
    fn new(id: &'static str, group: &'static str, method: &str) -> Row {
        Row {
            id,
            group,
            method: method.to_string(),
            seconds: Vec::new(),
            stream_seconds: Vec::new(),
            data_bytes: 0,
            archive_bytes: 0,
            note: None,
        }
    }

    fn median(&self) -> f64 {
        median(&self.seconds)
    }

    fn mb_per_s(&self) -> f64 {
        self.data_bytes as f64 / MB / self.median().max(1e-6)
    }
}

fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
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

/// The bench's stack: removed when dropped unless `keep`.
struct Stack<'a> {
    sh: &'a Shell,
    runner: Runner,
    compose: Compose,
    project: String,
    dir: PathBuf,
    keep: bool,
}

impl Drop for Stack<'_> {
    fn drop(&mut self) {
        if self.keep {
            eprintln!(
                "kept {}: remove it with `docker rm -f $(docker ps -aq --filter label=com.docker.compose.project={p})`, \
                 `docker volume rm $(docker volume ls -q --filter name={p}_)`, \
                 `docker network rm {p}-fog {p}-betanet` and `rm -rf {}`",
                self.project,
                self.dir.display(),
                p = self.project
            );
            return;
        }
        let down = self.compose.cmd(
            self.sh,
            &["down", "--volumes", "--remove-orphans", "-t", "2"],
        );
        if let Err(e) = self.runner.run(down) {
            eprintln!("warning: cleaning up {} failed: {e:#}", self.project);
        }
        // Helper containers left by an interrupted step, then every volume
        // the bench made (compose removes only the ones it created).
        let sh = self.sh;
        let name = format!("name=^/{}-", self.project);
        if let Ok(ids) = self
            .runner
            .read(xshell::cmd!(sh, "docker ps -aq --filter {name}"))
        {
            for id in ids.lines().filter(|l| !l.is_empty()) {
                let _ = self
                    .runner
                    .run_capture(xshell::cmd!(sh, "docker rm -f -v {id}"));
            }
        }
        let filter = format!("name={}_", self.project);
        if let Ok(vols) = self
            .runner
            .read(xshell::cmd!(sh, "docker volume ls -q --filter {filter}"))
        {
            let prefix = format!("{}_", self.project);
            for vol in vols.lines().filter(|v| v.starts_with(&prefix)) {
                if let Err(e) = self
                    .runner
                    .run_capture(xshell::cmd!(sh, "docker volume rm -f {vol}"))
                {
                    eprintln!("warning: removing volume {vol} failed: {e:#}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything a step needs to reach the stack.
struct Bench {
    runner: Runner,
    project: String,
    env_file: PathBuf,
    image: String,
    container: String,
    dir: PathBuf,
    interrupted: Arc<AtomicBool>,
}

fn docker(args: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    cmd
}

impl Bench {
    fn volume(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    fn check(&self) -> Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted; removing {}", self.project);
        }
        Ok(())
    }

    /// Run `cmd`, return its wall seconds and stdout.
    fn timed(&self, what: &str, cmd: Command) -> Result<(f64, String)> {
        self.check()?;
        let started = Instant::now();
        let out = capture(&self.runner, true, cmd, what)?;
        Ok((started.elapsed().as_secs_f64(), out))
    }

    /// This xtask binary on the bench's env file.
    fn xtask(&self, args: &[&str]) -> Result<Command> {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .current_dir(crate::project_root());
        Ok(cmd)
    }

    /// `bash -c script` in a throwaway container of the Postgres image, no network.
    fn container(&self, step: &str, mounts: &[String], script: &str) -> Command {
        let name = format!("{}-{step}", self.project);
        let mut cmd = docker(&["run", "--rm", "--network", "none", "--name", &name]);
        for m in mounts {
            cmd.args(["-v", m]);
        }
        cmd.args(["--entrypoint", "bash", &self.image, "-c", script]);
        cmd
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut cmd = docker(&["exec", &self.container]);
        cmd.args(args);
        cmd
    }

    fn sql(&self, database: &str, sql: &str) -> Result<String> {
        let cmd = self.exec(&[
            "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            DB,
            "-d",
            database,
            "-c",
            sql,
        ]);
        Ok(
            capture(&self.runner, true, cmd, &format!("psql on {database}"))?
                .trim()
                .to_string(),
        )
    }

    fn sql_u64(&self, sql: &str) -> Result<u64> {
        let out = self.sql(DB, sql)?;
        out.parse()
            .with_context(|| format!("`{sql}` printed `{out}`, not a number"))
    }

    fn docker_quiet(&self, what: &str, args: &[&str]) -> Result<String> {
        capture(&self.runner, true, docker(args), what)
    }

    fn create_volume(&self, name: &str) -> Result<String> {
        let vol = self.volume(name);
        let project = format!("com.docker.compose.project={}", self.project);
        let label = format!("com.docker.compose.volume={name}");
        self.docker_quiet(
            "creating a volume",
            &[
                "volume", "create", "--label", &project, "--label", &label, &vol,
            ],
        )?;
        Ok(vol)
    }

    fn remove_volume(&self, vol: &str) -> Result<()> {
        self.docker_quiet("removing a volume", &["volume", "rm", "-f", vol])?;
        Ok(())
    }

    /// Fill the database until the table holds `target` bytes.
    fn make_postgres(&self, target: u64) -> Result<(u64, u64)> {
        self.sql(
            DB,
            &format!(
                "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, account integer NOT NULL, \
                 amount numeric(14,2) NOT NULL, ratio double precision NOT NULL, \
                 created timestamptz NOT NULL, label text NOT NULL, note text NOT NULL)"
            ),
        )?;
        let (mut rows, mut chunk) = (0u64, 20_000u64);
        loop {
            self.check()?;
            let (from, to) = (rows + 1, rows + chunk);
            self.sql(
                DB,
                &format!(
                    "INSERT INTO {TABLE} SELECT g, (random() * 1000000)::integer, \
                     round((random() * 10000000)::numeric, 2), random(), \
                     timestamptz '2026-01-01' - random() * interval '365 days', md5(g::text), \
                     (ARRAY['ok', 'retry', 'failed', 'queued'])[1 + g % 4] || ' ' || \
                     left(md5(random()::text) || md5(random()::text), 8 + (g % 48)::integer) \
                     FROM generate_series({from}::bigint, {to}::bigint) g"
                ),
            )?;
            rows = to;
            let size = self.sql_u64(&format!("SELECT pg_total_relation_size('{TABLE}')"))?;
            if size >= target {
                self.sql(DB, &format!("VACUUM (ANALYZE) {TABLE}"))?;
                self.sql(DB, "CHECKPOINT")?;
                return Ok((rows, size));
            }
            let per_row = (size as f64 / rows as f64).max(1.0);
            let missing = ((target - size) as f64 / per_row * 1.02).ceil() as u64;
            chunk = missing.clamp(1_000, 1_000_000);
            eprintln!(
                "  {rows} rows, {:.0} of {:.0} MB",
                size as f64 / MB,
                target as f64 / MB
            );
        }
    }

    /// Fill the data volume with `target` bytes of mixed files; returns (bytes, files).
    fn make_volume(&self, vol: &str, target: u64) -> Result<(u64, u64)> {
        let script = format!(
            r#"set -euo pipefail
export LC_ALL=C
S={target}
small=$((S / 10)); large=$((S * 4 / 10)); text=$((S * 3 / 10)); mixed=$((S - small - large - text))
cd /data
mkdir -p small large text mixed
# many small files: base64 text, 4 KiB and 16 KiB, in 64 folders
per=$((small / 64))
for i in $(seq 0 63); do
  mkdir -p small/$i
  size=4096; [ $((i % 2)) -eq 1 ] && size=16384
  head -c $((per * 3 / 4)) /dev/urandom | base64 -w 76 | split -b $size -a 4 - small/$i/part-
done
# a few large random files
for i in 1 2 3 4; do head -c $((large / 4)) /dev/urandom > large/blob-$i.bin; done
# log-like text
awk -v n=$text 'BEGIN {{
  srand(42); split("GET POST PUT DELETE", m, " "); split("200 200 200 201 204 301 404 500", c, " ");
  t = 0; f = 0; out = "text/app-0.log";
  while (t < n) {{
    line = sprintf("2026-11-%02d %02d:%02d:%02d.%03d INFO http %s /api/v1/nodes/%d/packets?page=%d status=%s bytes=%d ms=%.3f req=%08x\n",
      1 + int(rand() * 30), int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 1000),
      m[1 + int(rand() * 4)], int(rand() * 5000), int(rand() * 100), c[1 + int(rand() * 8)],
      int(rand() * 100000), rand() * 250, int(rand() * 2147483647));
    if (int(t * 4 / n) != f) {{ close(out); f = int(t * 4 / n); out = "text/app-" f ".log" }}
    printf "%s", line > out; t += length(line)
  }}
}}'
# half-random binary: 8 files of 16 random blocks, each followed by as many zeros
b=$((mixed / 8 / 32))
for j in 1 2 3 4 5 6 7 8; do
  for k in $(seq 1 16); do head -c $b /dev/urandom; head -c $b /dev/zero; done > mixed/data-$j.bin
done
echo "$(du -sb /data | cut -f1) $(find /data -type f | wc -l)"
"#
        );
        let out = capture(
            &self.runner,
            true,
            self.container("make-volume", &[format!("{vol}:/data")], &script),
            "making the volume's files",
        )?;
        let mut it = out.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(bytes)), Some(Ok(files))) => Ok((bytes, files)),
            _ => bail!("making the volume's files printed `{}`", out.trim()),
        }
    }

    /// `tar czf` of `vol` into the output volume, inside a container; (seconds, archive bytes, tar warned).
    fn tar_czf(&self, vol: &str, out: &str, archive: &str) -> Result<(f64, u64, bool)> {
        // GNU tar exits 1 when a file changed while it read it (a live PGDATA): the old way accepts that.
        let script = format!(
            "tar czf /backup/{archive} -C /data . ; s=$?; [ $s -le 1 ] || exit $s; echo $s $(stat -c %s /backup/{archive})"
        );
        let (s, text) = self.timed(
            "tar czf inside a container",
            self.container(
                "tar",
                &[format!("{vol}:/data:ro"), format!("{out}:/backup")],
                &script,
            ),
        )?;
        let mut it = text.split_whitespace();
        let warned = it.next() == Some("1");
        let size = it
            .next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("tar czf printed `{}`", text.trim()))?;
        Ok((s, size, warned))
    }

    /// `tar xzf` from the output volume into a fresh volume, inside a container.
    fn tar_xzf(&self, out: &str, archive: &str, name: &str) -> Result<f64> {
        let fresh = self.volume(name);
        let started = Instant::now();
        self.create_volume(name)?;
        let script = format!("tar xzf /backup/{archive} -C /data");
        self.timed(
            "tar xzf inside a container",
            self.container(
                "untar",
                &[format!("{out}:/backup:ro"), format!("{fresh}:/data")],
                &script,
            ),
        )?;
        let s = started.elapsed().as_secs_f64();
        self.remove_volume(&fresh)?;
        Ok(s)
    }

    /// One run of every row.
    fn run_once(&self, run: usize, rows: &mut Rows, data: &Data) -> Result<()> {
        let dir = self.dir.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let dir_arg = dir.display().to_string();
        let out = self.volume("bench_out");
        let pg_vol = self.volume("postgres_data");
        let data_vol = self.volume(VOLUME);

        // Postgres backup.
        eprintln!("run {run}: cargo xtask backup postgres...");
        let (s, text) = self.timed(
            "cargo xtask backup postgres",
            self.xtask(&["backup", "postgres", "--dir", &dir_arg, "--format", "json"])?,
        )?;
        let written: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("backup postgres printed `{}`", text.trim()))?;
        let dump = PathBuf::from(
            written["path"]
                .as_str()
                .context("backup postgres JSON has no path")?,
        );
        let r = &mut rows.pg_backup;
        r.seconds.push(s);
        r.stream_seconds
            .push(written["seconds"].as_f64().unwrap_or(0.0));
        r.archive_bytes = written["size"].as_u64().unwrap_or(0);
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: docker exec pg_dump -Fc > /dev/null...");
        let mut devnull = self.exec(&["pg_dump", "-Fc", "-U", DB, "-d", DB]);
        devnull.stdout(std::process::Stdio::null());
        let (s, _) = self.timed("docker exec pg_dump > /dev/null", devnull)?;
        let r = &mut rows.pg_dump_exec;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_backup.archive_bytes;
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: pg_dump -Fc -f inside the container...");
        let (s, _) = self.timed(
            "pg_dump inside the container",
            self.exec(&["pg_dump", "-Fc", "-U", DB, "-d", DB, "-f", INNER_DUMP]),
        )?;
        let r = &mut rows.pg_dump_inside;
        r.seconds.push(s);
        r.archive_bytes = capture(
            &self.runner,
            false,
            self.exec(&["stat", "-c", "%s", INNER_DUMP]),
            "stat of the in-container dump",
        )?
        .trim()
        .parse()
        .unwrap_or(0);
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: tar czf of the live PGDATA in a container...");
        let (s, size, warned) = self.tar_czf(&pg_vol, &out, "pgdata.tar.gz")?;
        let r = &mut rows.pg_tar;
        r.seconds.push(s);
        r.archive_bytes = size;
        r.data_bytes = data.database_bytes;
        if warned {
            r.note = Some("tar: files changed while read (live PGDATA)".into());
        }

        // Postgres restore.
        eprintln!("run {run}: cargo xtask restore --yes...");
        let pre = dir.join("pre-restore");
        let pre_arg = pre.display().to_string();
        let dump_arg = dump.display().to_string();
        let (s, _) = self.timed(
            "cargo xtask restore",
            self.xtask(&["restore", &dump_arg, "--yes", "--dir", &pre_arg])?,
        )?;
        let r = &mut rows.pg_restore;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_backup.archive_bytes;
        r.data_bytes = data.database_bytes;
        // Keep the disk bounded: the kept old database and the pre-restore backup go.
        let old = self.sql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{DB}\\_before\\_restore\\_%'"
            ),
        )?;
        for name in old.lines().filter(|l| !l.is_empty()) {
            self.sql("postgres", &format!("DROP DATABASE \"{name}\""))?;
        }
        let _ = std::fs::remove_dir_all(&pre);

        eprintln!("run {run}: pg_restore inside the container...");
        let plain = "fogbench_plain";
        let started = Instant::now();
        self.timed(
            "createdb inside the container",
            self.exec(&["createdb", "-U", DB, plain]),
        )?;
        self.timed(
            "pg_restore inside the container",
            self.exec(&[
                "pg_restore",
                "--exit-on-error",
                "--no-owner",
                "-U",
                DB,
                "-d",
                plain,
                INNER_DUMP,
            ]),
        )?;
        let r = &mut rows.pg_restore_inside;
        r.seconds.push(started.elapsed().as_secs_f64());
        r.archive_bytes = rows.pg_dump_inside.archive_bytes;
        r.data_bytes = data.database_bytes;
        self.sql("postgres", &format!("DROP DATABASE \"{plain}\""))?;
        self.sql(DB, "CHECKPOINT")?;

        eprintln!("run {run}: tar xzf of PGDATA into a fresh volume...");
        let s = self.tar_xzf(&out, "pgdata.tar.gz", "pgdata_restored")?;
        let r = &mut rows.pg_untar;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_tar.archive_bytes;
        r.data_bytes = data.database_bytes;

        // Volume backup.
        eprintln!("run {run}: cargo xtask backup volume {VOLUME}...");
        let (s, text) = self.timed(
            "cargo xtask backup volume",
            self.xtask(&[
                "backup", "volume", VOLUME, "--dir", &dir_arg, "--format", "json",
            ])?,
        )?;
        let written: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("backup volume printed `{}`", text.trim()))?;
        let archive = PathBuf::from(
            written["path"]
                .as_str()
                .context("backup volume JSON has no path")?,
        );
        let r = &mut rows.vol_backup;
        r.seconds.push(s);
        r.stream_seconds
            .push(written["seconds"].as_f64().unwrap_or(0.0));
        r.archive_bytes = written["size"].as_u64().unwrap_or(0);
        r.data_bytes = data.volume_bytes;

        eprintln!("run {run}: tar czf of the volume in a container...");
        let (s, size, _) = self.tar_czf(&data_vol, &out, "volume.tar.gz")?;
        let r = &mut rows.vol_tar;
        r.seconds.push(s);
        r.archive_bytes = size;
        r.data_bytes = data.volume_bytes;

        // Volume restore.
        eprintln!("run {run}: cargo xtask restore --yes of the volume backup...");
        let archive_arg = archive.display().to_string();
        let (s, _) = self.timed(
            "cargo xtask restore of the volume backup",
            self.xtask(&["restore", &archive_arg, "--yes", "--dir", &pre_arg])?,
        )?;
        let r = &mut rows.vol_restore;
        r.seconds.push(s);
        r.archive_bytes = rows.vol_backup.archive_bytes;
        r.data_bytes = data.volume_bytes;
        // The previous contents stay in a `_before_restore_` volume: removed here.
        let filter = format!("name={data_vol}_");
        let aside = capture(
            &self.runner,
            false,
            docker(&["volume", "ls", "-q", "--filter", &filter]),
            "listing the restore's volumes",
        )?;
        for vol in aside
            .lines()
            .filter(|v| v.starts_with(&format!("{data_vol}_")))
        {
            self.remove_volume(vol)?;
        }
        let _ = std::fs::remove_dir_all(&pre);

        eprintln!("run {run}: streamed tar -xzpf - into a fresh volume...");
        let started = Instant::now();
        let fresh = self.create_volume("volume_restored")?;
        let mut cmd = docker(&["run", "--rm", "-i", "--network", "none", "--name"]);
        cmd.arg(format!("{}-restore", self.project))
            .args(["-v", &format!("{fresh}:/v")])
            .args(["--entrypoint", "tar", &self.image, "-C", "/v", "-xzpf", "-"]);
        self.check()?;
        let file =
            File::open(&archive).with_context(|| format!("opening {}", archive.display()))?;
        let bar = stream::bar(false, None, "");
        stream::into_child(&self.runner, true, cmd, file, &bar, true)
            .context("untarring the volume backup into a fresh volume")?;
        let r = &mut rows.vol_stream;
        r.seconds.push(started.elapsed().as_secs_f64());
        r.archive_bytes = rows.vol_backup.archive_bytes;
        r.data_bytes = data.volume_bytes;
        self.remove_volume(&fresh)?;

        eprintln!("run {run}: tar xzf of the volume into a fresh volume...");
        let s = self.tar_xzf(&out, "volume.tar.gz", "volume_untarred")?;
        let r = &mut rows.vol_untar;
        r.seconds.push(s);
        r.archive_bytes = rows.vol_tar.archive_bytes;
        r.data_bytes = data.volume_bytes;

        // Only the last run's files are kept (with --keep).
        capture(
            &self.runner,
            true,
            self.exec(&["rm", "-f", INNER_DUMP]),
            "removing the in-container dump",
        )?;
        if run < rows.runs {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }
}

/// Every row, in table order.
struct Rows {
    runs: usize,
    pg_backup: Row,
    pg_dump_exec: Row,
    pg_dump_inside: Row,
    pg_tar: Row,
    pg_restore: Row,
    pg_restore_inside: Row,
    pg_untar: Row,
    vol_backup: Row,
    vol_tar: Row,
    vol_restore: Row,
    vol_stream: Row,
    vol_untar: Row,
}

impl Rows {
    fn new(runs: usize) -> Rows {
        const PB: &str = "postgres backup";
        const PR: &str = "postgres restore";
        const VB: &str = "volume backup";
        const VR: &str = "volume restore";
        Rows {
            runs,
            pg_backup: Row::new("backup_postgres", PB, "cargo xtask backup postgres"),
            pg_dump_exec: Row::new(
                "pg_dump_exec_devnull",
                PB,
                "docker exec pg_dump -Fc > /dev/null (the engine's stream alone)",
            ),
            pg_dump_inside: Row::new(
                "pg_dump_in_container",
                PB,
                "pg_dump -Fc -f FILE inside the container",
            ),
            pg_tar: Row::new(
                "tar_czf_pgdata",
                PB,
                "docker run ... tar czf of the live PGDATA (old design)",
            ),
            pg_restore: Row::new("restore_postgres", PR, "cargo xtask restore --yes"),
            pg_restore_inside: Row::new(
                "pg_restore_in_container",
                PR,
                "createdb + pg_restore FILE inside the container",
            ),
            pg_untar: Row::new(
                "tar_xzf_pgdata",
                PR,
                "docker run ... tar xzf PGDATA into a fresh volume (old design)",
            ),
            vol_backup: Row::new("backup_volume", VB, "cargo xtask backup volume"),
            vol_tar: Row::new(
                "tar_czf_volume",
                VB,
                "docker run ... tar czf of the volume (old design)",
            ),
            vol_restore: Row::new("restore_volume", VR, "cargo xtask restore --yes"),
            vol_stream: Row::new(
                "untar_volume_streamed",
                VR,
                "docker run -i ... tar -xzpf - < backup into a fresh volume (README, by hand)",
            ),
            vol_untar: Row::new(
                "tar_xzf_volume",
                VR,
                "docker run ... tar xzf into a fresh volume (old design)",
            ),
        }
    }

    fn all(&self) -> [&Row; 12] {
        [
            &self.pg_backup,
            &self.pg_dump_exec,
            &self.pg_dump_inside,
            &self.pg_tar,
            &self.pg_restore,
            &self.pg_restore_inside,
            &self.pg_untar,
            &self.vol_backup,
            &self.vol_tar,
            &self.vol_restore,
            &self.vol_stream,
            &self.vol_untar,
        ]
    }

    /// (name, value, goal, met) of the issue's goals.
    fn goals(&self) -> Vec<(&'static str, f64, &'static str, bool)> {
        let pg = self.pg_backup.mb_per_s() / self.pg_tar.mb_per_s().max(1e-9);
        let vol = self.vol_backup.mb_per_s() / self.vol_tar.mb_per_s().max(1e-9);
        let stream =
            median(&self.pg_backup.stream_seconds) / self.pg_dump_inside.median().max(1e-9);
        let wall = self.pg_backup.median() / self.pg_dump_inside.median().max(1e-9);
        let engine = self.pg_dump_exec.median() / self.pg_dump_inside.median().max(1e-9);
        vec![
            (
                "backup postgres / tar czf of PGDATA, MB/s",
                pg,
                ">= 1.5x",
                pg >= 1.5,
            ),
            (
                "backup volume / tar czf of the volume, MB/s",
                vol,
                ">= 1.5x",
                vol >= 1.5,
            ),
            (
                "backup postgres stream+hash / in-container pg_dump, seconds",
                stream,
                "<= 1.10x",
                stream <= 1.10,
            ),
            (
                "backup postgres whole command / in-container pg_dump, seconds",
                wall,
                "(for reference)",
                true,
            ),
            (
                "docker exec pg_dump > /dev/null / in-container pg_dump, seconds",
                engine,
                "(for reference: the engine's part)",
                true,
            ),
        ]
    }

    fn json(&self, data: &Data, size_mb: u64) -> Value {
        json!({
            "benchmark": "backup",
            "size_mb": size_mb,
            "runs": self.runs,
            "data": {
                "postgres_rows": data.rows,
                "postgres_table_bytes": data.table_bytes,
                "postgres_database_bytes": data.database_bytes,
                "pgdata_bytes": data.pgdata_bytes,
                "volume_bytes": data.volume_bytes,
                "volume_files": data.volume_files,
            },
            "rows": self.all().iter().map(|r| {
                let mut v = json!({
                    "id": r.id, "group": r.group, "method": r.method,
                    "seconds": r.median(), "runs_s": r.seconds,
                    "data_bytes": r.data_bytes, "mb_per_s": r.mb_per_s(),
                    "archive_bytes": r.archive_bytes,
                });
                if !r.stream_seconds.is_empty() {
                    v["stream_seconds"] = json!(median(&r.stream_seconds));
                }
                if let Some(note) = &r.note {
                    v["note"] = json!(note);
                }
                v
            }).collect::<Vec<_>>(),
            "goals": self.goals().iter().map(|(name, value, goal, met)| json!({
                "goal": name, "ratio": value, "target": goal, "met": met,
            })).collect::<Vec<_>>(),
        })
    }

    fn table(&self, data: &Data) -> String {
        let mut out = format!(
            "Postgres: {} rows, database {:.0} MB (table+index {:.0} MB, PGDATA {:.0} MB); volume: {:.0} MB in {} files. \
             Median of {} run(s); MB = 10^6 bytes, MB/s over the raw data.\n",
            data.rows,
            data.database_bytes as f64 / MB,
            data.table_bytes as f64 / MB,
            data.pgdata_bytes as f64 / MB,
            data.volume_bytes as f64 / MB,
            data.volume_files,
            self.runs
        );
        out.push_str(&format!(
            "{:<84} {:>9} {:>13} {:>8} {:>11}\n",
            "METHOD", "SECONDS", "RANGE s", "MB/s", "ARCHIVE MB"
        ));
        let mut group = "";
        for r in self.all() {
            if r.group != group {
                group = r.group;
                out.push_str(&format!("{group}\n"));
            }
            let mut method = r.method.clone();
            if !r.stream_seconds.is_empty() {
                method.push_str(&format!(" (stream {:.1}s)", median(&r.stream_seconds)));
            }
            let (min, max) = r
                .seconds
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
                    (lo.min(*s), hi.max(*s))
                });
            let range = if r.seconds.len() > 1 {
                format!("{min:.1}-{max:.1}")
            } else {
                "-".into()
            };
            out.push_str(&format!(
                "  {:<82} {:>9.1} {:>13} {:>8.1} {:>11.1}\n",
                method,
                r.median(),
                range,
                r.mb_per_s(),
                r.archive_bytes as f64 / MB
            ));
            if let Some(note) = &r.note {
                out.push_str(&format!("    note: {note}\n"));
            }
        }
        for (name, value, goal, met) in self.goals() {
            let verdict = match (goal.starts_with('('), met) {
                (true, _) => format!(" {goal}"),
                (false, true) => format!(" (goal {goal}) met"),
                (false, false) => format!(" (goal {goal}) NOT met"),
            };
            out.push_str(&format!("{name}: {value:.2}x{verdict}\n"));
        }
        out
    }
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
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        ctrlc::set_handler(move || {
            flag.store(true, Ordering::Relaxed);
            eprintln!("interrupted: removing the bench's containers, networks and volumes");
        })
        .context("cannot install the Ctrl-C handler")?;
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

        eprintln!("offline Postgres image (images offline --only postgres)...");
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut offline = Command::new(&exe);
        offline
            .args(["images", "offline", "--quiet", "--only", "postgres"])
            .env("FOG_ENV_FILE", &env_file)
            .current_dir(&root);
        capture(&runner, true, offline, "images offline --only postgres")?;
        let image = EnvFile::read(&env_file)?
            .get("POSTGRES_IMAGE")
            .context("images offline left no POSTGRES_IMAGE in the bench's env file")?
            .to_string();

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
            interrupted,
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
        assert_eq!(json["rows"].as_array().unwrap().len(), 12);
        assert_eq!(json["rows"][0]["mb_per_s"], 100.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
    }
}
