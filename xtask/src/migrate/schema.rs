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

/// Above this many line pairs the diff falls back to lines missing on either side.
const LCS_LIMIT: usize = 4_000_000;

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
/// before it as context; empty when equal.
pub fn diff(a: &[String], b: &[String]) -> Vec<String> {
    let ops = if a.len().saturating_mul(b.len()) <= LCS_LIMIT {
        lcs_ops(a, b)
    } else {
        let only_a = a
            .iter()
            .filter(|l| !b.contains(l))
            .map(|l| ('-', l.as_str()));
        let only_b = b
            .iter()
            .filter(|l| !a.contains(l))
            .map(|l| ('+', l.as_str()));
        only_a.chain(only_b).map(|(c, l)| (c, l, None)).collect()
    };
    let mut out = Vec::new();
    let mut last_head: Option<&str> = None;
    for (sign, line, head) in ops {
        if sign == ' ' {
            continue;
        }
        if head.is_some() && head != last_head {
            out.push(format!("@@ {}", head.unwrap_or_default()));
            last_head = head;
        }
        out.push(format!("{sign}{line}"));
    }
    out
}

type Op<'a> = (char, &'a str, Option<&'a str>);

fn lcs_ops<'a>(a: &'a [String], b: &'a [String]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    let mut t = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[at(i, j)] = if a[i] == b[j] {
                t[at(i + 1, j + 1)] + 1
            } else {
                t[at(i + 1, j)].max(t[at(i, j + 1)])
            };
        }
    }
    let is_head = |l: &str| l.starts_with("CREATE ") || l.starts_with("ALTER ");
    let mut head: Option<&str> = None;
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            if is_head(&a[i]) {
                head = Some(&a[i]);
            }
            ops.push((' ', a[i].as_str(), head));
            i += 1;
            j += 1;
        } else if j < m && (i == n || t[at(i, j + 1)] >= t[at(i + 1, j)]) {
            ops.push(('+', b[j].as_str(), head));
            j += 1;
        } else {
            ops.push(('-', a[i].as_str(), head));
            i += 1;
        }
    }
    ops
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
