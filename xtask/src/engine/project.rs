//! The stack the commands act on: the repository root, its env file (or
//! `$FOG_ENV_FILE`), the engine, the compose project name, and the active
//! environment recorded in the env file as `COMPOSE_FILE`, so that plain
//! `docker compose`/`docker-compose` run from the repository root acts on the
//! same files and project as the xtask.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{compose::Compose, networks, Engine};
use crate::process::Runner;
use crate::{dotenv::DotEnv, environments::Environment, usage_bail};

/// An opened stack: env file loaded (created if needed) and the engine found.
pub struct Project {
    pub root: PathBuf,
    pub env: DotEnv,
    pub engine: Engine,
    pub name: String,
}

impl Project {
    /// The project's two networks: keys, names and subnets from `.env`.
    pub fn networks(&self) -> Result<Vec<networks::Wanted>> {
        networks::wanted(&self.env)
    }

    /// Create (or adopt) the project's networks as `.env` names them, and
    /// return them. Idempotent; conflicts are errors naming what collides.
    pub fn ensure_networks(
        &self,
        sh: &xshell::Shell,
        runner: &Runner,
    ) -> Result<Vec<networks::Wanted>> {
        let wants = self.networks()?;
        networks::ensure(sh, runner, &self.name, &self.engine.compose_version, &wants)?;
        Ok(wants)
    }

    /// Ensure the env file, then detect the engine.
    pub fn open(dry_run: bool, verbose: bool) -> Result<Project> {
        let root = crate::project_root();
        let env = DotEnv::ensure(&root, dry_run)?;
        let name = env.get_or("COMPOSE_PROJECT_NAME", "fog");
        let valid = name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric());
        if !valid {
            usage_bail!(
                "COMPOSE_PROJECT_NAME=`{name}` in {}: use lowercase letters, digits, `-` and `_`",
                env.path.display()
            );
        }
        let engine = Engine::detect(verbose)?;
        Ok(Project {
            root,
            env,
            engine,
            name,
        })
    }

    /// The compose invocation for `environment`.
    pub fn compose(&self, environment: &Environment) -> Compose {
        Compose::new(
            self.engine.clone(),
            &self.root,
            self.name.clone(),
            &self.env.path,
            environment.files(),
        )
    }

    fn separator(&self) -> String {
        self.env.get_or("COMPOSE_PATH_SEPARATOR", ":")
    }

    /// The environment recorded in `COMPOSE_FILE`, if any.
    pub fn active(&self) -> Result<Option<Environment>> {
        let Some(files) = self.env.get("COMPOSE_FILE").filter(|f| !f.is_empty()) else {
            return Ok(None);
        };
        environment_from_files(&files, &self.separator())
            .map(Some)
            .with_context(|| {
                format!(
                    "COMPOSE_FILE in {} is not a fog environment",
                    self.env.path.display()
                )
            })
    }

    /// The active environment, or a usage error saying how to pick one.
    pub fn active_or_bail(&self) -> Result<Environment> {
        match self.active()? {
            Some(env) => Ok(env),
            None => usage_bail!(
                "no active environment in {}: start one with `cargo xtask dev` or `cargo xtask env use ENV`",
                self.env.path.display()
            ),
        }
    }

    /// Record `environment` as active: `COMPOSE_FILE` and `COMPOSE_PROJECT_NAME`.
    pub fn record_active(&mut self, environment: &Environment, dry_run: bool) -> Result<()> {
        let files: Vec<String> = environment
            .files()
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        let value = files.join(&self.separator());
        let name = self.name.clone();
        self.env.update(
            &[("COMPOSE_FILE", value), ("COMPOSE_PROJECT_NAME", name)],
            dry_run,
        )
    }

    /// `compose/.env -> ../.env`, so Compose finds the variables from either
    /// directory. Only for the repository's own `.env`, and only if absent.
    pub fn link_compose_env(&self, dry_run: bool) -> Result<()> {
        if !self.env.is_default(&self.root) {
            return Ok(());
        }
        let link = self.root.join("compose/.env");
        if link.symlink_metadata().is_ok() || !self.root.join("compose").is_dir() {
            return Ok(());
        }
        if dry_run {
            println!("ln -s ../.env compose/.env");
            return Ok(());
        }
        std::os::unix::fs::symlink(Path::new("../.env"), &link)
            .with_context(|| format!("cannot create the symlink {}", link.display()))
    }
}

/// `compose/base.yml:compose/dev.yml` back to the environment `dev`.
pub fn environment_from_files(files: &str, separator: &str) -> Result<Environment> {
    let mut names = Vec::new();
    for file in files.split(separator).filter(|f| !f.is_empty()) {
        let stem = Path::new(file)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(file);
        if stem != "base" {
            names.push(stem.to_string());
        }
    }
    let name = if names.is_empty() {
        "base".to_string()
    } else {
        names.join("+")
    };
    Ok(name.parse::<Environment>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_file_maps_back_to_the_environment() {
        let env =
            environment_from_files("compose/base.yml:compose/dev.yml:compose/betanet.yml", ":")
                .unwrap();
        assert_eq!(env.to_string(), "dev+betanet");
        let env = environment_from_files("compose/base.yml;compose/prod.yml", ";").unwrap();
        assert_eq!(env.to_string(), "prod");
        assert!(environment_from_files("compose/base.yml:other/x.yml", ":").is_err());
    }
}
