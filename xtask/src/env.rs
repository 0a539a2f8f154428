//! `cargo xtask env show|list|use`: the active environment is recorded in the
//! env file as `COMPOSE_FILE` (files joined with `:` or `COMPOSE_PATH_SEPARATOR`)
//! and `COMPOSE_PROJECT_NAME`, so plain `docker compose` / `docker-compose` run
//! from the repository root acts on the same stack. `use` switches: it records
//! the new environment, starts it with `up -d --remove-orphans` (containers of
//! overlays no longer in use are removed, volumes are kept) and waits for health.
use anyhow::Result;
use xshell::Shell;

use crate::{
    bringup::{bring_up, UpArgs},
    dotenv::DotEnv,
    engine::{project::environment_from_files, Engine},
    environments::Environment,
    Global,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask env show\n  cargo xtask env list\n  cargo xtask env use betanet\n  cargo xtask --dry-run env use dev+monitoring"
)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Show the active environment, project, compose files and Compose flavour.
    Show,
    /// List the named environments with their overlays; `*` marks the active one.
    List,
    /// Switch to ENV: record it, start it, remove containers of dropped overlays.
    Use {
        /// The environment, e.g. `betanet` or `dev+betanet+monitoring`.
        env: Environment,
        #[command(flatten)]
        up: UpArgs,
    },
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        match self.action {
            Action::Use { env, up } => bring_up(sh, global, &env, &up).map(drop),
            Action::Show => show(global),
            Action::List => list(global),
        }
    }
}

fn active(env: &DotEnv) -> Result<Option<Environment>> {
    match env.get("COMPOSE_FILE").filter(|f| !f.is_empty()) {
        Some(files) => {
            environment_from_files(&files, &env.get_or("COMPOSE_PATH_SEPARATOR", ":")).map(Some)
        }
        None => Ok(None),
    }
}

fn show(global: &Global) -> Result<()> {
    let env = DotEnv::ensure(&crate::project_root(), global.dry_run)?;
    let active = active(&env)?;
    let compose = match Engine::detect(global.verbose) {
        Ok(engine) => format!(
            "{}, engine {}",
            engine.compose_name(),
            engine.server_version
        ),
        Err(err) => format!("unavailable: {err:#}"),
    };
    println!("env file:     {}", env.path.display());
    println!(
        "environment:  {}",
        active
            .as_ref()
            .map_or("none (run `cargo xtask env use ENV`)".to_string(), |e| e
                .to_string())
    );
    println!(
        "project:      {}",
        env.get_or("COMPOSE_PROJECT_NAME", "fog")
    );
    if let Some(active) = &active {
        let files: Vec<String> = active
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        println!("files:        {}", files.join(" "));
    }
    println!("compose:      {compose}");
    Ok(())
}

fn list(global: &Global) -> Result<()> {
    let env = DotEnv::ensure(&crate::project_root(), global.dry_run)?;
    let active = active(&env)?;
    let mut envs = Environment::all();
    if let Some(a) = &active {
        if !envs.contains(a) {
            envs.push(a.clone());
        }
    }
    let width = envs.iter().map(|e| e.to_string().len()).max().unwrap_or(0);
    for environment in envs {
        let mark = if active.as_ref() == Some(&environment) {
            "*"
        } else {
            " "
        };
        let overlays: Vec<&str> = environment.overlays().iter().map(|o| o.name).collect();
        println!(
            "{mark} {:width$}  {}",
            environment.to_string(),
            overlays.join(" + ")
        );
    }
    Ok(())
}
