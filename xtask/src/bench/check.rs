//! `cargo xtask bench check`: how long the native `check` of every named
//! environment takes in one warm process (median and p95 over `--runs`
//! repetitions, after one warm-up), beside the wall time of Compose's own
//! `config` for the same environments (`docker compose` or `docker-compose`,
//! whichever is installed). Figures are printed, never asserted.

use std::path::Path;
use std::time::Instant;

use crate::process;
use anyhow::{Context, Result};
use xshell::Shell;

use crate::environments::Environment;
use crate::lint::check_all;
use crate::selection::Selection;

/// Time `check` over every named environment against `docker-compose config`.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask bench check
  cargo xtask bench check --runs 200 --json
  cargo xtask bench check --skip-compose")]
pub struct Cmd {
    /// Timed repetitions of the whole check (after one warm-up run).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Print the figures as one JSON document.
    #[arg(long)]
    json: bool,
    /// Do not run Compose for the comparison.
    #[arg(long)]
    skip_compose: bool,
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The Compose program [`crate::engine::find_compose`] picks, or `None`.
fn compose_program() -> Option<Vec<&'static str>> {
    let (flavor, _) = crate::engine::find_compose(false).ok()?;
    let (program, lead) = flavor.program();
    Some(
        std::iter::once(program)
            .chain(lead.iter().copied())
            .collect(),
    )
}

/// Total wall time of `<compose> config -q` over every selection, in ms.
fn compose_config_ms(
    runner: &crate::process::Runner,
    program: &[&str],
    selections: &[Selection],
) -> Result<f64> {
    let root = crate::project_root();
    let start = Instant::now();
    for s in selections {
        let mut cmd = process::Cmd::new(program[0]);
        cmd.args(&program[1..])
            .arg("--project-directory")
            .arg(root.join(crate::environments::COMPOSE_DIR));
        if let Some(env_file) = &s.env.file_path {
            cmd.arg("--env-file").arg(env_file);
        }
        for f in &s.files {
            cmd.arg("-f").arg(f);
        }
        let out = runner
            .output(cmd.args(["config", "-q"]))
            .with_context(|| format!("running {}", program.join(" ")))?;
        if !out.status.success() {
            anyhow::bail!(
                "`{} config` failed for {}: {}",
                program.join(" "),
                s.label,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

impl Cmd {
    pub fn run(self, _sh: &Shell, global: &crate::Global) -> Result<()> {
        let runner = crate::process::Runner::new(global);
        let env = crate::dotenv::env_source(&crate::project_root())?;
        let selections: Vec<Selection> = Environment::all()
            .into_iter()
            .map(|e| Selection::named(e, &env))
            .collect();
        if !Path::new(&selections[0].files[0]).is_file() {
            crate::usage_bail!(
                "{} is missing; the benchmark needs the repository's compose files",
                selections[0].files[0].display()
            );
        }
        let warmup = check_all(&selections);
        let findings: usize = warmup.iter().map(|r| r.findings.len()).sum();
        let mut samples: Vec<f64> = (0..self.runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(check_all(&selections));
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        samples.sort_by(f64::total_cmp);
        let median = percentile(&samples, 50.0);
        let p95 = percentile(&samples, 95.0);

        let compose = if self.skip_compose {
            None
        } else {
            compose_program()
                .map(|p| compose_config_ms(&runner, &p, &selections).map(|ms| (p.join(" "), ms)))
                .transpose()?
        };

        if self.json {
            let doc = serde_json::json!({
                "environments": selections.len(),
                "runs": self.runs,
                "findings": findings,
                "check_median_ms": median,
                "check_p95_ms": p95,
                "compose": compose.as_ref().map(|(p, ms)| serde_json::json!({
                    "program": p,
                    "config_total_ms": ms,
                })),
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            return Ok(());
        }
        println!(
            "cargo xtask check, {} environments, {} warm runs ({findings} findings):",
            selections.len(),
            self.runs
        );
        println!("  median {median:8.2} ms   p95 {p95:8.2} ms   (goal <= 20 ms)");
        match compose {
            Some((program, ms)) => println!(
                "{program} config, same {} environments, one pass:\n  total  {ms:8.0} ms   ({:.0}x the native median)",
                selections.len(),
                ms / median.max(1e-9)
            ),
            None => println!("compose config: not measured (no compose installed, or --skip-compose)"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 10.0);
        assert_eq!(percentile(&samples, 95.0), 19.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
    }
}
