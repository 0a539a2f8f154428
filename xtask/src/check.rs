//! `cargo xtask check`: natively check compose files for the defects that
//! broke the old layout, without Docker; the rules are [`crate::lint`].
//! Output is text grouped per environment or one JSON document
//! (`{environments: [{environment, files, findings: [{rule, severity, file,
//! line, column?, message, fix}]}], errors, warnings, ok}`). Exit 1 on any
//! error finding. `--target swarm` reports what a Swarm deploy would drop
//! ([`crate::swarm::target`]).

use anyhow::Result;
use xshell::Shell;

use crate::environments::NAMED;
use crate::lint::{check_all, Report, Severity};
use crate::output::write_stdout;
use crate::selection::SourceArgs;
use crate::swarm::target::{self, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Text,
    Json,
}

/// Check compose files; every named environment by default.
#[derive(clap::Args)]
#[command(after_help = "\
By default every named environment is checked (prod, dev, betanet, monitoring and their
combinations), with variables from the process environment, then .env or $FOG_ENV_FILE (else .env.example).
With -f, the .env beside the first file is used; `dev`/`prod` in a file name picks the
dev/prod port rules. Exit 0 when clean (warnings allowed), 1 on any error, 2 on bad usage.

Rules: yaml-syntax, interpolation, undeclared-network, undefined-dependency, undeclared-volume,
port-conflict, duplicate-service, redefined-service, overlapping-subnet, invalid-subnet, unpinned-image,
floating-tag (warning), literal-secret, prod-publishes-port, prod-url-credential, public-bind, missing-bind-source,
healthy-without-healthcheck; named environments also: repo-networks, repo-singleton,
repo-grafana-port, repo-dev-volumes.

Examples:
  cargo xtask check
  cargo xtask check --env dev+betanet
  cargo xtask check -f old/docker-compose.yml -f old/docker-compose.dev.yml
  cargo xtask check --format json")]
pub struct Cmd {
    #[command(flatten)]
    source: SourceArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Report what deploying to this target would drop (`swarm`).
    #[arg(long, value_enum, value_name = "TARGET")]
    target: Option<Target>,
}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> Result<()> {
        let selections = self.source.selections(NAMED)?;
        if self.target.is_some() {
            return target::run(&selections, self.format == Format::Json);
        }
        let reports = check_all(&selections);
        let errors = count(&reports, Severity::Error);
        let warnings = count(&reports, Severity::Warning);
        match self.format {
            Format::Json => {
                let doc = serde_json::json!({
                    "environments": reports,
                    "errors": errors,
                    "warnings": warnings,
                    "ok": errors == 0,
                });
                write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
            }
            Format::Text => write_stdout(&render_text(&reports, errors, warnings))?,
        }
        if errors > 0 {
            anyhow::bail!("compose check found {errors} error(s)");
        }
        Ok(())
    }
}

fn count(reports: &[Report], severity: Severity) -> usize {
    reports
        .iter()
        .flat_map(|r| &r.findings)
        .filter(|f| f.severity == severity)
        .count()
}

/// The text report: per environment a header and one line per finding.
fn render_text(reports: &[Report], errors: usize, warnings: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for report in reports {
        let count = |sev| report.findings.iter().filter(|f| f.severity == sev).count();
        let status = match (count(Severity::Error), count(Severity::Warning)) {
            (0, 0) => "ok".to_string(),
            (e, w) => format!("{e} error(s), {w} warning(s)"),
        };
        let _ = writeln!(out, "== {} {status}", report.environment);
        if let Some(overlays) = &report.overlays {
            let _ = writeln!(out, "   ({})", overlays.join(" + "));
        }
        for f in &report.findings {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => match f.column {
                    Some(col) => format!("{}:{line}:{col}", file.display()),
                    None => format!("{}:{line}", file.display()),
                },
                (Some(file), None) => file.display().to_string(),
                _ => "-".to_string(),
            };
            let sev = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let _ = writeln!(
                out,
                "{at}: {sev}[{}]: {} — fix: {}",
                f.rule, f.message, f.fix
            );
        }
    }
    let _ = writeln!(
        out,
        "checked {} environment(s): {errors} error(s), {warnings} warning(s)",
        reports.len()
    );
    out
}
