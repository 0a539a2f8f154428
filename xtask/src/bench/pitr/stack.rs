//! The running PITR bench: [`Bench`], how each step reaches the stack
//! (SQL in its Postgres, this binary on its env file, switching archiving,
//! the health wait, pgbench, the throwaway recovery from the archive), and
//! the small readers of clocks and command output.

use super::*;
/// The running bench: its stack's names and this binary on its env file.
pub(super) struct Bench<'a> {
    pub(super) sh: &'a Shell,
    pub(super) runner: Runner,
    pub(super) compose: &'a Compose,
    pub(super) project: String,
    pub(super) env_file: std::path::PathBuf,
    pub(super) image: String,
    pub(super) container: String,
}

pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

pub(super) fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The first number after `key` in `text` (`tps = 123.4`, `in 12.3s`).
pub(super) fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let num: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

impl Bench<'_> {
    pub(super) fn check(&self) -> Result<()> {
        if crate::interrupt::interrupted() {
            bail!("interrupted; removing {}", self.project);
        }
        Ok(())
    }

    pub(super) fn quiet(&self, what: &str, cmd: process::Cmd) -> Result<String> {
        self.check()?;
        Ok(capture(&self.runner, true, cmd, what)?.trim().to_string())
    }

    pub(super) fn sql(&self, sql: &str) -> Result<String> {
        let cmd = docker(&[
            "exec",
            &self.container,
            "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            DB,
            "-d",
            DB,
            "-c",
            sql,
        ]);
        self.quiet("psql", cmd)
    }

    pub(super) fn sql_f64(&self, sql: &str) -> Result<f64> {
        let out = self.sql(sql)?;
        out.parse()
            .with_context(|| format!("`{sql}` printed `{out}`, not a number"))
    }

    /// This binary on the bench's env file.
    pub(super) fn xtask(&self, args: &[&str]) -> Result<process::Cmd> {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut cmd = process::Cmd::new(exe);
        cmd.args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .current_dir(crate::project_root());
        Ok(cmd)
    }

    /// (Re)create Postgres with archiving `mode` and wait until it is healthy.
    pub(super) fn postgres(&mut self, mode: &str) -> Result<()> {
        self.check()?;
        let mut env = EnvFile::read(&self.env_file)?;
        env.set("POSTGRES_WAL_ARCHIVE", mode);
        env.write(&self.env_file)?;
        self.runner
            .run(self.compose.cmd(self.sh, &["up", "-d", "postgres"]))?;
        self.wait_healthy()?;
        let shown = self.sql("SHOW archive_mode")?;
        if shown != mode {
            bail!("Postgres runs with archive_mode={shown}, not {mode}");
        }
        Ok(())
    }

    pub(super) fn wait_healthy(&mut self) -> Result<()> {
        health::wait_ready(
            self.sh,
            &self.runner,
            &self.project,
            &["postgres".to_string()],
            Duration::from_secs(300),
        )?;
        let label = format!("label=com.docker.compose.project={}", self.project);
        self.container = self
            .quiet(
                "finding the postgres container",
                docker(&[
                    "ps",
                    "-q",
                    "--filter",
                    &label,
                    "--filter",
                    "label=com.docker.compose.service=postgres",
                ]),
            )?
            .lines()
            .next()
            .map(str::to_string)
            .context("the bench's postgres container is not running")?;
        Ok(())
    }

    /// A table of at least `target` bytes (mixed columns, primary key).
    pub(super) fn fill(&self, target: u64) -> Result<u64> {
        self.sql(&format!(
            "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, account integer NOT NULL, \
             amount numeric(14,2) NOT NULL, created timestamptz NOT NULL, label text NOT NULL, \
             note text NOT NULL)"
        ))?;
        let (mut rows, mut chunk) = (0u64, 20_000u64);
        loop {
            let (from, to) = (rows + 1, rows + chunk);
            self.sql(&format!(
                "INSERT INTO {TABLE} SELECT g, (random() * 1000000)::integer, \
                 round((random() * 10000000)::numeric, 2), \
                 timestamptz '2026-01-01' - random() * interval '365 days', md5(g::text), \
                 left(md5(random()::text) || md5(random()::text), 8 + (g % 48)::integer) \
                 FROM generate_series({from}::bigint, {to}::bigint) g"
            ))?;
            rows = to;
            let size = self.sql_f64(&format!("SELECT pg_total_relation_size('{TABLE}')"))? as u64;
            if size >= target {
                self.sql(&format!("VACUUM (ANALYZE) {TABLE}"))?;
                self.sql("CHECKPOINT")?;
                return Ok(rows);
            }
            let per_row = (size as f64 / rows as f64).max(1.0);
            chunk =
                (((target - size) as f64 / per_row * 1.02).ceil() as u64).clamp(1_000, 1_000_000);
            eprintln!(
                "  {rows} rows, {:.0} of {:.0} MiB",
                size as f64 / MIB,
                target as f64 / MIB
            );
        }
    }

    pub(super) fn archived_count(&self) -> Result<f64> {
        self.sql_f64("SELECT archived_count FROM pg_stat_archiver")
    }

    pub(super) fn pgbench(&self, seconds: u64) -> Result<f64> {
        let secs = seconds.to_string();
        let out = self.quiet(
            "pgbench",
            docker(&[
                "exec",
                &self.container,
                "pgbench",
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                &secs,
                "-U",
                DB,
                DB,
            ]),
        )?;
        number_after(&out, "tps =").with_context(|| format!("pgbench printed no tps: {out}"))
    }

    /// A throwaway Postgres recovering `base` with the archive to its end;
    /// (seconds to promote, rows of `r`, newest `r.at` as epoch, if any).
    pub(super) fn recover_from_archive(&self, base: &Path) -> Result<(f64, u64, Option<f64>)> {
        let volume = format!("{}_rpo_recovered", self.project);
        let name = format!("{}-rpo-recovered", self.project);
        let archive = format!("{}_postgres_wal_archive", self.project);
        self.quiet("creating a volume", docker(&["volume", "create", &volume]))?;
        let script = format!(
            "set -e; d=/var/lib/postgresql/data; tar -xzf - -C $d; rm -f $d/postmaster.pid; \
             echo \"restore_command = 'cp {}/{}/%f %p'\" >> $d/postgresql.auto.conf; \
             touch $d/recovery.signal; chown -R postgres:postgres $d; chmod 0700 $d",
            wal::RECOVERY_MOUNT,
            wal::ARCHIVE_SUBDIR
        );
        let mut extract = docker(&[
            "run",
            "--rm",
            "-i",
            "--network",
            "none",
            "--user",
            "0:0",
            "-v",
        ]);
        extract
            .arg(format!("{volume}:/var/lib/postgresql/data"))
            .args(["--entrypoint", "sh", &self.image, "-c", &script])
            .stdin(Io::File(std::fs::File::open(base)?));
        self.check()?;
        let out = self.runner.output(extract)?;
        if !out.status.success() {
            bail!(
                "extracting the base backup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let started = Instant::now();
        self.quiet(
            "starting the recovery Postgres",
            docker(&[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                "-v",
                &format!("{volume}:/var/lib/postgresql/data"),
                "-v",
                &format!("{archive}:{}:ro", wal::RECOVERY_MOUNT),
                &self.image,
                "postgres",
                "-c",
                "archive_mode=off",
                "-c",
                "listen_addresses=",
            ]),
        )?;
        let result = (|| {
            let psql = |sql: &str| {
                capture(
                    &self.runner,
                    false,
                    docker(&[
                        "exec", "-u", "postgres", &name, "psql", "-X", "-At", "-U", DB, "-d", DB,
                        "-c", sql,
                    ]),
                    "psql in the recovery Postgres",
                )
                .map(|s| s.trim().to_string())
            };
            let deadline = Instant::now() + Duration::from_secs(1800);
            while psql("SELECT pg_is_in_recovery()").ok().as_deref() != Some("f") {
                self.check()?;
                if Instant::now() > deadline {
                    bail!("the recovery Postgres {name} did not promote in 30 min");
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            let seconds = started.elapsed().as_secs_f64();
            let out = psql(
                "SELECT count(*) || '|' || coalesce(extract(epoch FROM max(at))::text, '') FROM r",
            )?;
            let (rows, at) = split_pair(&out)?;
            Ok((seconds, rows, at))
        })();
        let _ = self.quiet("removing", docker(&["rm", "-f", "-v", &name]));
        let _ = self.quiet("removing", docker(&["volume", "rm", "-f", &volume]));
        result
    }
}

/// `count|newest` from psql: the newest is `None` when no row survived.
pub(super) fn split_pair(out: &str) -> Result<(u64, Option<f64>)> {
    let (rows, at) = out
        .split_once('|')
        .with_context(|| format!("expected `count|newest`, got `{out}`"))?;
    let newest = match at.trim() {
        "" => None,
        at => Some(at.parse().with_context(|| format!("newest row `{at}`"))?),
    };
    Ok((rows.parse().context("row count")?, newest))
}
