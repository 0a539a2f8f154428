//! `cargo xtask prod`: bring up base+prod. Refuses placeholder, short or
//! example secrets in `.env` and writes the secret files prod.yml declares.
use xshell::Shell;

use crate::bringup::{bring_up, UpArgs};

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  cargo xtask prod\n  cargo xtask --dry-run prod")]
pub struct Cmd {
    #[command(flatten)]
    up: UpArgs,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> anyhow::Result<()> {
        let env = "prod".parse()?;
        bring_up(sh, global, &env, &self.up).map(drop)
    }
}
