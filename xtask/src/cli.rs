//! The command line: [`Cli`] with its global flags and one [`Command`] variant
//! per module, and the dispatch from a variant to its module's `run`. Kept in
//! the library so completions, man pages and tests see the same definition.
//! Nothing imports this module: the two commands that need the definition
//! itself (`completions`, `release dist`) get it from the dispatch below.

use clap::{CommandFactory, Parser, Subcommand};
use xshell::Shell;

use crate::{
    adopt, backup, bench, betanet, check, ci, claims, completions, config, deploy, dev, down, env,
    images, logs, migrate, network, prod, ps, psql, release, report, restart, restore, up, Global,
};

/// fog-compute workflows: compose overlays, Docker environments, the mixnode.
#[derive(Parser)]
#[command(
    name = "xtask",
    bin_name = "cargo xtask",
    version,
    about,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Check compose files for the defects that broke the old layout (no Docker needed).
    Check(check::Cmd),
    /// Print the merged, interpolated compose model for an environment.
    Config(config::Cmd),
    /// Run every CI check: fmt, clippy, tests, compose check.
    Ci(ci::Cmd),
    /// Check TESTING.md: every README command and promise maps to tests that exist.
    Claims(claims::Cmd),
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
    /// Apply, list or verify database migrations inside the environment.
    Migrate(migrate::Cmd),
    /// Run psql inside the environment's Postgres (`-- ARGS` go to psql).
    Psql(psql::Cmd),
    /// Back up, list, verify (with a restore drill) and prune Postgres backups.
    Backup(backup::Cmd),
    /// Restore a backup: verify, pre-restore backup, restore aside, swap in.
    Restore(restore::Cmd),
    /// Move an old-layout stack onto an environment with every row and file; `--rollback` undoes it.
    Adopt(adopt::Cmd),
    /// Deploy an environment to Docker Swarm; `deploy status|rm|rollback`.
    Deploy(deploy::Cmd),
    /// Compare two stacks' resources (static or --live), or show the running stack's usage.
    Report(report::Cmd),
    /// Plan, build, sign, verify and publish a release.
    Release(release::Cmd),
    /// Print shell completions (bash, zsh, fish) or the man page.
    Completions(completions::Cmd),
}

impl Command {
    pub fn run(self, sh: &Shell, global: &Global) -> anyhow::Result<()> {
        match self {
            Command::Check(cmd) => cmd.run(sh, global),
            Command::Config(cmd) => cmd.run(sh, global),
            Command::Ci(cmd) => cmd.run(sh, global),
            Command::Claims(cmd) => cmd.run(sh, global),
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
            Command::Migrate(cmd) => cmd.run(sh, global),
            Command::Psql(cmd) => cmd.run(sh, global),
            Command::Backup(cmd) => cmd.run(sh, global),
            Command::Restore(cmd) => cmd.run(sh, global),
            Command::Adopt(cmd) => cmd.run(sh, global),
            Command::Deploy(cmd) => cmd.run(sh, global),
            Command::Report(cmd) => cmd.run(sh, global),
            Command::Release(cmd) => cmd.run(sh, global, &Cli::command()),
            Command::Completions(cmd) => cmd.run(sh, global, &Cli::command()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manual::{man_pages, script, Target};

    #[test]
    fn every_shell_completes_the_subcommands() {
        for (shell, _) in Target::SHELLS {
            let text = String::from_utf8(script(&Cli::command(), shell)).unwrap();
            for sub in ["images", "release", "completions"] {
                assert!(text.contains(sub), "{shell:?} script lacks `{sub}`");
            }
        }
    }

    #[test]
    fn man_pages_cover_each_subcommand() {
        let pages = man_pages(&Cli::command()).unwrap();
        assert_eq!(pages[0].0, "xtask.1");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"xtask-release.1"), "{names:?}");
        let top = String::from_utf8_lossy(&pages[0].1);
        assert!(top.contains(".TH xtask"), "{top}");
    }
}
