//! `cargo xtask release`: the release pipeline as one command per step, the
//! same on a laptop and a CI runner. `plan` checks and prints everything and
//! changes nothing; `dist` builds the reproducible archive, SBOM and
//! `SHA256SUMS`; `images` builds the project images for the version, writes an
//! image bundle and `images.lock`; `sign` signs `SHA256SUMS` with minisign;
//! `verify` checks what an operator would check; `publish` pushes the images
//! to a registry and records their digests. Every step shares one output
//! directory ([`Release::out`]) and accepts `--dry-run`.

mod common;
mod dist;
mod images;
mod plan;
mod publish;
mod sbom;
mod sign;
mod sums;
mod verify;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use xshell::Shell;

use crate::{process::Runner, Global};
pub use common::Release;

/// Plan, build, sign, verify and publish a release.
#[derive(Args)]
#[command(after_help = "Examples (the order CI runs them in):
  cargo xtask release plan --format json
  cargo xtask release dist
  cargo xtask release images
  FOG_MINISIGN_KEY_FILE=~/keys/fog.key cargo xtask release sign
  cargo xtask release verify target/release-artifacts/0.1.0 --pubkey fog.pub
  cargo xtask release publish --registry registry.example:5000
Every step takes --dry-run (print the exact commands) and --version X.Y.Z.")]
pub struct Cmd {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// Check the tree, tag, changelog, CI and key; print every step, artifact and tag.
    Plan(plan::Args),
    /// Build the reproducible archive, SBOM and SHA256SUMS.
    Dist(dist::Args),
    /// Build the project images for the version, bundle them, write images.lock.
    Images(images::Args),
    /// Sign SHA256SUMS with minisign.
    Sign(sign::Args),
    /// Check signature, checksums, archive listing, and that the bundle loads.
    Verify(verify::Args),
    /// Push the images to a registry and record the pushed digests.
    Publish(publish::Args),
}

/// Options every step shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Release version; the workspace version when omitted.
    #[arg(long = "version", id = "release_version", value_name = "X.Y.Z")]
    version: Option<String>,
    /// Artifact directory (default: target/release-artifacts/<version>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global, cli: &clap::Command) -> Result<()> {
        let runner = Runner::new(global);
        match self.command {
            Sub::Plan(args) => plan::run(sh, &runner, args),
            Sub::Dist(args) => dist::run(sh, &runner, args, cli),
            Sub::Images(args) => images::run(sh, &runner, args),
            Sub::Sign(args) => sign::run(sh, &runner, args),
            Sub::Verify(args) => verify::run(sh, &runner, args),
            Sub::Publish(args) => publish::run(sh, &runner, args),
        }
    }
}
