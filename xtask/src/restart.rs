//! `cargo xtask restart`: placeholder until the engine work lands.
use xshell::Shell;

#[derive(clap::Args)]
pub struct Cmd {}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask restart` is not implemented yet")
    }
}
