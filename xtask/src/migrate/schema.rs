//! `migrate verify --schema`: schema drift against a fresh replay. A scratch
//! database is created in the environment's own server, the migrate image
//! applies every migration to it, and `pg_dump --schema-only` of the live and
//! the scratch database are compared line by line (comments, blank lines and
//! pg_dump's random `\restrict` keys left out). The scratch database is
//! dropped even when a step fails. Any difference is printed as `-`/`+`
//! lines under the statement they belong to, and the command exits 1.

use anyhow::{bail, Result};
use xshell::Shell;

use super::run_cmd;
use crate::{
    database::{capture, Database},
    process::Runner,
};

/// How long the diff may look for the shortest edit script.
const DIFF_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn verify(_sh: &Shell, runner: &Runner, db: &Database) -> Result<()> {
    let scratch = format!("{}_schema_scratch_{}", db.name, std::process::id());
    db.sql(
        runner,
        "postgres",
        &format!("CREATE DATABASE \"{scratch}\""),
        true,
    )?;
    if runner.dry_run {
        println!("{}", run_cmd(db, &["--dbname", &scratch, "up"])?.line());
        println!(
            "# pg_dump --schema-only of {} and {scratch}, compared; then DROP DATABASE {scratch}",
            db.name
        );
        return Ok(());
    }
    let _drop = DropDatabase {
        db,
        runner,
        name: scratch.clone(),
    };
    capture(
        runner,
        true,
        run_cmd(db, &["--dbname", &scratch, "up"])?,
        &format!("replaying migrations/ on the scratch database {scratch}"),
    )?;
    let live = normalise(&dump(runner, db, &db.name)?);
    let fresh = normalise(&dump(runner, db, &scratch)?);
    let diff = diff(&live, &fresh);
    if diff.is_empty() {
        println!(
            "schema of database {} matches a fresh replay of migrations/ ({} lines compared)",
            db.name,
            live.len()
        );
        return Ok(());
    }
    println!("--- {} (live)\n+++ replay of migrations/", db.name);
    for line in &diff {
        println!("{line}");
    }
    bail!(
        "schema drift: database {} differs from a replay of migrations/ ({} line(s) above: `-` only in the live database, `+` only in the replay); put the change in a migration (`cargo xtask migrate new NAME`) or undo it",
        db.name,
        diff.iter().filter(|l| l.starts_with(['-', '+'])).count()
    )
}

/// Drops the scratch database when verification ends, however it ends.
struct DropDatabase<'a> {
    db: &'a Database,
    runner: &'a Runner,
    name: String,
}

impl Drop for DropDatabase<'_> {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        if let Err(e) = self.db.sql(self.runner, "postgres", &sql, true) {
            eprintln!(
                "warning: could not drop the scratch database {}: {e:#}",
                self.name
            );
        }
    }
}

fn dump(runner: &Runner, db: &Database, database: &str) -> Result<String> {
    let args: Vec<String> = [
        "pg_dump",
        "-U",
        &db.user,
        "-d",
        database,
        "--schema-only",
        "--no-owner",
        "--no-privileges",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    capture(
        runner,
        false,
        db.exec("", &args),
        &format!("pg_dump --schema-only of {database}"),
    )
}

/// The lines that carry schema: no comments, blanks or `\restrict` keys.
pub fn normalise(dump: &str) -> Vec<String> {
    dump.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .map(String::from)
        .collect()
}

/// `-`/`+` lines, each group under the last statement head (`CREATE`, `ALTER`)
/// before it as context; empty when equal. Myers' diff (the `similar`
/// crate), given [`DIFF_DEADLINE`] before it settles for a longer diff.
pub fn diff(a: &[String], b: &[String]) -> Vec<String> {
    use similar::{capture_diff_slices_deadline, Algorithm, DiffOp};
    let is_head = |l: &&String| l.starts_with("CREATE ") || l.starts_with("ALTER ");
    let deadline = std::time::Instant::now() + DIFF_DEADLINE;
    let mut out = Vec::new();
    let mut head: Option<&str> = None;
    let mut last_head: Option<&str> = None;
    for op in capture_diff_slices_deadline(Algorithm::Myers, a, b, Some(deadline)) {
        if let DiffOp::Equal { .. } = op {
            let seen = a[op.old_range()].iter().rev().find(is_head);
            head = seen.map(String::as_str).or(head);
            continue;
        }
        if head.is_some() && head != last_head {
            out.push(format!("@@ {}", head.unwrap_or_default()));
            last_head = head;
        }
        out.extend(a[op.old_range()].iter().map(|l| format!("-{l}")));
        out.extend(b[op.new_range()].iter().map(|l| format!("+{l}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        normalise(text)
    }

    #[test]
    fn equal_dumps_have_no_diff_despite_comments_and_keys() {
        let a = lines("-- dumped at 10:00\n\\restrict abc\nCREATE TABLE t (\n    a integer\n);\n\n\\unrestrict abc\n");
        let b = lines("-- dumped at 11:00\n\\restrict xyz\nCREATE TABLE t (\n    a integer\n);\n");
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn a_drifted_column_shows_under_its_table() {
        let live = lines("CREATE TABLE t (\n    a integer,\n    extra text\n);\nCREATE TABLE u (\n    b integer\n);\n");
        let replay =
            lines("CREATE TABLE t (\n    a integer\n);\nCREATE TABLE u (\n    b integer\n);\n");
        let d = diff(&live, &replay);
        assert!(d.contains(&"@@ CREATE TABLE t (".to_string()), "{d:?}");
        assert!(d.contains(&"-    extra text".to_string()), "{d:?}");
        assert!(
            d.contains(&"-    a integer,".to_string()) && d.contains(&"+    a integer".to_string()),
            "{d:?}"
        );
        assert!(!d.iter().any(|l| l.contains("b integer")));
    }
}
