//! `cargo xtask images`: the images an environment runs on. `build` builds the
//! project's own images from `docker/` (the mixnode, `FROM scratch`) and skips
//! the build when the content hash of its inputs matches the existing image;
//! `ls` shows what an environment needs and what is present; `offline` builds
//! the third-party services from Debian packages for hosts that cannot pull;
//! `save` and `load` move images to air-gapped hosts as a checksummed bundle;
//! `ensure` does what bring-up does. The work is done by [`crate::image`].

mod ls;

use anyhow::Result;
use clap::{Args, Subcommand};
use xshell::Shell;

use crate::environments::Environment;
use crate::image::{build, bundle, ensure_for, offline, ALL_ENV};
use crate::output::Format;
use crate::process::Runner;

/// Build, list, save or load images; build third-party images offline.
#[derive(Args)]
#[command(after_help = "Examples:
  cargo xtask images build                 # build fog-compute/mixnode (skipped when up to date)
  cargo xtask images ls --env dev+betanet  # what the environment needs, and what is present
  cargo xtask images offline               # Debian-built postgres/prometheus/... for hosts that cannot pull
  cargo xtask images save --env dev+betanet -o bundle/
  cargo xtask images load bundle/")]
pub struct Cmd {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Build the project's images from docker/ (skipped when the inputs are unchanged).
    Build(build::Args),
    /// Show the images an environment needs and whether each is present.
    Ls(ls::Args),
    /// Build third-party images from Debian packages and point .env at them.
    Offline(offline::Args),
    /// Write images to a checksummed bundle directory for air-gapped hosts.
    Save(bundle::SaveArgs),
    /// Verify a bundle's checksums, then load its images.
    Load(bundle::LoadArgs),
    /// Make an environment's images available as bring-up does (build, pull, or offline).
    Ensure(EnsureArgs),
}

#[derive(Args)]
#[command(after_help = "Examples:
  cargo xtask images ensure --env dev+betanet
  FOG_OFFLINE=1 cargo xtask images ensure --env dev+monitoring --format json")]
struct EnsureArgs {
    /// Environment whose images to make available.
    #[arg(long, default_value = ALL_ENV)]
    env: String,
    /// Output format for the report.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> Result<()> {
        let runner = Runner::new(global);
        match self.command {
            Sub::Build(args) => build::run(sh, &runner, args),
            Sub::Ls(args) => ls::run(sh, &runner, args),
            Sub::Offline(args) => offline::run(sh, &runner, args),
            Sub::Save(args) => bundle::save(sh, &runner, args),
            Sub::Load(args) => bundle::load(sh, &runner, args),
            Sub::Ensure(args) => {
                let env: Environment = args.env.parse()?;
                let report = ensure_for(&env, &runner, !args.quiet)?;
                match args.format {
                    Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                    Format::Table => {
                        let none = || "none".to_string();
                        let list = |v: &[String]| if v.is_empty() { none() } else { v.join(", ") };
                        println!("built:   {}", list(&report.built));
                        println!("offline: {}", if report.offline { "yes" } else { "no" });
                        let updates: Vec<String> = report
                            .env_updates
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect();
                        println!("env:     {}", list(&updates));
                        println!("skipped: {}", list(&report.skipped_services));
                    }
                }
                Ok(())
            }
        }
    }
}
