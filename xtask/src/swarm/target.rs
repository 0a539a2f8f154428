//! `cargo xtask check --target swarm`: what a Swarm deploy of each selected
//! environment would drop or leave out, as check findings (warnings, with
//! the file and line of the key), without Docker. Translated keys are listed
//! in the text output too, as notes; a model that cannot be rendered at all
//! (e.g. a secret without `file:`) is an error.

use anyhow::Result;

use super::render::{self, Action, Options};
use crate::lint::{Finding, Severity};
use crate::output::write_stdout;
use crate::selection::Selection;

/// The `--target` values `check` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Docker Swarm (`docker stack deploy`).
    Swarm,
}

/// Findings for one selection.
pub fn findings(selection: &Selection) -> (Vec<Finding>, Vec<String>) {
    let project = match selection.load().map(|p| render::with_swarm_overlay(&p)) {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            return (
                vec![Finding::error(
                    "swarm-overlay",
                    None,
                    format!("{e:#}"),
                    "fix compose/swarm.yml",
                )],
                Vec::new(),
            )
        }
        Err(e) => {
            let at = Some(crate::compose::Location {
                file: e.file.clone(),
                line: e.line,
            });
            return (
                vec![Finding::error(
                    "swarm-load",
                    at,
                    e.message,
                    "fix the compose file first (`cargo xtask check`)",
                )],
                Vec::new(),
            );
        }
    };
    let opts = Options {
        stack: "check".into(),
        lenient: true,
        ..Options::default()
    };
    match render::render(&project, &opts) {
        Err(e) => (
            vec![Finding::error(
                "swarm-render",
                None,
                format!("{e:#}"),
                "fix what the message names, then rerun",
            )],
            Vec::new(),
        ),
        Ok(plan) => {
            let mut out = Vec::new();
            let mut notes = Vec::new();
            for n in plan.notes {
                let subject = match &n.service {
                    Some(s) => format!("service `{s}` {}: {}", n.key, n.message),
                    None => format!("{}: {}", n.key, n.message),
                };
                match n.action {
                    Action::Dropped => out.push(Finding::warning(
                        "swarm-dropped",
                        n.at,
                        subject,
                        "make the service tolerate it, or express it in `deploy:`",
                    )),
                    Action::LeftOut => out.push(Finding::warning(
                        "swarm-left-out",
                        n.at,
                        subject,
                        "give the service an image every node can reach, or run it beside the stack",
                    )),
                    Action::Translated => notes.push(subject),
                }
            }
            (out, notes)
        }
    }
}

/// Print the report for `selections`; `Err` when any of them cannot be rendered.
pub fn run(selections: &[Selection], json: bool) -> Result<()> {
    let mut docs = Vec::new();
    let mut text = String::new();
    let mut errors = 0;
    let mut warnings = 0;
    for sel in selections {
        let (findings, notes) = findings(sel);
        errors += findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count();
        warnings += findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
            .count();
        text.push_str(&format!(
            "== {} (swarm): {} dropped or left out, {} translated\n",
            sel.label,
            findings.len(),
            notes.len()
        ));
        for f in &findings {
            let at = match (&f.file, f.line) {
                (Some(file), Some(line)) => format!("{}:{line}", short(file)),
                (Some(file), None) => short(file),
                _ => "-".into(),
            };
            let sev = if f.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            text.push_str(&format!(
                "{at}: {sev}[{}]: {} — fix: {}\n",
                f.rule, f.message, f.fix
            ));
        }
        for n in &notes {
            text.push_str(&format!("   translated: {n}\n"));
        }
        docs.push(serde_json::json!({
            "environment": sel.label,
            "target": "swarm",
            "findings": findings,
            "translated": notes,
        }));
    }
    if json {
        let doc = serde_json::json!({
            "environments": docs, "errors": errors, "warnings": warnings, "ok": errors == 0,
        });
        write_stdout(&format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    } else {
        text.push_str(&format!(
            "checked {} environment(s) for swarm: {errors} error(s), {warnings} warning(s)\n",
            selections.len()
        ));
        write_stdout(&text)?;
    }
    if errors > 0 {
        anyhow::bail!("swarm check found {errors} error(s)");
    }
    Ok(())
}

fn short(p: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd).unwrap_or(p).display().to_string()
}
