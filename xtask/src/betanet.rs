//! `cargo xtask betanet [--dev]`: bring up base+betanet (or base+dev+betanet)
//! with the three mixnodes and make it the active environment.
use xshell::Shell;

use crate::bringup::{bring_up, UpArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask betanet\n  cargo xtask betanet --dev")]
pub struct Cmd {
    /// Add the dev overlay: ports on 127.0.0.1 and dev volumes (base+dev+betanet).
    #[arg(long)]
    dev: bool,
    #[command(flatten)]
    up: UpArgs,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> anyhow::Result<()> {
        let env = if self.dev { "dev+betanet" } else { "betanet" }.parse()?;
        bring_up(sh, global, &env, &self.up).map(drop)
    }
}
