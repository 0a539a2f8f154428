//! `cargo xtask bench <target>`: benchmarks that print measured figures (and
//! JSON with `--json`). Figures are measured, never asserted: the numbers go
//! into the closing notes and BENCHMARKS.md files with the command that made them.

mod backup;
mod betanet;
mod check;
mod mixnode;
mod pitr;
mod swarm;
mod switch;

use xshell::Shell;

#[derive(clap::Args)]
pub struct Cmd {
    #[command(subcommand)]
    target: Target,
}

#[derive(clap::Subcommand)]
enum Target {
    /// Per-hop unwrap cost against sphinx-packet, and one node's forwarding rate.
    Mixnode(mixnode::Cmd),
    /// `cargo xtask check` over every environment, beside `docker-compose config`.
    Check(check::Cmd),
    /// Environment switch dev -> betanet with images present.
    Switch(switch::Cmd),
    /// The compose betanet under loadgen at rising rates: zero-loss rate, p50/p99.
    Betanet(betanet::Cmd),
    /// The three-node swarm: deploy to converged, recovery from losing a worker.
    Swarm(swarm::Cmd),
    /// Backup and restore MB/s of Postgres and a volume, beside tar czf and in-container pg_dump.
    Backup(backup::Cmd),
    /// Point-in-time recovery: pgbench with archiving off/on, RPO of a kill -9, restore --to-time of SIZE + SIZE of WAL.
    Pitr(pitr::Cmd),
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> anyhow::Result<()> {
        match self.target {
            Target::Mixnode(cmd) => cmd.run(sh, global),
            Target::Check(cmd) => cmd.run(sh, global),
            Target::Switch(cmd) => cmd.run(sh, global),
            Target::Betanet(cmd) => cmd.run(sh, global),
            Target::Swarm(cmd) => cmd.run(sh, global),
            Target::Backup(cmd) => cmd.run(sh, global),
            Target::Pitr(cmd) => cmd.run(sh, global),
        }
    }
}

/// The median of `values` (the upper one of an even count); 0 when empty.
fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
