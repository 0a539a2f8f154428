//! `cargo xtask network create|ls|rm`: the project's `fog-network` and
//! `betanet-network`, named and addressed by FOG_NETWORK_NAME/SUBNET and
//! BETANET_NETWORK_NAME/SUBNET from `.env`. `create` is idempotent and names any
//! conflict (wrong subnet, overlap with a Docker network or a host route).
use anyhow::Result;
use xshell::Shell;

use crate::{
    engine::{networks, project::Project},
    process::Runner,
    Global,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask network create\n  cargo xtask network ls\n  cargo xtask --dry-run network rm"
)]
pub struct Cmd {
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create both networks (existing ones with the right subnet are kept).
    Create,
    /// Show both networks: name, subnet from .env, and what the engine has.
    Ls,
    /// Remove both networks (only if this project created them and they are unused).
    Rm,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        let project = Project::open(global.dry_run, global.verbose)?;
        match self.action {
            Action::Create => {
                let wants = project.ensure_networks(sh, &runner)?;
                if !global.dry_run {
                    for w in &wants {
                        eprintln!("network {} ({}) ready", w.name, w.subnet);
                    }
                }
            }
            Action::Rm => {
                let wants = project.networks()?;
                let removed = networks::remove(sh, &runner, &project.name, &wants)?;
                if !global.dry_run && removed.is_empty() {
                    eprintln!("no network of project {} to remove", project.name);
                }
            }
            Action::Ls => {
                let existing = networks::existing(sh, &runner)?;
                let wants = project.networks()?;
                println!(
                    "{:16}  {:24}  {:18}  {:22}  CONTAINERS",
                    "KEY", "NAME", "SUBNET", "ENGINE"
                );
                for w in &wants {
                    let (state, count) = match existing.iter().find(|n| n.name == w.name) {
                        None => ("missing".to_string(), "-".to_string()),
                        Some(n) if n.subnets.iter().any(|s| s.parse().ok() == Some(w.subnet)) => {
                            ("ok".to_string(), n.containers.to_string())
                        }
                        Some(n) => (
                            format!("subnet {}", n.subnets.join(",")),
                            n.containers.to_string(),
                        ),
                    };
                    println!(
                        "{:16}  {:24}  {:18}  {:22}  {count}",
                        w.key,
                        w.name,
                        w.subnet.to_string(),
                        state
                    );
                }
            }
        }
        Ok(())
    }
}
