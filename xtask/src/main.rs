//! `cargo xtask`: the single entry point for every fog-compute workflow.
//!
//! Each subcommand lives in the `xtask` library as a module with a `Cmd` and
//! `fn run(self, sh: &Shell, global: &Global) -> anyhow::Result<()>`. This file
//! only parses flags, dispatches, and turns errors into one line and an exit
//! code: 0 success, 1 failure, 2 usage error.

// Only `xtask::process` starts a process (xtask/clippy.toml lists the methods).
#![deny(clippy::disallowed_methods)]

use std::process::ExitCode;

use clap::Parser;
use xshell::Shell;
use xtask::{cli::Cli, project_root, UsageError};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Shell::new().map_err(anyhow::Error::from).and_then(|sh| {
        sh.change_dir(project_root());
        xtask::global::check_env()?;
        cli.command.run(&sh, &cli.global)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            if err.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
