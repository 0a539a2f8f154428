//! What adopt did, recorded before each step in `<dir>/adopt-<project>.json`
//! (written atomically: temp file, fsync, rename), and the way back that
//! reads it: stop the new environment, start again the old containers adopt
//! stopped. A failed adopt also removes the new volumes it created (they only
//! ever held copies); `adopt --rollback` after a success keeps them, since
//! the new environment may have written to them since.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::engine::{compose::Compose, Engine};
use crate::environments::Environment;
use crate::process::Runner;
use crate::usage_bail;

/// The state file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Journal {
    pub old_project: String,
    pub environment: String,
    pub env_file: PathBuf,
    pub new_project: String,
    /// The finished backup set, once there is one.
    pub backup_set: Option<PathBuf>,
    /// Old containers (ids) that ran and that adopt stopped.
    pub stopped: Vec<String>,
    /// New volumes adopt created.
    pub created_volumes: Vec<String>,
    /// `checked`, `backed-up`, `stopped`, `restored`, `up`, `done`,
    /// `rolled-back`, `failed`.
    pub phase: String,
}

impl Journal {
    pub fn path(dir: &Path, project: &str) -> PathBuf {
        dir.join(format!("adopt-{project}.json"))
    }

    /// Record `phase` (and everything else) atomically.
    pub fn record(&mut self, dir: &Path, phase: &str, dry_run: bool) -> Result<()> {
        self.phase = phase.to_string();
        if dry_run {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        let json = serde_json::to_vec_pretty(self)?;
        crate::atomic::write(&Self::path(dir, &self.old_project), &json, 0o600)
    }

    /// The journal of `project` in `dir`; none is a usage error.
    pub fn read(dir: &Path, project: &str) -> Result<Journal> {
        let path = Self::path(dir, project);
        if !path.is_file() {
            usage_bail!(
                "no adopt of project `{project}` recorded in {} (pass the --dir the adopt used)",
                path.display()
            );
        }
        let text = std::fs::read(&path)?;
        serde_json::from_slice(&text).with_context(|| format!("cannot read {}", path.display()))
    }

    /// The new environment's compose invocation.
    pub fn compose(&self, engine: &Engine) -> Result<Compose> {
        let environment: Environment = self.environment.parse()?;
        Ok(Compose::new(
            engine.clone(),
            &crate::project_root(),
            self.new_project.clone(),
            &self.env_file,
            environment.files(),
        ))
    }
}

/// Stop the new environment, remove its volumes adopt created when
/// `remove_created`, and start the old containers again. Every step is
/// tried; the errors are returned together.
pub fn undo(sh: &Shell, runner: &Runner, journal: &Journal, remove_created: bool) -> Result<()> {
    let mut problems: Vec<String> = Vec::new();
    let engine = Engine::detect(runner.verbose)?;
    let compose = journal.compose(&engine)?;
    let verb: &[&str] = if remove_created {
        &["down", "--remove-orphans"]
    } else {
        &["stop"]
    };
    if let Err(e) = runner.run(compose.cmd(sh, verb)) {
        problems.push(format!("stopping the new environment: {e:#}"));
    }
    if remove_created {
        for volume in &journal.created_volumes {
            if let Err(e) = runner.run(cmd!(sh, "docker volume rm {volume}")) {
                problems.push(format!("removing new volume {volume}: {e:#}"));
            }
        }
    }
    if !journal.stopped.is_empty() {
        let ids = &journal.stopped;
        if let Err(e) = runner.run(cmd!(sh, "docker start {ids...}")) {
            problems.push(format!("starting the old containers: {e:#}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", problems.join("; "))
    }
}
