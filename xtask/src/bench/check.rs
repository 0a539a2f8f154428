//! `cargo xtask bench check`: placeholder until the compose-model work lands.
use xshell::Shell;

#[derive(clap::Args)]
pub struct Cmd {}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask bench check` is not implemented yet")
    }
}
