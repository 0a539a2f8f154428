//! The record that `cargo xtask ci` passed on a commit: `ci` writes it after
//! a full, passing run on a clean tree ([`record_ci_pass`]) and `release
//! plan` requires it for the commit it releases ([`ci_marker`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::{process::Runner, project_root};

/// Where `cargo xtask ci` records that every check passed on `revision`.
pub fn ci_marker(root: &Path, revision: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("ci-passed").join(revision)
}

/// Called by `cargo xtask ci` after a full, passing run: record the commit,
/// but only when the tree is clean (a dirty tree's result says nothing about
/// the commit).
pub fn record_ci_pass(sh: &Shell) -> Result<()> {
    let runner = Runner::default();
    let status = runner.read(cmd!(sh, "git status --porcelain"))?;
    if !status.is_empty() {
        eprintln!("ci: tree has uncommitted changes; not recording a pass for this commit");
        return Ok(());
    }
    let revision = runner.read(cmd!(sh, "git rev-parse HEAD"))?;
    let marker = ci_marker(&project_root(), &revision);
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    crate::backups::archive::write_atomic(&marker, crate::clock::rfc3339_now().as_bytes())?;
    eprintln!("ci: recorded the pass in {}", marker.display());
    Ok(())
}
