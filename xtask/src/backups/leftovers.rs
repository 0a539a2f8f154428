//! What restores and drills can leave behind, found and removed: journals of
//! interrupted restores, unfinished restore databases (`<db>_restore_*`) and
//! volumes (`<volume>_restore_*`), helper containers (`fogdrill-*`,
//! `fogrestore-*`, `fogswap-*`) whose xtask is gone, and the previous data
//! restores keep (`*_before_restore_*`: the way back). `backup list` reports
//! them all; `backup cleanup` first finishes or undoes interrupted restores
//! (their journals, [`recover`]), then removes the rest after asking, and
//! removes the way-back copies only with `--way-back` and a second answer.

use std::path::Path;

use anyhow::{bail, Result};

use super::recover::{self, Journal};
use crate::process::Cmd;
use crate::{
    database::{capture, Database},
    process::Runner,
};

/// One leftover.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leftover {
    /// `journal`, `database`, `volume` or `container`.
    pub kind: String,
    pub name: String,
    /// What it is, for people.
    pub what: String,
    /// Previous data a restore kept: removed only with `--way-back`.
    pub way_back: bool,
}

fn item(kind: &str, name: &str, what: &str, way_back: bool) -> Leftover {
    Leftover {
        kind: kind.into(),
        name: name.into(),
        what: what.into(),
        way_back,
    }
}

fn docker_read(runner: &Runner, args: &[&str]) -> Result<String> {
    let mut cmd = Cmd::new("docker");
    cmd.args(args);
    capture(runner, false, cmd, &format!("`docker {}`", args.join(" ")))
}

/// Whether `name` is a restore's scratch (`_restore_`) or aside (`_before_restore_`) name.
pub fn classify(name: &str) -> Option<bool> {
    if name.contains("_before_restore_") {
        Some(true)
    } else if name.contains("_restore_") {
        Some(false)
    } else {
        None
    }
}

/// Every leftover of `project` (compose project or stack) with journals in `dir`.
pub fn find(
    runner: &Runner,
    dir: &Path,
    project: &str,
    db: Option<&Database>,
) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    let journals = recover::journals(dir, Some(project));
    // Names a running restore uses are not leftovers.
    let busy: Vec<String> = journals
        .iter()
        .filter(|j| recover::pid_alive(j.pid))
        .flat_map(|j| [j.fresh.clone(), j.old.clone()])
        .collect();
    for j in journals.iter().filter(|j| !recover::pid_alive(j.pid)) {
        out.push(item(
            "journal",
            &j.path.display().to_string(),
            &format!(
                "interrupted restore of {} {} at phase {}: cleanup finishes or undoes it",
                j.kind, j.live, j.phase
            ),
            false,
        ));
    }
    if let Some(db) = db {
        let live = db.name.replace('_', "\\_");
        let names = db.sql(
            runner,
            "postgres",
            &format!("SELECT datname FROM pg_database WHERE datname LIKE '{live}\\_restore\\_%' OR datname LIKE '{live}\\_before\\_restore\\_%' ORDER BY 1"),
            false,
        )?;
        for name in names.lines().filter(|n| !busy.iter().any(|b| b == n)) {
            match classify(name) {
                Some(true) => out.push(item(
                    "database",
                    name,
                    "previous data a restore kept (the way back)",
                    true,
                )),
                Some(false) => {
                    out.push(item("database", name, "unfinished restore database", false))
                }
                None => {}
            }
        }
    }
    let volumes = docker_read(
        runner,
        &[
            "volume",
            "ls",
            "-q",
            "--filter",
            &format!("name={project}_"),
        ],
    )?;
    for name in volumes
        .lines()
        .filter(|n| n.starts_with(&format!("{project}_")) && !busy.iter().any(|b| b == n))
    {
        match classify(name) {
            Some(true) => out.push(item(
                "volume",
                name,
                "previous data a restore kept (the way back)",
                true,
            )),
            Some(false) => out.push(item("volume", name, "unfinished restore volume", false)),
            None => {}
        }
    }
    for name in recover::dead_helpers(runner, project)? {
        out.push(item(
            "container",
            &name,
            "helper container of a killed restore or drill",
            false,
        ));
    }
    Ok(out)
}

/// Print `items` as a table (nothing when empty).
pub fn print(items: &[Leftover]) {
    if items.is_empty() {
        return;
    }
    println!("\nleftovers of interrupted restores and drills (`cargo xtask backup cleanup` removes them):");
    println!("{:<10} {:<60} WHAT", "KIND", "NAME");
    for l in items {
        println!("{:<10} {:<60} {}", l.kind, l.name, l.what);
    }
}

fn ask(question: &str, yes: bool) -> Result<bool> {
    Ok(yes || crate::confirm::ask(question, "nothing was removed")?)
}

/// Finish or undo the interrupted restores of `project` (journals in `dir`
/// whose xtask is gone), printing one line each; remove dead helpers. A
/// journal of a running restore refuses.
pub fn recover_pending(
    runner: &Runner,
    dir: &Path,
    db: Option<&Database>,
    project: &str,
) -> Result<()> {
    for j in recover::journals(dir, Some(project)) {
        recover_one(runner, db, &j)?;
    }
    recover::remove_dead_helpers(runner, project)?;
    Ok(())
}

fn recover_one(runner: &Runner, db: Option<&Database>, j: &Journal) -> Result<()> {
    if recover::pid_alive(j.pid) {
        bail!(
            "a restore of {} {} (pid {}) is running (journal {}): wait for it; nothing was touched",
            j.kind,
            j.live,
            j.pid,
            j.path.display()
        );
    }
    let line = match j.kind.as_str() {
        "postgres" => {
            let Some(db) = db else {
                bail!("an interrupted restore of database {} (journal {}) needs the database running to be recovered: start it with `cargo xtask env use ENV` and run again; nothing was touched", j.live, j.path.display());
            };
            recover::recover_postgres(db, runner, j)?
        }
        _ => recover::recover_volume(runner, j)?,
    };
    if runner.dry_run {
        return Ok(());
    }
    println!("{line}");
    if let Ok(environment) = j.environment.parse() {
        let project = crate::engine::project::Project::open(runner.dry_run, runner.verbose)?;
        recover::start_services(runner, &project.compose(&environment), j);
    }
    j.finish();
    Ok(())
}

/// `backup cleanup`: recover, then remove the leftovers (asking first; the
/// way-back copies only with `way_back` and a second answer).
pub fn cleanup(
    runner: &Runner,
    dir: &Path,
    project: &str,
    db: Option<&Database>,
    yes: bool,
    way_back: bool,
) -> Result<()> {
    let found = find(runner, dir, project, db)?;
    if found.is_empty() {
        println!("no leftovers of project {project}");
        return Ok(());
    }
    print(&found);
    let (keep, scratch): (Vec<&Leftover>, Vec<&Leftover>) = found.iter().partition(|l| l.way_back);
    if !scratch.is_empty()
        && !runner.dry_run
        && !ask(
            &format!(
                "Recover the interrupted restores and remove the {} other leftovers?",
                scratch.len()
            ),
            yes,
        )?
    {
        println!("nothing was removed");
        return Ok(());
    }
    // Only the way-back copies shown (and approved) now go; a swap that
    // recovery finishes below keeps its new one.
    let mut approved: Vec<String> = Vec::new();
    if way_back && !keep.is_empty() {
        let names: Vec<&str> = keep.iter().map(|l| l.name.as_str()).collect();
        if runner.dry_run
            || ask(
                &format!(
                    "Also remove the previous data restores kept (the way back, gone for good): {}?",
                    names.join(", ")
                ),
                yes,
            )?
        {
            approved = names.iter().map(|n| n.to_string()).collect();
        }
    } else if !keep.is_empty() {
        println!(
            "kept {} way-back copies (previous data of restores); pass --way-back to remove them too",
            keep.len()
        );
    }
    // Journals first: recovery finishes or undoes, then the rest is looked up again.
    recover_pending(runner, dir, db, project)?;
    let now = find(runner, dir, project, db)?;
    let mut removed = 0;
    for l in now
        .iter()
        .filter(|l| l.kind != "journal" && (!l.way_back || approved.contains(&l.name)))
    {
        let mut cmd = Cmd::new("docker");
        match l.kind.as_str() {
            "database" => {
                let Some(db) = db else { continue };
                let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", l.name);
                cmd = db.exec("", &db.psql_args("postgres", &sql));
            }
            "volume" => {
                cmd.args(["volume", "rm", "-f", &l.name]);
            }
            _ => {
                cmd.args(["rm", "-f", "-v", &l.name]);
            }
        }
        capture(
            runner,
            true,
            cmd,
            &format!("removing {} {}", l.kind, l.name),
        )?;
        removed += 1;
    }
    if !runner.dry_run {
        println!("removed {removed} leftovers of project {project}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn scratch_and_way_back_names_are_told_apart() {
        assert_eq!(super::classify("fog_restore_20261201t090000z"), Some(false));
        assert_eq!(
            super::classify("fog_before_restore_20261201t090000z"),
            Some(true)
        );
        assert_eq!(super::classify("p_grafana_data_restore_x"), Some(false));
        assert_eq!(super::classify("fog"), None);
    }
}
