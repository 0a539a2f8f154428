//! `cargo xtask bench switch`: time the environment switch dev -> betanet with
//! the images already present, the way a developer does it (`env use betanet`
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
    /// Timed dev -> betanet switches.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    json: bool,
    /// Leave the betanet stack running at the end.
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
        let betanet: Environment = "betanet".parse()?;
        let quiet = UpArgs {
            quiet: true,
            ..self.up.clone()
        };
        let mut seconds = Vec::new();
        let mut services = 0;
        for run in 1..=self.runs.max(1) {
            bring_up(sh, global, &dev, &quiet)?;
            let outcome = bring_up(sh, global, &betanet, &quiet)?;
            services = outcome.started.len();
            let s = outcome.elapsed.as_secs_f64();
            eprintln!("run {run}: dev -> betanet in {s:.2}s ({services} services healthy)");
            seconds.push(s);
        }
        if !self.keep {
            let project = Project::open(false, global.verbose)?;
            let compose = project.compose(&betanet);
            Runner::new(global).run(compose.cmd(sh, &["down", "--remove-orphans"]))?;
        }
        let mut sorted = seconds.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let (min, max) = (sorted[0], sorted[sorted.len() - 1]);
        if self.json {
            let figures = serde_json::json!({
                "benchmark": "switch dev->betanet",
                "runs": seconds,
                "median_s": median, "min_s": min, "max_s": max,
                "services": services, "goal_s": 15.0,
            });
            println!("{}", serde_json::to_string_pretty(&figures)?);
        } else {
            println!(
                "switch dev -> betanet: median {median:.2}s, min {min:.2}s, max {max:.2}s over {} run(s), {services} services healthy (goal <= 15 s)",
                seconds.len()
            );
        }
        Ok(())
    }
}
