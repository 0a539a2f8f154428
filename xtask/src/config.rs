//! `cargo xtask config`: print the merged, interpolated compose model of an
//! environment (or of explicit `-f` files) as a compose file that Compose
//! accepts, like `docker compose config`; `--services` lists service names.
//! The `--env | -f` flags are [`crate::selection::SourceArgs`].

use anyhow::Result;
use xshell::Shell;

use crate::output::write_stdout;
use crate::selection::SourceArgs;

/// Print the merged model for one environment or set of files.
#[derive(clap::Args)]
#[command(after_help = "\
Without --env or -f, prints the dev environment. Relative host paths are made absolute and
`$` is written as `$$`, so `docker-compose -f <output> config` reads the same model back.

Examples:
  cargo xtask config
  cargo xtask config --env prod+betanet
  cargo xtask config -f a.yml -f b.yml --services
  cargo xtask config -f docker-compose.yml --compose v1
  cargo xtask config --env dev --env-file .env.example")]
pub struct Cmd {
    #[command(flatten)]
    source: SourceArgs,
    /// Print only the service names, one per line.
    #[arg(long)]
    services: bool,
}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> Result<()> {
        let selection = self.source.selections(&["dev"])?.remove(0);
        let project = selection.load()?;
        project.check_dependencies()?;
        if self.services {
            let mut names = project.service_names().join("\n");
            names.push('\n');
            write_stdout(&names)
        } else {
            write_stdout(&project.to_yaml())
        }
    }
}
