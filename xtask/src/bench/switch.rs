//! `cargo xtask bench switch [--to ENV]`: time the environment switch dev ->
//! betanet (or ENV) with the images already present, the way a developer does it (`env use betanet`
//! after `dev`): record the environment, `up -d --remove-orphans`, and wait until
//! every service is healthy. Each run first brings dev up untimed. It acts on the
//! stack the env file names (`FOG_ENV_FILE` picks a second, isolated one) and
//! takes it down at the end unless `--keep`. Figures are printed, never asserted.
use anyhow::Result;
use xshell::Shell;

use crate::{
    bringup::{bring_up, UpArgs},
    engine::project::Project,
    environments::Environment,
    process::Runner,
    Global,
};

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask bench switch\n  FOG_ENV_FILE=/tmp/bench/.env cargo xtask bench switch --runs 5 --json"
)]
pub struct Cmd {
    /// Timed switches.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// The environment to switch to (from dev).
    #[arg(long, default_value = "betanet", value_name = "ENV")]
    to: Environment,
    /// Leave the stack running at the end.
    #[arg(long)]
    keep: bool,
    #[command(flatten)]
    up: UpArgs,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        if global.dry_run {
            anyhow::bail!("`bench switch` measures real switches; run it without --dry-run");
        }
        let dev: Environment = "dev".parse()?;
        let target = self.to.clone();
        let quiet = UpArgs {
            quiet: true,
            ..self.up.clone()
        };
        let mut seconds = Vec::new();
        let mut phases: Vec<Vec<(&'static str, f64)>> = Vec::new();
        let mut services = 0;
        for run in 1..=self.runs.max(1) {
            bring_up(sh, global, &dev, &quiet)?;
            let outcome = bring_up(sh, global, &target, &quiet)?;
            services = outcome.started.len();
            let s = outcome.elapsed.as_secs_f64();
            let detail: Vec<String> = outcome
                .phases
                .iter()
                .map(|(p, t)| format!("{p} {t:.1}s"))
                .collect();
            eprintln!(
                "run {run}: dev -> {target} in {s:.2}s ({services} services healthy; {})",
                detail.join(", ")
            );
            seconds.push(s);
            phases.push(outcome.phases);
        }
        if !self.keep {
            let project = Project::open(false, global.verbose)?;
            let compose = project.compose(&target);
            Runner::new(global).run(compose.cmd(sh, &["down", "--remove-orphans"]))?;
        }
        let median_of = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let phase_names: Vec<&str> = phases[0].iter().map(|(p, _)| *p).collect();
        let phase_medians: Vec<(&str, f64)> = phase_names
            .iter()
            .enumerate()
            .map(|(i, p)| (*p, median_of(phases.iter().map(|r| r[i].1).collect())))
            .collect();
        let mut sorted = seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
        if self.json {
            let figures = serde_json::json!({
                "benchmark": format!("switch dev->{target}"),
                "phases_median_s": phase_medians.iter().map(|(p, t)| (p.to_string(), serde_json::json!(t))).collect::<serde_json::Map<_, _>>(),
                "runs": seconds,
                "median_s": median, "min_s": min, "max_s": max,
                "services": services, "goal_s": 15.0,
            });
            println!("{}", serde_json::to_string_pretty(&figures)?);
        } else {
            let detail: Vec<String> = phase_medians
                .iter()
                .map(|(p, t)| format!("{p} {t:.1}s"))
                .collect();
            println!(
                "switch dev -> {target}: median {median:.2}s, min {min:.2}s, max {max:.2}s over {} run(s), {services} services healthy (goal <= 15 s); median phases: {}",
                seconds.len(),
                detail.join(", ")
            );
        }
        Ok(())
    }
}
