//! `cargo xtask bench`: filled in below.
use xshell::Shell;
#[derive(clap::Args)]
pub struct Cmd {}
impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> anyhow::Result<()> {
        anyhow::bail!("bench: not implemented yet")
    }
}
