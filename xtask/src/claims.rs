//! `cargo xtask claims`: check `TESTING.md`, the map from each promise of
//! README.md and ARCHITECTURE.md to the tests that prove it. It fails when a
//! README table row that starts with a `cargo xtask` command has no row in
//! the map (the map repeats the README's first cell verbatim), when a map row
//! names no test, and when a named test (`path/to/file.rs::test_name`) does
//! not exist as a `#[test]` function (or is `#[ignore]`d). No Docker needed;
//! CI runs it as the `claims` check.

use std::{collections::BTreeSet, fs};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::Global;

/// Check that every README command and every promise maps to tests that exist.
///
/// Examples:
///   cargo xtask claims
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Cmd {}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &Global) -> Result<()> {
        let root = crate::project_root();
        let read = |name: &str| {
            fs::read_to_string(root.join(name)).with_context(|| format!("reading {name}"))
        };
        let problems = problems(&read("README.md")?, &read("TESTING.md")?, &|file| {
            fs::read_to_string(root.join(file)).ok()
        });
        if problems.is_empty() {
            let rows = table_rows(&read("TESTING.md")?).len();
            println!("claims: TESTING.md maps {rows} claims to tests that exist");
            return Ok(());
        }
        for p in &problems {
            eprintln!("TESTING.md: {p}");
        }
        bail!(
            "{} problem(s) in the claim-to-test map; fix TESTING.md or add the tests",
            problems.len()
        )
    }
}

/// Cells of every markdown table row (header and `---` separator excluded),
/// split on unescaped `|`, trimmed, with the 1-based line number.
fn table_rows(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut rows = Vec::new();
    let mut previous_was_table = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if !line.starts_with('|') {
            previous_was_table = false;
            continue;
        }
        let first_of_table = !previous_was_table;
        previous_was_table = true;
        let is_separator = line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '));
        if first_of_table || is_separator {
            continue;
        }
        let mut cells = Vec::new();
        let mut cell = String::new();
        let mut chars = line[1..].chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'|') => {
                    cell.push_str("\\|");
                    chars.next();
                }
                '|' => cells.push(std::mem::take(&mut cell).trim().to_string()),
                c => cell.push(c),
            }
        }
        if !cell.trim().is_empty() {
            cells.push(cell.trim().to_string());
        }
        rows.push((i + 1, cells));
    }
    rows
}

/// The `file.rs::name` test references in a cell (backticked).
fn test_refs(cell: &str) -> Vec<(String, String)> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, name) = code.split_once("::")?;
            (file.ends_with(".rs") && !name.is_empty())
                .then(|| (file.to_string(), name.to_string()))
        })
        .collect()
}

/// Whether `source` defines `fn name` as a `#[test]` that is not ignored: the
/// attribute lines right above the `fn` line hold `#[test]` and no `#[ignore`.
fn defines_test(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    lines.iter().enumerate().any(|(i, line)| {
        let is_fn = line
            .trim_start()
            .strip_prefix("fn ")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with('('));
        if !is_fn {
            return false;
        }
        let attrs: Vec<&str> = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
            .collect();
        attrs.contains(&"#[test]") && !attrs.iter().any(|a| a.starts_with("#[ignore"))
    })
}

/// Every problem of `testing` (TESTING.md) against `readme`; `source` reads a
/// repository file (`None` when it does not exist).
fn problems(readme: &str, testing: &str, source: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    let map = table_rows(testing);
    let mapped: BTreeSet<&str> = map
        .iter()
        .filter_map(|(_, cells)| cells.first().map(String::as_str))
        .collect();
    for (line, cells) in table_rows(readme) {
        let Some(first) = cells.first() else { continue };
        if first.starts_with("`cargo xtask") && !mapped.contains(first.as_str()) {
            out.push(format!(
                "README.md:{line}: the command row {first} has no row (same first cell) naming its tests"
            ));
        }
    }
    for (line, cells) in &map {
        let refs: Vec<_> = cells.iter().flat_map(|c| test_refs(c)).collect();
        if refs.is_empty() {
            out.push(format!(
                "line {line}: `{}` names no test (`path/file.rs::test_name`)",
                cells.first().map(String::as_str).unwrap_or("")
            ));
        }
        for (file, name) in refs {
            match source(&file) {
                None => out.push(format!("line {line}: {file} does not exist (test {name})")),
                Some(text) if !defines_test(&text, &name) => out.push(format!(
                    "line {line}: {file} has no #[test] fn {name} (renamed, removed or ignored?)"
                )),
                Some(_) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str =
        "#[test]\nfn real_one() {}\n#[test]\n#[ignore]\nfn ignored() {}\nfn helper() {}\n";

    fn files(file: &str) -> Option<String> {
        (file == "t/a.rs").then(|| SOURCE.to_string())
    }

    const README: &str = "| command | what |\n| --- | --- |\n| `cargo xtask dev` | up |\n| `cargo xtask network create\\|rm` | nets |\n| plain row | x |\n";

    #[test]
    fn a_complete_map_has_no_problems() {
        let testing = "| README row | tests |\n| --- | --- |\n| `cargo xtask dev` | `t/a.rs::real_one` |\n| `cargo xtask network create\\|rm` | `t/a.rs::real_one` |\n";
        assert_eq!(problems(README, testing, &files), Vec::<String>::new());
    }

    #[test]
    fn an_unmapped_command_a_missing_test_and_a_row_without_tests_fail() {
        let testing = "| README row | tests |\n| --- | --- |\n| `cargo xtask dev` | `t/a.rs::gone`, `t/a.rs::helper`, `t/a.rs::ignored`, `t/b.rs::x` |\n| a promise | none yet |\n";
        let found = problems(README, testing, &files);
        assert_eq!(found.len(), 6, "{found:#?}");
        assert!(found[0].contains("README.md:4") && found[0].contains("network create"));
        for needle in [
            "no test",
            "fn gone",
            "fn helper",
            "fn ignored",
            "t/b.rs does not exist",
        ] {
            assert!(
                found.iter().any(|p| p.contains(needle)),
                "{needle}: {found:#?}"
            );
        }
    }

    #[test]
    fn rows_split_on_unescaped_bars_only() {
        let rows = table_rows(
            "| a | b |\n|---|---|\n| `x\\|y` | z |\n\n| new | table |\n|--|--|\n| 1 | 2 |\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0], (3, vec!["`x\\|y`".to_string(), "z".to_string()]));
        assert_eq!(rows[1].1, ["1", "2"]);
    }
}
