//! The compose rules behind `cargo xtask check`, without Docker: every
//! selection is loaded through the compose model ([`crate::compose`]) and run
//! through the generic rules ([`rules`]) and, for the repository's own
//! environments, the repo invariants ([`repo`]). A [`Finding`] carries a rule
//! id, a severity, the file and line of the offending key, a message and a
//! one-line fix. Shared by `check`, `report`'s declared figures and `bench
//! check`.

mod files;
mod repo;
mod rules;

pub use rules::{image_repository, instance_group};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::compose::{LoadError, LoadErrorKind, Location, Project, ProjectLoader};
use crate::selection::Selection;

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
/// Check every selection. Selections from one `SourceArgs` share their
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
