//! `cargo xtask up --env ENV`: bring up any environment (`dev+betanet+monitoring`)
//! and make it the active one.
use xshell::Shell;

use crate::{
    bringup::{bring_up, UpArgs},
    environments::Environment,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask up --env dev+betanet\n  cargo xtask up --env prod+monitoring --timeout 300"
)]
pub struct Cmd {
    /// The environment: overlays joined with `+` (see `cargo xtask env list`).
    #[arg(long, value_name = "ENV")]
    env: Environment,
    #[command(flatten)]
    up: UpArgs,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> anyhow::Result<()> {
        bring_up(sh, global, &self.env, &self.up).map(drop)
    }
}
