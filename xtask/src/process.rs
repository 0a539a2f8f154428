//! Running external commands under the global `--dry-run` and `-v` flags.
//!
//! Every command that changes state (docker build, compose up, network create,
//! ...) goes through [`Runner::run`], which prints it instead of running it in
//! dry-run mode. Queries that only read state go through [`Runner::read`]: they
//! run even in dry-run mode, because later steps depend on their answers.

use anyhow::{Context, Result};
use xshell::Cmd;

use crate::Global;

/// Executes or prints external commands according to the global flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runner {
    pub dry_run: bool,
    pub verbose: bool,
}

impl Runner {
    pub fn new(global: &Global) -> Self {
        Runner {
            dry_run: global.dry_run,
            verbose: global.verbose,
        }
    }

    /// Run a state-changing command, inheriting stdout and stderr.
    /// In dry-run mode print it (`+ docker ...`) and succeed without running it.
    pub fn run(&self, cmd: Cmd<'_>) -> Result<()> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(());
        }
        self.trace(&cmd);
        let line = cmd.to_string();
        cmd.quiet()
            .run()
            .with_context(|| format!("`{line}` failed"))
    }

    /// Run a state-changing command and capture its stdout. In dry-run mode
    /// print it and return an empty string.
    pub fn run_capture(&self, cmd: Cmd<'_>) -> Result<String> {
        if self.dry_run {
            println!("{cmd}");
            return Ok(String::new());
        }
        self.read(cmd)
    }

    /// Run a read-only query and return its trimmed stdout. Runs in dry-run mode too.
    pub fn read(&self, cmd: Cmd<'_>) -> Result<String> {
        self.trace(&cmd);
        let line = cmd.to_string();
        cmd.quiet()
            .read()
            .with_context(|| format!("`{line}` failed"))
    }

    /// Like [`Runner::read`] but a non-zero exit is `Ok(None)`, not an error:
    /// for probes such as "does this image exist?".
    pub fn probe(&self, cmd: Cmd<'_>) -> Option<String> {
        self.trace(&cmd);
        let output = cmd.quiet().ignore_status().output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    fn trace(&self, cmd: &Cmd<'_>) {
        if self.verbose {
            eprintln!("+ {cmd}");
        }
    }
}
