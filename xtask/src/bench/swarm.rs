//! `cargo xtask bench swarm [--runs N]`: time from `deploy` to converged, and
//! the time to recover from losing a worker, on the real three-node swarm of
//! `xtask/tests/swarm_cluster.rs` (three Docker engines in containers and a
//! local registry; the harness lives in that test, so the bench runs it,
//! with `CI=true` so a missing engine fails). Each round runs the mixnodes
//! with dead-peer detection off (`PEER_DEAD_TIMEOUT_MS=0`, the kernel's
//! defaults) and on (the default 5000 ms), the order alternating between
//! rounds, so both sit side by side in one run. The test prints one
//! `swarm_cluster-json:` line per run; the figures are printed, never asserted.

use crate::process::{self, Io};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::Shell;

const TEST: &str = "three_node_swarm_places_one_mixnode_per_node_and_recovers_from_losing_a_worker";
const MARKER: &str = "swarm_cluster-json: ";

#[derive(clap::Args)]
#[command(after_help = "\
Each run builds a three-node swarm (about 40 s), deploys betanet's mixnodes one
per node, kills the worker of one and measures until loadgen delivers again.

Examples:
  cargo xtask bench swarm
  cargo xtask bench swarm --runs 1 --json")]
pub struct Cmd {
    /// Rounds; each runs the scenario once with dead-peer detection off and once on.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Run {
    peer_dead_timeout_ms: u64,
    converged_seconds: f64,
    recovered_seconds: f64,
    failover_sent: u64,
    failover_delivered: u64,
}

impl Cmd {
    pub fn run(self, _sh: &Shell, global: &crate::Global) -> Result<()> {
        let runner = crate::process::Runner::new(global);
        let mut runs = Vec::new();
        for round in 0..self.runs {
            let order: [u64; 2] = if round % 2 == 0 { [0, 5000] } else { [5000, 0] };
            for timeout in order {
                let mut cmd =
                    process::Cmd::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
                cmd.current_dir(crate::project_root())
                    .args(["test", "-q", "-p", "xtask", "--test", "swarm_cluster", "--"])
                    .args(["--exact", TEST, "--nocapture"])
                    .env("CI", "true")
                    .env("PEER_DEAD_TIMEOUT_MS", timeout.to_string())
                    .stdin(Io::Null);
                let Some(run) = run_once(&runner, cmd, timeout)? else {
                    continue;
                };
                runs.push(run);
                let r = runs.last().expect("just pushed");
                eprintln!(
                    "  converged {:.1}s, recovered {:.1}s, {}/{} delivered during failover",
                    r.converged_seconds, r.recovered_seconds, r.failover_delivered, r.failover_sent
                );
            }
        }
        if global.dry_run {
            return Ok(());
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&runs)?);
            return Ok(());
        }
        println!(
            "{:<22} {:>5} {:>16} {:>16} {:>22}",
            "PEER_DEAD_TIMEOUT_MS",
            "runs",
            "converged (med)",
            "recovered (med)",
            "failover delivered"
        );
        for timeout in [0u64, 5000] {
            let mine: Vec<&Run> = runs
                .iter()
                .filter(|r| r.peer_dead_timeout_ms == timeout)
                .collect();
            let sent: u64 = mine.iter().map(|r| r.failover_sent).sum();
            let delivered: u64 = mine.iter().map(|r| r.failover_delivered).sum();
            let recovered: Vec<String> = mine
                .iter()
                .map(|r| format!("{:.1}", r.recovered_seconds))
                .collect();
            println!(
                "{:<22} {:>5} {:>15.1}s {:>15.1}s {:>22}",
                if timeout == 0 {
                    "0 (kernel)".to_string()
                } else {
                    timeout.to_string()
                },
                mine.len(),
                super::median(&mine.iter().map(|r| r.converged_seconds).collect::<Vec<_>>()),
                super::median(&mine.iter().map(|r| r.recovered_seconds).collect::<Vec<_>>()),
                format!("{delivered}/{sent}"),
            );
            println!("{:<22} recovered per run: {}", "", recovered.join(", "));
        }
        Ok(())
    }
}

/// Run the test once; its figures from the `swarm_cluster-json:` line
/// (`None` under `--dry-run`, which prints the command instead).
fn run_once(
    runner: &crate::process::Runner,
    mut cmd: process::Cmd,
    timeout: u64,
) -> Result<Option<Run>> {
    if runner.dry_run {
        println!("PEER_DEAD_TIMEOUT_MS={timeout} CI=true {}", cmd.line());
        return Ok(None);
    }
    eprintln!("PEER_DEAD_TIMEOUT_MS={timeout}: building the three-node swarm ...");
    let out = runner
        .output(&mut cmd)
        .context("running `cargo test --test swarm_cluster`")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "the swarm_cluster run with PEER_DEAD_TIMEOUT_MS={timeout} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        );
    }
    parse(&stderr, timeout).map(Some)
}

fn parse(output: &str, timeout: u64) -> Result<Run> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .context("the swarm_cluster test printed no figures (was it skipped?)")?;
    let v: serde_json::Value = serde_json::from_str(line).context("parsing the figures")?;
    let f = |k: &str| v[k].as_f64().with_context(|| format!("no `{k}` in {line}"));
    Ok(Run {
        peer_dead_timeout_ms: timeout,
        converged_seconds: f("converged_seconds")?,
        recovered_seconds: f("recovered_seconds")?,
        failover_sent: f("failover_sent")? as u64,
        failover_delivered: f("failover_delivered")? as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_figures_line_and_refuses_a_run_without_one() {
        let out = "noise\nswarm_cluster-json: {\"converged_seconds\":5.6,\"recovered_seconds\":22.6,\"failover_sent\":2200,\"failover_delivered\":168,\"peer_dead_timeout_ms\":\"0\"}\nmore";
        let run = parse(out, 0).unwrap();
        assert_eq!((run.failover_sent, run.failover_delivered), (2200, 168));
        assert_eq!(run.recovered_seconds, 22.6);
        assert!(parse("test ... ok", 0).is_err());
        assert_eq!(super::super::median(&[3.0, 1.0, 2.0]), 2.0);
    }
}
