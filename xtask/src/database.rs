//! The one place that finds the database for `psql`, `migrate`, `backup`,
//! `restore` and `adopt` ([`Database::open`]): the compose project's
//! container (by the compose project label) or, for a Swarm stack deployed
//! by `cargo xtask deploy`, the Postgres task's container on this node (by
//! `com.docker.swarm.service.name=<stack>_postgres`). `--stack NAME`
//! ([`Target`]) picks a stack; without it a running compose project wins,
//! and a stack named like the project (deploy's default name) is used when
//! none runs. The credentials come from the native compose model of the
//! environment (`POSTGRES_USER` / `POSTGRES_DB`); for a stack, the
//! environment it was deployed from (its `dev.fog-compute.environment`
//! label). [`capture`] runs one command in it and returns its output.

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::{Cmd, Io};
use crate::{
    compose::EnvSource,
    engine::{compose::Compose, containers, project::Project},
    environments::Environment,
    process::Runner,
    selection::Selection,
    swarm::ENVIRONMENT_LABEL,
    usage_bail, Global,
};

/// The compose service that runs PostgreSQL.
pub const SERVICE: &str = "postgres";

/// The label Swarm puts on a task's container: `<stack>_<service>`.
const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.name";

/// `--stack NAME`: which database the data commands act on.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Target {
    /// Act on the Postgres task of this Swarm stack (`cargo xtask deploy
    /// --stack NAME`) on this node. Default: the compose project when it
    /// runs, else the stack named like it.
    #[arg(long, value_name = "NAME")]
    pub stack: Option<String>,
}

/// Where the database runs.
pub enum Location {
    /// A container of the compose project, run through this invocation.
    Compose(Compose),
    /// The local task of a Swarm stack's `postgres` service.
    Stack(String),
}

/// The environment's running Postgres and how to reach it.
pub struct Database {
    pub project: Project,
    /// The compose project or the stack: names backups and manifests.
    pub namespace: String,
    pub environment: Environment,
    /// The environment's native compose model (credentials, the migrate service).
    pub model: crate::compose::Project,
    pub location: Location,
    /// Container id.
    pub container: String,
    pub image: String,
    pub user: String,
    /// The environment's database (`POSTGRES_DB`).
    pub name: String,
}

impl Database {
    /// The database `target` names (see the module doc); an error says how
    /// to start it, or on which node a stack's task runs.
    pub fn open(sh: &Shell, runner: &Runner, global: &Global, target: &Target) -> Result<Database> {
        let project = Project::open(global.dry_run, global.verbose)?;
        let found = match &target.stack {
            Some(stack) => {
                let stack = crate::swarm::validate_stack(stack)?;
                match stack_task(sh, runner, &stack)? {
                    Some(id) => Found::Stack(stack, id),
                    None => stack_missing(sh, runner, &stack)?,
                }
            }
            None => find_default(sh, runner, &project)?,
        };
        let (location, namespace, id, environment) = match found {
            Found::Compose(environment, id) => (
                Location::Compose(project.compose(&environment)),
                project.name.clone(),
                id,
                environment,
            ),
            Found::Stack(stack, id) => {
                let environment = stack_environment(sh, runner, &project, &stack, &id)?;
                (Location::Stack(stack.clone()), stack, id, environment)
            }
        };
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
        let format = "{{.Config.Image}}";
        let image = runner.read(cmd!(sh, "docker inspect --format {format} {id}"))?;
        Ok(Database {
            project,
            namespace,
            environment,
            model,
            location,
            container: id,
            image,
            user,
            name,
        })
    }

    /// `project X` or `stack X`, for messages.
    pub fn describe(&self) -> String {
        match self.location {
            Location::Compose(_) => format!("project {}", self.namespace),
            Location::Stack(_) => format!("stack {}", self.namespace),
        }
    }

    /// `docker exec <flags> <container> <args>`; flags such as `-i`.
    pub fn exec(&self, flags: &str, args: &[String]) -> Cmd {
        let mut cmd = Cmd::new("docker");
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
pub fn capture(runner: &Runner, mutating: bool, mut cmd: Cmd, what: &str) -> Result<String> {
    if mutating && runner.dry_run {
        println!("{}", cmd.line());
        return Ok(String::new());
    }
    let line = cmd.line();
    let out = runner
        .output(cmd.stdin(Io::Null))
        .with_context(|| format!("{what}: cannot run `{line}`"))?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What [`Database::open`] found: a compose container of an environment, or
/// a stack's task container.
enum Found {
    Compose(Environment, String),
    Stack(String, String),
}

/// No `--stack`: the compose project's running container; else the running
/// task of the stack named like the project (deploy's default stack name).
fn find_default(sh: &Shell, runner: &Runner, project: &Project) -> Result<Found> {
    let active = project.active()?;
    if let Some(environment) = &active {
        let running = containers::list(sh, runner, &project.name)?
            .into_iter()
            .find(|c| c.service == SERVICE && c.is_running());
        if let Some(c) = running {
            return Ok(Found::Compose(environment.clone(), c.id));
        }
    }
    if let Some(id) = stack_task(sh, runner, &project.name)? {
        eprintln!(
            "note: compose project {0} is not running; using the Postgres task of Swarm stack {0} on this node (pass --stack NAME for another stack)",
            project.name
        );
        return Ok(Found::Stack(project.name.clone(), id));
    }
    match active {
        Some(environment) => usage_bail!(
            "`{SERVICE}` of project {} is not running: start it with `cargo xtask env use {environment}`, or pass --stack NAME for a Swarm stack",
            project.name
        ),
        None => usage_bail!(
            "no active environment in {} and no Swarm stack {} on this node: start one with `cargo xtask env use ENV`, or pass --stack NAME for a stack deployed with `cargo xtask deploy`",
            project.env.path.display(),
            project.name
        ),
    }
}

/// The running container of `stack`'s Postgres task on this node.
fn stack_task(sh: &Shell, runner: &Runner, stack: &str) -> Result<Option<String>> {
    let filter = format!("label={SWARM_SERVICE_LABEL}={stack}_{SERVICE}");
    let ids = runner.read(cmd!(
        sh,
        "docker ps -q --no-trunc --filter {filter} --filter status=running"
    ))?;
    // A rolling update can briefly run two tasks: take the newest (`ps` lists it first).
    Ok(ids.lines().next().map(str::to_string))
}

/// No local task of `stack`: say where it runs, or that the stack has none.
fn stack_missing(sh: &Shell, runner: &Runner, stack: &str) -> Result<Found> {
    let service = format!("{stack}_{SERVICE}");
    let format = "{{.Node}}\t{{.CurrentState}}";
    let tasks = runner.probe(cmd!(
        sh,
        "docker service ps --no-trunc --filter desired-state=running --format {format} {service}"
    ));
    match tasks {
        Some(tasks) => match running_node(&tasks) {
            Some(node) => {
                bail!(
                    "the Postgres task of stack {stack} runs on node {node}, not on this one: run the command on {node} (it streams through that node's engine; e.g. DOCKER_HOST=ssh://{node})"
                )
            }
            None => bail!(
                "service {service} has no running task ({}): see `cargo xtask deploy status --stack {stack}`",
                tasks.lines().next().unwrap_or("no task").replace('\t', " ")
            ),
        },
        None => {
            let format = "{{.Swarm.ControlAvailable}}";
            let state = runner
                .probe(cmd!(sh, "docker info --format {format}"))
                .unwrap_or_default();
            if state == "true" {
                usage_bail!(
                    "--stack {stack}: no such stack with a `{SERVICE}` service (`docker stack ls`); deploy it with `cargo xtask deploy --env ENV --stack {stack}`"
                )
            }
            usage_bail!(
                "--stack {stack}: no running `{SERVICE}` task of the stack on this node, and this engine is no swarm manager to say where it runs: run the command on the node that holds the task"
            )
        }
    }
}

/// The node of the first running task in `docker service ps --format
/// '{{.Node}}\t{{.CurrentState}}'` output.
fn running_node(tasks: &str) -> Option<&str> {
    tasks
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .find(|(_, state)| state.starts_with("Running"))
        .map(|(node, _)| node)
}

/// The environment `stack` was deployed from: its container's label, else
/// the active environment of the env file.
fn stack_environment(
    sh: &Shell,
    runner: &Runner,
    project: &Project,
    stack: &str,
    id: &str,
) -> Result<Environment> {
    let format = format!("{{{{index .Config.Labels \"{ENVIRONMENT_LABEL}\"}}}}");
    let label = runner.read(cmd!(sh, "docker inspect --format {format} {id}"))?;
    let label = label.trim();
    if !label.is_empty() && label != "<no value>" {
        return label
            .parse::<Environment>()
            .with_context(|| format!("stack {stack}: label {ENVIRONMENT_LABEL}={label}"));
    }
    match project.active()? {
        Some(environment) => Ok(environment),
        None => usage_bail!(
            "stack {stack} carries no {ENVIRONMENT_LABEL} label (deployed with -f or by an older xtask) and {} names no active environment: redeploy with `cargo xtask deploy --env ENV --stack {stack}`",
            project.env.path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_of_a_running_task() {
        let tasks = "node-2\tPreparing 3 seconds ago\nnode-3\tRunning 2 minutes ago\n";
        assert_eq!(running_node(tasks), Some("node-3"));
        assert_eq!(running_node("node-1\tPending 1 second ago"), None);
        assert_eq!(running_node(""), None);
    }
}
