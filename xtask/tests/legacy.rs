//! The legacy compose layout (`tests/fixtures/legacy`, written by the overlays
//! engineer) with its README table of planted defects. The table is parsed
//! here: every planted defect must be reported with its rule id (the table's
//! `kind`), file and line, and no finding may point at a line the table does
//! not list (incidental rows count, matched by file and line).

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::{check_facts, fact, fixture, Fact};

/// `LEGACY_FIXTURES` may point elsewhere (used before the fixtures landed).
fn legacy_dir() -> PathBuf {
    let dir = std::env::var_os("LEGACY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| fixture("legacy"));
    assert!(
        dir.join("README.md").is_file(),
        "{} is missing: merge main to get the overlays engineer's legacy fixtures",
        dir.display()
    );
    dir
}

struct Row {
    kind: String,
    incidental: bool,
    file: String,
    line: Option<u64>,
}

/// Rows of the `| # | kind | file | line | detail |` table.
fn table(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("README.md")).unwrap();
    text.lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            if cells.len() < 6 || cells[1].parse::<u32>().is_err() {
                return None;
            }
            Some(Row {
                kind: cells[2].split_whitespace().next().unwrap().to_string(),
                incidental: cells[2].contains("incidental"),
                file: cells[3].to_string(),
                line: cells[4].parse().ok(),
            })
        })
        .collect()
}

/// Findings of the main file with each overlay, and of broken-syntax.yml alone.
fn all_findings(dir: &Path) -> BTreeSet<Fact> {
    let main = dir.join("docker-compose.yml").display().to_string();
    let mut facts = BTreeSet::new();
    for overlay in ["dev", "prod", "betanet", "monitoring"] {
        let file = dir.join(format!("docker-compose.{overlay}.yml"));
        let (code, found) = check_facts(&["-f", &main, "-f", &file.display().to_string()]);
        assert_eq!(code, 1, "the legacy {overlay} layout must fail the check");
        facts.extend(found);
    }
    let broken = dir.join("broken-syntax.yml").display().to_string();
    let (code, found) = check_facts(&["-f", &broken]);
    assert_eq!(code, 1);
    facts.extend(found);
    facts
}

#[test]
fn every_planted_defect_is_reported_at_its_file_and_line() {
    let dir = legacy_dir();
    let rows = table(&dir);
    assert!(rows.len() >= 30, "README table has {} rows", rows.len());
    let facts = all_findings(&dir);
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| !r.incidental)
        .filter(|r| !facts.contains(&(r.kind.clone(), r.file.clone(), r.line)))
        .map(|r| format!("{} {}:{:?}", r.kind, r.file, r.line))
        .collect();
    assert!(
        missing.is_empty(),
        "not reported: {missing:#?}\nfound: {facts:#?}"
    );
}

#[test]
fn nothing_is_reported_outside_the_table() {
    let dir = legacy_dir();
    let rows = table(&dir);
    let listed: BTreeSet<(String, Option<u64>)> =
        rows.iter().map(|r| (r.file.clone(), r.line)).collect();
    let extra: Vec<Fact> = all_findings(&dir)
        .into_iter()
        .filter(|(_, file, line)| !listed.contains(&(file.clone(), *line)))
        .collect();
    assert!(
        extra.is_empty(),
        "findings the README does not list: {extra:#?}"
    );
}

#[test]
fn betanet_alone_reports_the_missing_postgres() {
    let dir = legacy_dir();
    let betanet = dir.join("docker-compose.betanet.yml").display().to_string();
    let (code, facts) = check_facts(&["-f", &betanet]);
    assert_eq!(code, 1);
    assert!(facts.contains(&fact(
        "undefined-dependency",
        "docker-compose.betanet.yml",
        12
    )));
    assert!(!facts.iter().any(|f| f.0 == "healthy-without-healthcheck"));
}
