//! The bench's throwaway stack (removed on drop unless `--keep`) and
//! [`Bench`], the plumbing every step uses to reach it: timed commands, SQL
//! in its Postgres, helper containers and scratch volumes.

use super::*;
use crate::process::Cmd;

/// The bench's stack: removed when dropped unless `keep`.
pub(in crate::bench) struct Stack<'a> {
    pub(in crate::bench) sh: &'a Shell,
    pub(in crate::bench) runner: Runner,
    pub(in crate::bench) compose: Compose,
    pub(in crate::bench) project: String,
    pub(in crate::bench) dir: PathBuf,
    pub(in crate::bench) keep: bool,
}

impl Stack<'_> {
    /// Builds (or reuses) the offline Postgres image with this build of the
    /// xtask, pointed at the bench's env file, and returns the image the env
    /// file now names.
    pub(in crate::bench) fn offline_postgres(
        &self,
        root: &Path,
        env_file: &Path,
    ) -> Result<String> {
        eprintln!("offline Postgres image (images offline --only postgres)...");
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut offline = Cmd::new(&exe);
        offline
            .args(["images", "offline", "--quiet", "--only", "postgres"])
            .env("FOG_ENV_FILE", env_file)
            .current_dir(root);
        capture(
            &self.runner,
            true,
            offline,
            "images offline --only postgres",
        )?;
        Ok(EnvFile::read(env_file)?
            .get("POSTGRES_IMAGE")
            .context("images offline left no POSTGRES_IMAGE in the bench's env file")?
            .to_string())
    }
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
pub(super) struct Bench {
    pub(super) runner: Runner,
    pub(super) project: String,
    pub(super) env_file: PathBuf,
    pub(super) image: String,
    pub(super) container: String,
    pub(super) dir: PathBuf,
    /// The upload row's server (`None`: no `weed` installed, the row is empty).
    pub(super) weed: Option<super::seaweed::Weed>,
    /// The encrypted row's age recipient (its key is thrown away).
    pub(super) recipient: String,
}

/// `docker ARGS` (shared by the backup and PITR benchmarks).
pub(in crate::bench) fn docker(args: &[&str]) -> Cmd {
    let mut cmd = Cmd::new("docker");
    cmd.args(args);
    cmd
}

impl Bench {
    pub(super) fn volume(&self, name: &str) -> String {
        format!("{}_{name}", self.project)
    }

    pub(super) fn check(&self) -> Result<()> {
        if crate::interrupt::interrupted() {
            bail!("interrupted; removing {}", self.project);
        }
        Ok(())
    }

    /// Run `cmd`, return its wall seconds and stdout.
    pub(super) fn timed(&self, what: &str, cmd: Cmd) -> Result<(f64, String)> {
        self.check()?;
        let started = Instant::now();
        let out = capture(&self.runner, true, cmd, what)?;
        Ok((started.elapsed().as_secs_f64(), out))
    }

    /// This xtask binary on the bench's env file.
    pub(super) fn xtask(&self, args: &[&str]) -> Result<Cmd> {
        let exe = std::env::current_exe().context("locating the xtask binary")?;
        let mut cmd = Cmd::new(exe);
        cmd.args(args)
            .env("FOG_ENV_FILE", &self.env_file)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME")
            .current_dir(crate::project_root());
        Ok(cmd)
    }

    /// `bash -c script` in a throwaway container of the Postgres image, no network.
    pub(super) fn container(&self, step: &str, mounts: &[String], script: &str) -> Cmd {
        let name = format!("{}-{step}", self.project);
        let mut cmd = docker(&["run", "--rm", "--network", "none", "--name", &name]);
        for m in mounts {
            cmd.args(["-v", m]);
        }
        cmd.args(["--entrypoint", "bash", &self.image, "-c", script]);
        cmd
    }

    pub(super) fn exec(&self, args: &[&str]) -> Cmd {
        let mut cmd = docker(&["exec", &self.container]);
        cmd.args(args);
        cmd
    }

    pub(super) fn sql(&self, database: &str, sql: &str) -> Result<String> {
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

    pub(super) fn sql_u64(&self, sql: &str) -> Result<u64> {
        let out = self.sql(DB, sql)?;
        out.parse()
            .with_context(|| format!("`{sql}` printed `{out}`, not a number"))
    }

    pub(super) fn docker_quiet(&self, what: &str, args: &[&str]) -> Result<String> {
        capture(&self.runner, true, docker(args), what)
    }

    pub(super) fn create_volume(&self, name: &str) -> Result<String> {
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

    pub(super) fn remove_volume(&self, vol: &str) -> Result<()> {
        self.docker_quiet("removing a volume", &["volume", "rm", "-f", vol])?;
        Ok(())
    }
}
