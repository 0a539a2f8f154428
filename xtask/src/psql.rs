//! `cargo xtask psql [-- ARGS]`: psql inside the active environment's Postgres
//! container, as the environment's user on its database, so no client and no
//! published port is needed on the host (prod publishes none). Also home of
//! [`Database`], how `migrate`, `backup` and `restore` find that container
//! (by the compose project label) and its credentials (from the native compose
//! model's `POSTGRES_USER` / `POSTGRES_DB`), and run tools inside it.

use std::io::IsTerminal;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use xshell::Shell;

pub use crate::images::docker::render;
use crate::{
    compose::EnvSource,
    config::Selection,
    engine::{compose::Compose, containers, project::Project},
    environments::Environment,
    process::Runner,
    usage_bail, Global,
};

/// The compose service that runs PostgreSQL.
pub const SERVICE: &str = "postgres";

#[derive(clap::Args)]
#[command(after_help = "\
Arguments after `--` go to psql; stdin is passed through, so scripts work too.

Examples:
  cargo xtask psql
  cargo xtask psql -- -c 'SELECT node_id, last_seen FROM mixnode_topology'
  cargo xtask psql -- -v ON_ERROR_STOP=1 < script.sql")]
pub struct Cmd {
    /// Arguments for psql (after `--`).
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let db = Database::open(sh, &runner, global)?;
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        let mut args: Vec<String> = vec!["psql".into(), "-U".into(), db.user.clone()];
        args.extend(["-d".into(), db.name.clone()]);
        args.extend(self.args);
        let mut cmd = db.exec(if tty { "-it" } else { "-i" }, &args);
        if runner.dry_run {
            println!("{}", render(&cmd));
            return Ok(());
        }
        if runner.verbose {
            eprintln!("+ {}", render(&cmd));
        }
        let status = cmd.status().context("running docker exec")?;
        if !status.success() {
            bail!("psql exited with {status}");
        }
        Ok(())
    }
}

/// The environment's running Postgres and how to reach it.
pub struct Database {
    pub project: Project,
    pub environment: Environment,
    pub compose: Compose,
    /// Container id.
    pub container: String,
    pub image: String,
    pub user: String,
    /// The environment's database (`POSTGRES_DB`).
    pub name: String,
}

impl Database {
    /// The active environment's Postgres; an error says how to start it.
    pub fn open(sh: &Shell, runner: &Runner, global: &Global) -> Result<Database> {
        let project = Project::open(global.dry_run, global.verbose)?;
        let environment = project.active_or_bail()?;
        let env = EnvSource::with_process_env(Some(&project.env.path))?;
        let model = Selection::named(environment.clone(), &env).load()?;
        let Some(service) = model.service(SERVICE) else {
            usage_bail!("environment {environment} has no `{SERVICE}` service");
        };
        let user = service
            .env("POSTGRES_USER")
            .unwrap_or("postgres")
            .to_string();
        let name = service.env("POSTGRES_DB").unwrap_or(&user).to_string();
        let container = containers::list(sh, runner, &project.name)?
            .into_iter()
            .find(|c| c.service == SERVICE && c.is_running());
        let Some(container) = container else {
            usage_bail!(
                "`{SERVICE}` of project {} is not running: start it with `cargo xtask env use {environment}`",
                project.name
            );
        };
        let (format, id) = ("{{.Config.Image}}", &container.id);
        let image = runner.read(xshell::cmd!(sh, "docker inspect --format {format} {id}"))?;
        let compose = project.compose(&environment);
        Ok(Database {
            project,
            environment,
            compose,
            container: container.id,
            image,
            user,
            name,
        })
    }

    /// `docker exec <flags> <container> <args>`; flags such as `-i`.
    pub fn exec(&self, flags: &str, args: &[String]) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("exec");
        if !flags.is_empty() {
            cmd.arg(flags);
        }
        cmd.arg(&self.container).args(args);
        cmd
    }

    /// psql with `-X -At -v ON_ERROR_STOP=1` on `database`, `sql` as `-c`.
    pub fn psql_args(&self, database: &str, sql: &str) -> Vec<String> {
        [
            "psql",
            "-X",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            &self.user,
            "-d",
            database,
            "-c",
            sql,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Run one SQL text and return its trimmed output. `mutating` statements
    /// are only printed under `--dry-run`.
    pub fn sql(
        &self,
        runner: &Runner,
        database: &str,
        sql: &str,
        mutating: bool,
    ) -> Result<String> {
        let cmd = self.exec("", &self.psql_args(database, sql));
        capture(
            runner,
            mutating,
            cmd,
            &format!("psql on database {database}"),
        )
        .map(|s| s.trim().to_string())
    }
}

/// Run `cmd` with no stdin and return its stdout; a failure is an error
/// naming `what` and quoting the command's stderr. A `mutating` command is
/// only printed under `--dry-run`.
pub fn capture(runner: &Runner, mutating: bool, mut cmd: Command, what: &str) -> Result<String> {
    if mutating && runner.dry_run {
        println!("{}", render(&cmd));
        return Ok(String::new());
    }
    if runner.verbose {
        eprintln!("+ {}", render(&cmd));
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{what}: cannot run `{}`", render(&cmd)))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
