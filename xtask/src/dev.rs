//! `cargo xtask dev`: bring up the dev environment (base+dev) and make it the
//! active one; see `bringup` for the steps.
use xshell::Shell;

use crate::bringup::{bring_up, UpArgs};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask dev\n  cargo xtask --dry-run dev\n  cargo xtask dev --timeout 300"
)]
pub struct Cmd {
    #[command(flatten)]
    up: UpArgs,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> anyhow::Result<()> {
        let env = "dev".parse()?;
        bring_up(sh, global, &env, &self.up).map(drop)
    }
}
