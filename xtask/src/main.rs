//! `cargo xtask`: the single entry point for every fog-compute workflow.
//!
//! Each subcommand lives in its own module as `Cmd` with
//! `fn run(self, sh: &Shell, global: &Global) -> anyhow::Result<()>`. This file
//! only parses flags, dispatches, and turns errors into one line and an exit
//! code: 0 success, 1 failure, 2 usage error.

mod bench;
mod ci;
mod environments;
mod usage;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use xshell::Shell;

pub use usage::UsageError;

/// fog-compute workflows: compose overlays, Docker environments, the mixnode.
#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    version,
    about,
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Flags every subcommand accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Print the exact commands a mutating step would run, and run none of them.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Print each external command as it runs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Subcommand)]
enum Command {
    Ci(ci::Cmd),
    Bench(bench::Cmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Shell::new().map_err(anyhow::Error::from).and_then(|sh| {
        sh.change_dir(project_root());
        match cli.command {
            Command::Ci(cmd) => cmd.run(&sh, &cli.global),
            Command::Bench(cmd) => cmd.run(&sh, &cli.global),
        }
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

/// The repository root: the parent of this crate's manifest directory.
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}
