//! `cargo xtask check`: natively check compose files for the defects that
//! broke the old layout, without Docker. Every named environment is loaded
//! through the compose model ([`crate::compose`]) and run through the generic
//! rules ([`rules`]) and, for the repository's own environments, the repo
//! invariants ([`repo`]). Findings carry a rule id, a severity, the file and
//! line of the offending key, a message and a one-line fix; output is text
//! grouped per environment or one JSON document (`{environments: [{environment,
//! files, findings: [{rule, severity, file, line, column?, message, fix}]}],
//! errors, warnings, ok}`). Exit 1 on any error finding.

mod files;
mod repo;
mod rules;

pub use rules::{image_repository, instance_group};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;
use xshell::Shell;

use crate::compose::{LoadError, LoadErrorKind, Location, Project, ProjectLoader};
use crate::config::{write_stdout, Selection, SourceArgs};
use crate::environments::NAMED;

/// How bad a finding is. Warnings do not fail the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// Set for parse errors, where the parser knows the column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn error(rule: &'static str, at: Option<Location>, message: String, fix: &str) -> Finding {
        Finding {
            rule,
            severity: Severity::Error,
            file: at.as_ref().map(|l| l.file.clone()),
            line: at.and_then(|l| l.line),
            column: None,
            message,
            fix: fix.to_string(),
        }
    }

    pub fn warning(
        rule: &'static str,
        at: Option<Location>,
        message: String,
        fix: &str,
    ) -> Finding {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(rule, at, message, fix)
        }
    }

    fn from_load_error(err: &LoadError) -> Finding {
        let (rule, fix) = match err.kind {
            LoadErrorKind::Read => ("read", "make the file readable"),
            LoadErrorKind::Parse => ("yaml-syntax", "fix the YAML syntax at this position"),
            LoadErrorKind::Interpolation => (
                "interpolation",
                "set the variable in .env or give it a default with ${VAR:-default}",
            ),
            LoadErrorKind::Invalid => ("invalid", "use the compose-spec syntax for this key"),
        };
        Finding {
            rule,
            severity: Severity::Error,
            file: Some(err.file.clone()),
            line: err.line,
            column: err.column,
            message: err.message.clone(),
            fix: fix.to_string(),
        }
    }
}

/// What kind of environment the files describe; picks the port rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dev,
    Prod,
    Other,
}

/// Findings for one environment.
#[derive(Debug, Serialize)]
pub struct Report {
    pub environment: String,
    /// The overlay files of a named environment, e.g. `base.yml`, `dev.yml`.
    #[serde(skip)]
    pub overlays: Option<Vec<&'static str>>,
    pub files: Vec<PathBuf>,
    pub findings: Vec<Finding>,
}

/// Check one selection: load it, then run every rule that applies.
pub fn check_selection(
    selection: &Selection,
    loader: &mut ProjectLoader,
    prod_volumes: Option<&BTreeSet<String>>,
) -> Report {
    let mut findings = match loader.load(&selection.files) {
        Err(err) => vec![Finding::from_load_error(&err)],
        Ok(project) => check_project(&project, selection, prod_volumes),
    };
    // File order of the selection, then line: reads top to bottom.
    let file_rank = |f: &Finding| {
        f.file
            .as_ref()
            .and_then(|p| selection.files.iter().position(|s| s == p))
            .unwrap_or(usize::MAX)
    };
    findings.sort_by_key(|f| (file_rank(f), f.line));
    Report {
        environment: selection.label.clone(),
        overlays: selection
            .environment
            .as_ref()
            .map(|e| e.overlays().iter().map(|o| o.file).collect()),
        files: selection.files.iter().map(|f| display_path(f)).collect(),
        findings: findings
            .into_iter()
            .map(|mut f| {
                f.file = f.file.map(|p| display_path(&p));
                f
            })
            .collect(),
    }
}

fn check_project(
    project: &Project,
    selection: &Selection,
    prod_volumes: Option<&BTreeSet<String>>,
) -> Vec<Finding> {
    let kind = match &selection.environment {
        Some(env) if env.has("prod") => Kind::Prod,
        Some(env) if env.has("dev") => Kind::Dev,
        Some(_) => Kind::Other,
        None => kind_from_file_names(&selection.files),
    };
    let mut findings = rules::run(project, kind);
    if let Some(env) = &selection.environment {
        findings.extend(repo::run(project, env, prod_volumes));
    } else {
        // In someone else's files, pinning and literal credentials are
        // advice; in this repository's environments they are invariants.
        for f in &mut findings {
            if ADVICE_OUTSIDE_REPO.contains(&f.rule) {
                f.severity = Severity::Warning;
            }
        }
    }
    findings
}

/// Rules that are errors for the repository's own environments and
/// warnings for `-f` files.
/// (Docker creates a missing bind source as an empty directory, so for
/// someone else's files that is advice too.)
const ADVICE_OUTSIDE_REPO: &[&str] = &["unpinned-image", "literal-secret", "missing-bind-source"];

/// For `-f` files: `prod` in a file name means prod rules, `dev` means dev rules.
fn kind_from_file_names(files: &[PathBuf]) -> Kind {
    let names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_lowercase()))
        .collect();
    if names.iter().any(|n| n.contains("prod")) {
        Kind::Prod
    } else if names.iter().any(|n| n.contains("dev")) {
        Kind::Dev
    } else {
        Kind::Other
    }
}

/// Paths relative to the current directory when below it, for short output.
fn display_path(p: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Check every selection; named environments share the prod data volumes.
/// Check every selection. Selections from one [`SourceArgs`] share their
/// variables, so each file is parsed once for all of them.
pub fn check_all(selections: &[Selection]) -> Vec<Report> {
    let Some(first) = selections.first() else {
        return Vec::new();
    };
    let mut loader = ProjectLoader::new(&first.env);
    let prod_volumes = selections
        .iter()
        .find(|s| s.environment.is_some())
        .and_then(|_| repo::prod_data_volumes(&mut loader));
    selections
        .iter()
        .map(|s| check_selection(s, &mut loader, prod_volumes.as_ref()))
        .collect()
}

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
    target: Option<crate::deploy::target::Target>,
}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &crate::Global) -> Result<()> {
        let selections = self.source.selections(NAMED)?;
        if self.target.is_some() {
            return crate::deploy::target::run(&selections, self.format == Format::Json);
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
