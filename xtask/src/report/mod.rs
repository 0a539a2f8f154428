//! `cargo xtask report`: what a change to the stack costs, before against
//! after. Each side is a spec ([`spec`]: an environment, `REV:ENV` read from
//! git, or a list of compose files) loaded into the one compose model; the
//! static comparison ([`declared`]) counts services, containers, instances per
//! image repository, ports, networks, volumes, declared limits, image sizes
//! and check findings; `--live` ([`live`], [`stage`], [`sampler`]) starts each
//! side in isolation and samples the engine's stats. The [`model`] is also
//! the JSON schema; [`markdown`] and [`html`] render it; [`budget`] is the
//! `--fail-on` grammar, [`claims`] the design's savings claims, [`current`]
//! the running stack against its limits.

pub mod budget;
pub mod claims;
pub mod current;
pub mod html;
pub mod live;
pub mod sampler;
pub mod stage;

// The static comparison is shared with `adopt`: it lives in `crate::comparison`.
pub use crate::comparison::{declared, markdown, model, spec, units};

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::ValueEnum;
use xshell::Shell;

use crate::output::write_stdout;
use crate::process::Runner;
use crate::{usage_bail, Global};
use model::{Report, SCHEMA};

/// Output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Md,
    Json,
    Html,
}

/// Compare the resources of two stacks, statically or measured live.
#[derive(clap::Args)]
#[command(after_help = "\
A SPEC is an environment (betanet, dev+monitoring), REV:ENV (that environment's files at a git
revision, read with `git show`, no checkout), or compose files separated by commas (a legacy layout).

Static figures come from the merged compose models and need no Docker (image sizes only for images
present locally). --live starts each side in turn under its own project (fogrep-before-PID,
fogrep-after-PID), networks and 10.236.x.0/24 subnets, publishes no ports, uses offline images
(`cargo xtask images offline`) where the declared image is missing, waits until healthy, samples
`docker stats` once a second for --duration seconds, and removes everything again (also on Ctrl-C).
Nothing is pulled; services with no image here are listed as not measured. Memory is docker stats'
MEM USAGE: cgroup usage minus inactive page cache (total_inactive_file on cgroup v1).

--fail-on METRIC>LIMIT exits 1 when the after side exceeds it: `+N%` growth, `+N` growth, `N` ceiling;
metrics: services, containers, ports, networks, volumes, images, memory-limit, cpu-limit,
memory-reservation, cpu-reservation, errors, warnings, and with --live memory, memory-max, cpu,
cpu-max, time-to-healthy. Exit 2 on a bad spec or budget.

Examples:
  cargo xtask report --before xtask/tests/fixtures/legacy/docker-compose.yml,xtask/tests/fixtures/legacy/docker-compose.betanet.yml --after betanet
  cargo xtask report --before main:betanet --after betanet --format json --fail-on 'containers>+0'
  cargo xtask report --before base --after monitoring --live --duration 10 --out report.html --out report.json
  cargo xtask report --before old/docker-compose.yml,old/docker-compose.monitoring.yml --after monitoring --live --claims
  cargo xtask report --current")]
pub struct Cmd {
    /// The stack before the change (SPEC).
    #[arg(long, value_name = "SPEC", required_unless_present = "current")]
    before: Option<String>,
    /// The stack after the change (SPEC).
    #[arg(long, value_name = "SPEC", required_unless_present = "current")]
    after: Option<String>,
    /// Start each side and measure it (needs Docker).
    #[arg(long)]
    live: bool,
    /// Seconds of sampling per side with --live.
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Seconds to let a side run after it is healthy, before sampling (--live).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    settle: u64,
    /// Seconds to wait for a side to become healthy with --live.
    #[arg(long, value_name = "SECS", default_value_t = 180)]
    timeout: u64,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Write the report to FILE (atomically) instead of stdout. Repeat it to
    /// write several formats from one run: `.md`, `.json` and `.html` pick
    /// their format, any other name gets --format.
    #[arg(long, value_name = "FILE")]
    out: Vec<PathBuf>,
    /// Lay the design's savings claims beside the measured figures.
    #[arg(long)]
    claims: bool,
    /// Exit 1 when the after side exceeds a budget, e.g. 'memory>+10%'.
    #[arg(long = "fail-on", value_name = "BUDGET")]
    fail_on: Vec<String>,
    /// The running stack's usage against its limits (flags > 80% of a memory limit).
    #[arg(long, conflicts_with_all = ["before", "after", "live", "claims", "fail_on"])]
    current: bool,
    /// The git repository REV:ENV specs read (default: this repository).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// With --current: the compose project (default: COMPOSE_PROJECT_NAME of the env file).
    #[arg(long, requires = "current", value_name = "NAME")]
    project: Option<String>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = Runner::new(global);
        if self.current {
            return self.run_current(sh, &runner);
        }
        let budgets = budget::parse_all(&self.fail_on)?;
        let probe = model::metrics(&Default::default(), &Default::default());
        for b in &budgets {
            if !self.live && probe.iter().any(|m| m.key == b.metric && m.live) {
                usage_bail!(
                    "--fail-on `{}`: `{}` is measured only with --live",
                    b.text,
                    b.metric
                );
            }
        }
        let (before, after) = (
            self.before.as_deref().unwrap_or_default(),
            self.after.as_deref().unwrap_or_default(),
        );
        let repo = self
            .repo
            .clone()
            .map(crate::absolute)
            .unwrap_or_else(crate::project_root);
        let before = spec::load(sh, &runner, "--before", before, &repo)?;
        let after = spec::load(sh, &runner, "--after", after, &repo)?;
        let mut sides = [
            declared::side(sh, &runner, &before),
            declared::side(sh, &runner, &after),
        ];
        let mut memory_counting = None;
        if self.live {
            let engine = crate::engine::Engine::detect(global.verbose)?;
            live::catch_ctrl_c();
            let options = live::Options {
                duration: self.duration,
                settle: self.settle,
                timeout: self.timeout,
                prefix: "fogrep".into(),
            };
            for (side, (loaded, tag)) in sides
                .iter_mut()
                .zip([(&before, "before"), (&after, "after")])
            {
                live::measure(sh, &runner, &engine, loaded, tag, &options, side)?;
            }
            if global.dry_run {
                return Ok(());
            }
            memory_counting = Some(live::memory_counting(sh, &runner));
        }
        let [before, after] = sides;
        let mut report = Report {
            schema: SCHEMA,
            live: self.live,
            memory_counting,
            delta: model::delta(&before, &after),
            claims: Vec::new(),
            budgets: Vec::new(),
            before,
            after,
        };
        if self.claims {
            report.claims = claims::check(&report.before, &report.after, self.live);
        }
        report.budgets =
            budget::evaluate(&budgets, &model::metrics(&report.before, &report.after))?;
        let markdown = markdown::render(&report);
        let render = |format: Format| -> Result<String> {
            Ok(match format {
                Format::Md => markdown.clone(),
                Format::Json => format!("{}\n", serde_json::to_string_pretty(&report)?),
                Format::Html => html::render(&report, &markdown),
            })
        };
        if self.out.is_empty() {
            write_stdout(&render(self.format)?)?;
        }
        for path in &self.out {
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("md") => Format::Md,
                Some("json") => Format::Json,
                Some("html" | "htm") => Format::Html,
                _ => self.format,
            };
            write_file(path, &render(format)?)?;
        }
        let exceeded: Vec<String> = report
            .budgets
            .iter()
            .filter(|b| b.exceeded)
            .map(|b| format!("`{}` ({})", b.budget, b.detail))
            .collect();
        if !exceeded.is_empty() {
            bail!("budget exceeded: {}", exceeded.join("; "));
        }
        Ok(())
    }

    fn run_current(&self, sh: &Shell, runner: &Runner) -> Result<()> {
        if self.format == Format::Html {
            usage_bail!("--current prints md or json; --format html is for before/after reports");
        }
        let project = current::project_name(self.project.clone())?;
        let now = current::measure(sh, runner, &project)?;
        let text = match self.format {
            Format::Json => format!("{}\n", serde_json::to_string_pretty(&now)?),
            _ => current::render(&now),
        };
        match self.out.first() {
            Some(path) => write_file(path, &text),
            None => write_stdout(&text),
        }
    }
}

/// Write `text` to `path` atomically (temp file, fsync, rename).
fn write_file(path: &std::path::Path, text: &str) -> Result<()> {
    let path = crate::absolute(path);
    crate::atomic::write(&path, text.as_bytes(), 0o644)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
