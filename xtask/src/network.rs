//! `cargo xtask network`: placeholder until the engine work lands.
use xshell::Shell;

#[derive(clap::Args)]
pub struct Cmd {}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> anyhow::Result<()> {
        anyhow::bail!("`cargo xtask network` is not implemented yet")
    }
}
