//! `cargo xtask`: the single entry point for every fog-compute workflow.
//!
//! Each subcommand lives in its own module as `Cmd` with
//! `fn run(self, sh: &Shell, global: &Global) -> anyhow::Result<()>`. This file
//! only parses flags, dispatches, and turns errors into one line and an exit
//! code: 0 success, 1 failure, 2 usage error.

mod bench;
mod betanet;
mod bringup;
mod check;
mod ci;
mod compose;
mod config;
mod dev;
mod dotenv;
mod down;
mod engine;
mod env;
mod environments;
mod images;
mod logs;
mod network;
mod process;
mod prod;
mod ps;
mod restart;
mod up;
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
    /// Check compose files for the defects that broke the old layout (no Docker needed).
    Check(check::Cmd),
    /// Print the merged, interpolated compose model for an environment.
    Config(config::Cmd),
    /// Run every CI check: fmt, clippy, tests, compose check.
    Ci(ci::Cmd),
    /// Run a benchmark and print the measured figures.
    Bench(bench::Cmd),
    /// Bring up the dev environment (base+dev).
    Dev(dev::Cmd),
    /// Bring up the betanet environment (base+betanet).
    Betanet(betanet::Cmd),
    /// Bring up the prod environment (base+prod).
    Prod(prod::Cmd),
    /// Bring up any environment, e.g. `--env dev+betanet+monitoring`.
    Up(up::Cmd),
    /// Stop the active environment (volumes are kept).
    Down(down::Cmd),
    /// Show services with state, health and ports.
    Ps(ps::Cmd),
    /// Show service logs.
    Logs(logs::Cmd),
    /// Restart one service.
    Restart(restart::Cmd),
    /// Show, list or switch the active environment.
    Env(env::Cmd),
    /// Create, list or remove the project's Docker networks.
    Network(network::Cmd),
    /// Build, list, save or load images; build third-party images offline.
    Images(images::Cmd),
}

impl Command {
    fn run(self, sh: &Shell, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Check(cmd) => cmd.run(sh, global),
            Command::Config(cmd) => cmd.run(sh, global),
            Command::Ci(cmd) => cmd.run(sh, global),
            Command::Bench(cmd) => cmd.run(sh, global),
            Command::Dev(cmd) => cmd.run(sh, global),
            Command::Betanet(cmd) => cmd.run(sh, global),
            Command::Prod(cmd) => cmd.run(sh, global),
            Command::Up(cmd) => cmd.run(sh, global),
            Command::Down(cmd) => cmd.run(sh, global),
            Command::Ps(cmd) => cmd.run(sh, global),
            Command::Logs(cmd) => cmd.run(sh, global),
            Command::Restart(cmd) => cmd.run(sh, global),
            Command::Env(cmd) => cmd.run(sh, global),
            Command::Network(cmd) => cmd.run(sh, global),
            Command::Images(cmd) => cmd.run(sh, global),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = Shell::new().map_err(anyhow::Error::from).and_then(|sh| {
        sh.change_dir(project_root());
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

/// The repository root: the parent of this crate's manifest directory.
pub fn project_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}
