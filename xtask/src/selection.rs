//! Which compose files a command reads and with which variables: the
//! `--env ENV | -f FILE... [--env-file F] [--compose v1|v2]` flags
//! ([`SourceArgs`]) shared by `config`, `check`, `deploy` and `report`, and the
//! [`Selection`] each resolves to (named environments from the repository's
//! `compose/`, or explicit files with the `.env` beside the first).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::compose::{EnvSource, Flavour, Project};
use crate::environments::Environment;
use crate::usage_bail;

/// Which compose files to read.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SourceArgs {
    /// A named environment, e.g. `dev` or `dev+betanet+monitoring`.
    #[arg(long, value_name = "ENV", conflicts_with = "file")]
    pub env: Option<String>,
    /// Compose files to merge in order, instead of a named environment.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// Read variables from this file instead of `.env` (the process
    /// environment still wins, as in Compose).
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Read the files as this Compose does: v2 (`docker compose`) or v1
    /// (`docker-compose` 1.29, which refuses v2-only syntax such as `include`).
    #[arg(
        long = "compose",
        value_enum,
        value_name = "VERSION",
        default_value = "v2"
    )]
    pub flavour: Flavour,
}

/// One set of files to load, with the variables to interpolate them with.
#[derive(Debug, Clone)]
pub struct Selection {
    /// The environment name, or the files joined by `+`.
    pub label: String,
    /// Files to merge, in order (absolute for named environments).
    pub files: Vec<PathBuf>,
    /// Set for the repository's named environments.
    pub environment: Option<Environment>,
    pub env: EnvSource,
}

impl Selection {
    /// A named environment: files under the repo's `compose/`, variables from
    /// the process environment, then `.env` (or `.env.example`).
    pub fn named(environment: Environment, env: &EnvSource) -> Selection {
        let root = crate::project_root();
        Selection {
            label: environment.to_string(),
            files: environment.files().iter().map(|f| root.join(f)).collect(),
            environment: Some(environment),
            env: env.clone(),
        }
    }

    /// Explicit files; variables from the process environment, then the `.env`
    /// beside the first file. A missing file is a usage error.
    pub fn files(files: &[PathBuf], env_file: Option<&Path>) -> Result<Selection> {
        for f in files {
            if let Some(why) = crate::compose::read::unusable(f) {
                usage_bail!(
                    "compose file `{}` {why}; pass a compose file to -f",
                    f.display()
                );
            }
        }
        let env = match env_file {
            Some(path) => EnvSource::with_process_env(Some(path))?,
            None => {
                let dot_env = files[0].parent().map(|d| d.join(".env"));
                EnvSource::with_process_env(dot_env.as_deref().filter(|p| p.is_file()))?
            }
        };
        Ok(Selection {
            label: files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" + "),
            files: files.to_vec(),
            environment: None,
            env,
        })
    }

    pub fn load(&self) -> Result<Project, crate::compose::LoadError> {
        Project::load(&self.files, &self.env)
    }
}

impl SourceArgs {
    /// The selections these flags name; with neither flag, `default` environments.
    pub fn selections(&self, default: &[&str]) -> Result<Vec<Selection>> {
        if let Some(path) = &self.env_file {
            if !path.is_file() {
                usage_bail!(
                    "env file `{}` does not exist; pass an existing file to --env-file",
                    path.display()
                );
            }
        }
        if !self.file.is_empty() {
            let mut selection = Selection::files(&self.file, self.env_file.as_deref())?;
            selection.env = selection.env.with_flavour(self.flavour);
            return Ok(vec![selection]);
        }
        let env = match &self.env_file {
            Some(path) => EnvSource::with_process_env(Some(path))?,
            None => crate::dotenv::env_source(&crate::project_root())?,
        }
        .with_flavour(self.flavour);
        let names: Vec<&str> = match &self.env {
            Some(name) => vec![name.as_str()],
            None => default.to_vec(),
        };
        names
            .into_iter()
            .map(|n| {
                let environment: Environment = n.parse().map_err(anyhow::Error::from)?;
                Ok(Selection::named(environment, &env))
            })
            .collect()
    }
}
