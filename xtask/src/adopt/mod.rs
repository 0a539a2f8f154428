//! `cargo xtask adopt --from FILE[,FILE...] --env ENV`: move a host that runs
//! the old layout onto an environment of the consolidated overlays, with
//! every row and file and a way back. The old files load into the one compose
//! model (the file lists of `report --before`); [`plan`] maps services and
//! volumes and is always printed first with sizes ([`inspect`]), port
//! conflicts and the static before/after comparison
//! ([`crate::comparison`]); `--dry-run` stops there. [`check`] refuses,
//! changing nothing, when the target volumes hold data, the old Postgres
//! cannot run, its major version is newer than the new server's, or a source
//! volume is used outside the old project. [`transfer`] then takes a
//! verified backup set ([`set`]), stops the old containers, restores and
//! copies into the new volumes, brings the environment up and verifies; any
//! failure after the stop is undone from the [`journal`], which is also what
//! `adopt --rollback --project NAME` reads.

pub mod check;
pub mod inspect;
pub mod journal;
pub mod plan;
pub mod render;
pub mod set;
pub mod transfer;

use std::{collections::BTreeMap, path::PathBuf};

use anyhow::{Context as _, Result};
use clap::ValueEnum;
use xshell::Shell;

use crate::bringup::UpArgs;
use crate::comparison::spec::{self, Loaded};
use crate::compose::{EnvSource, Project as Model};
use crate::engine::{containers::Container, project::Project};
use crate::environments::Environment;
use crate::process::Runner;
use crate::{usage_bail, Global};

/// Output format of the plan and the closing figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// Move an old-layout stack onto an environment, or undo that.
#[derive(clap::Args)]
#[command(after_help = "\
--from takes the file lists of `report --before` (comma-separated; variables from the process
environment, then the .env beside the first file). --project defaults to what Compose v2 names the
project of the first file's folder (lowercase, keeping [a-z0-9_-]).

The plan comes first, always: old service -> new service (by image repository and the container
path of each mount, then by name), services left behind with their volumes, each volume -> new
volume with its size and how it moves (Postgres by pg_dump/pg_restore with the old model's user,
database and password, ownership mapped to the new role; other volumes by a copy verified by entry
count and bytes), port conflicts, and the static before/after report. --dry-run stops there. An
unclear mapping is refused (exit 2) naming the choice; settle it with --map OLD_VOLUME=NEW_VOLUME.

The move: stop the old services other than Postgres, take a verified backup set into DIR
(adopt-<project>-<time>/: dump, one tar per copied volume, manifest.json), stop the old Postgres
(containers and volumes are kept; old volumes are only ever mounted read-only), create the
environment's networks and volumes, restore and copy, bring the environment up (its migrations run
on top), verify row counts and files, and print the way back. Any failure after the first stop
stops the new environment, removes the volumes adopt created and starts the old containers again.
The journal DIR/adopt-<project>.json records each step; `--rollback --project NAME` reads it.

Refused, changing nothing: target volumes that hold data (--replace backs them up into the set and
empties them first), an old Postgres that is not running and cannot be started, an old major
version newer than the new server's, a source volume used by a container of another project.

Examples:
  cargo xtask adopt --from /srv/fog/docker-compose.yml,/srv/fog/docker-compose.dev.yml --env dev --dry-run
  cargo xtask adopt --from /srv/fog/docker-compose.yml --env dev --map prometheus-data=prometheus_dev_data --yes
  cargo xtask adopt --from /srv/fog/docker-compose.yml --env betanet --yes --format json
  cargo xtask adopt --rollback --project fog")]
pub struct Cmd {
    /// The old layout's compose files, comma-separated.
    #[arg(
        long,
        value_name = "FILE[,FILE...]",
        required_unless_present = "rollback"
    )]
    from: Option<String>,
    /// The old compose project (default: Compose's name for the first file's folder).
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
    /// The environment to move onto (dev, betanet, dev+betanet, ...).
    #[arg(long, value_name = "ENV", required_unless_present = "rollback")]
    env: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Settle a mapping: old volume (key or engine name) onto a new volume key.
    #[arg(long = "map", value_name = "OLD=NEW")]
    map: Vec<String>,
    /// Adopt even when the target volumes hold data: back them up into the set first.
    #[arg(long)]
    replace: bool,
    /// Undo a finished adopt: stop the new environment, start the old containers.
    #[arg(long, requires = "project", conflicts_with_all = ["from", "env", "map", "replace"])]
    rollback: bool,
    /// Where the backup set and the journal go [default: backups/ in the repository].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Plan and closing figures as text or as JSON (one line of phase times at the end).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    up: UpArgs,
}

/// Everything adopt knows once it has read both layouts and the engine.
pub struct Context {
    pub old_project: String,
    pub old: Loaded,
    pub after: Loaded,
    pub environment: Environment,
    pub project: Project,
    pub new_model: Model,
    pub plan: plan::Plan,
    /// An image with sh, find, tar, cp and postgres: the new Postgres image.
    pub helper: String,
    /// Old volume engine name -> its figures.
    pub figures: BTreeMap<String, inspect::Figures>,
    pub old_containers: Vec<Container>,
    /// The new Postgres role and database.
    pub new_user: String,
    pub new_database: String,
    pub dir: PathBuf,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let dir = self
            .dir
            .clone()
            .map(absolute)
            .unwrap_or_else(|| crate::project_root().join("backups"));
        if self.rollback {
            let project = self.project.as_deref().expect("clap requires --project");
            return transfer::rollback(sh, &runner, &dir, project);
        }
        let from = self.from.as_deref().expect("clap requires --from");
        let env_name = self.env.as_deref().expect("clap requires --env");
        let environment: Environment = env_name
            .parse()
            .map_err(|e| crate::UsageError::new(format!("--env `{env_name}`: {e}")))?;
        let maps = self
            .map
            .iter()
            .map(|m| plan::parse_map(m))
            .collect::<Result<Vec<_>, _>>()?;
        let old = spec::load(sh, &runner, "--from", from, &crate::project_root())?;
        let spec::Spec::Files(files) = spec::Spec::parse("--from", from)? else {
            usage_bail!("--from `{from}`: give the old layout's compose files, e.g. --from old/docker-compose.yml,old/docker-compose.dev.yml");
        };
        let project = Project::open(global.dry_run, global.verbose)?;
        let old_project = match &self.project {
            Some(p) => p.clone(),
            None => {
                let first = absolute(files[0].clone());
                let folder = first
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                plan::compose_project_name(&folder, project.engine.flavor)
            }
        };
        if old_project.is_empty() {
            usage_bail!(
                "--from `{from}`: cannot name the old project from its folder; pass --project NAME"
            );
        }
        if project.name == old_project {
            usage_bail!(
                "the old project and the new environment are both named `{old_project}`: set another COMPOSE_PROJECT_NAME in {}",
                project.env.path.display()
            );
        }
        let new_model = project.compose(&environment).model(&project.env)?;
        let vars = EnvSource::with_process_env(Some(&project.env.path))?;
        let after = Loaded::environment(&environment, &vars)?;
        let plan = plan::map(&old.project, &old_project, &new_model, &project.name, &maps)?;
        let Some(pg) = new_model.service(crate::database::SERVICE) else {
            usage_bail!("environment {environment} has no `postgres` service to adopt into");
        };
        let helper = pg
            .image
            .clone()
            .context("the new postgres service names no image")?;
        let new_user = pg.env("POSTGRES_USER").unwrap_or("postgres").to_string();
        let new_database = pg.env("POSTGRES_DB").unwrap_or(&new_user).to_string();
        let old_containers = crate::engine::containers::list(sh, &runner, &old_project)?;
        if old_containers.is_empty() {
            usage_bail!(
                "no container of compose project `{old_project}` exists: start the old stack, or pass the --project it runs under"
            );
        }
        let mut ctx = Context {
            old_project,
            old,
            after,
            environment,
            project,
            new_model,
            plan,
            helper,
            figures: BTreeMap::new(),
            old_containers,
            new_user,
            new_database,
            dir,
        };
        if !self.up.skip_images {
            crate::bringup::ensure_images(&ctx.environment, &runner)?;
            ctx.project.env.reload()?;
            ctx.new_model = ctx
                .project
                .compose(&ctx.environment)
                .model(&ctx.project.env)?;
            if let Some(pg) = ctx.new_model.service(crate::database::SERVICE) {
                ctx.helper = pg.image.clone().unwrap_or(ctx.helper);
            }
        }
        for v in &ctx.plan.volumes {
            if inspect::volume_exists(sh, &runner, &v.old_name) {
                let f = inspect::figures(sh, &runner, &ctx.helper, &v.old_name)?;
                ctx.figures.insert(v.old_name.clone(), f);
            }
        }
        let findings = check::run(sh, &runner, &ctx, self.replace)?;
        let report = crate::comparison::static_report(sh, &runner, &ctx.old, &ctx.after);
        match self.format {
            Format::Text => print!("{}", render::plan(&ctx, &findings, &report)),
            Format::Json => println!("{}", render::plan_json(&ctx, &findings, &report)?),
        }
        findings.refuse()?;
        if global.dry_run {
            eprintln!("--dry-run: nothing was changed");
            return Ok(());
        }
        if !self.yes {
            crate::confirm::or_cancel(
                "adopt",
                &format!(
                    "Stop project {} and move its data into {} (project {})?",
                    ctx.old_project, ctx.environment, ctx.project.name
                ),
            )?;
        }
        transfer::run(sh, global, &runner, &ctx, &findings, &self.up, self.format)
    }
}

/// `path` made absolute against the current directory (lexically).
fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}
