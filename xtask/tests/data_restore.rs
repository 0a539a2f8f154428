//! E2E on the real engine (project `fogdata-restore-<pid>`, DataStack slot
//! 3): restores that cannot strand a user. A database restore paused at each
//! journalled phase (`FOG_TEST_PAUSE_AT`, never sleeps) and hit with SIGINT
//! (or SIGTERM) recovers at once and says what it did; hit with kill -9 it leaves a
//! journal that `backup list` names with the other leftovers and that
//! `backup cleanup --yes` recovers: either way the database then accepts
//! connections. Rows written during a restore are named, with no DROP
//! offered; a kill -9 during a volume swap is finished by the next run and
//! its service runs again; a killed drill's container is listed and removed.

mod common;
mod data_support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Output, Stdio},
};

use data_support::DataStack;

const PHASES: [&str; 5] = [
    "restoring",
    "blocking",
    "terminating",
    "renaming",
    "allowing",
];

/// Removes the helper containers labelled with the project, even on failure.
struct Helpers(String);

impl Drop for Helpers {
    fn drop(&mut self) {
        let filter = format!("label=dev.fog-compute.helper={}", self.0);
        for id in common::docker_lines(&["ps", "-aq", "--filter", &filter]) {
            common::docker_output(&["rm", "-f", "-v", &id]);
        }
    }
}

fn text(out: &Output) -> String {
    common::text(out)
}

/// Start `xtask args` paused at `phase`; wait until it reached it.
fn paused(stack: &DataStack, args: &[&str], phase: &str) -> (Child, PathBuf) {
    let mut cmd = stack.command(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    data_support::spawn_paused_at(cmd, phase)
}

fn signal(child: &Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn finish(child: Child) -> Output {
    let out = child.wait_with_output().unwrap();
    eprintln!("{}", text(&out));
    out
}

fn databases(stack: &DataStack, like: &str) -> Vec<String> {
    stack
        .sql(&format!(
            "SELECT datname FROM pg_database WHERE datname LIKE '{like}' ORDER BY 1"
        ))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn interrupted_restores_recover_and_leave_nothing_unreported() {
    let Some(stack) = DataStack::new("restore", 3, &["compose/base.yml"]) else {
        return;
    };
    let _helpers = Helpers(stack.project.clone());
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
    let dir = backups.to_str().unwrap();
    stack.sql("CREATE TABLE items (id int PRIMARY KEY, label text)");
    stack.sql("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(1, 1000) g");
    let written: serde_json::Value =
        serde_json::from_str(&stack.ok(&["backup", "postgres", "--dir", dir, "--format", "json"]))
            .unwrap();
    let archive = written["path"].as_str().unwrap().to_string();
    let restore = ["restore", archive.as_str(), "--yes", "--dir", dir];
    stack.sql("INSERT INTO items SELECT g, 'later' FROM generate_series(1001, 1100) g");

    for phase in PHASES {
        // SIGINT (and once SIGTERM): recovered at once, said so, the
        // database accepts connections.
        let signals: &[&str] = if phase == "renaming" {
            &["-INT", "-TERM"]
        } else {
            &["-INT"]
        };
        for sig in signals {
            stack.sql("DELETE FROM items WHERE id > 1000; INSERT INTO items SELECT g, 'later' FROM generate_series(1001, 1100) g");
            let (child, _) = paused(&stack, &restore, phase);
            signal(&child, sig);
            let out = finish(child);
            assert!(!out.status.success(), "{phase} {sig}: {}", text(&out));
            let said = text(&out);
            assert!(said.contains("interrupted"), "{phase} {sig}: {said}");
            assert!(
                said.contains(&format!(
                    "recovered the restore of database fog interrupted at phase {phase}"
                )),
                "{phase} {sig}: {said}"
            );
            let rows = stack.sql("SELECT count(*) FROM items");
            // Interrupted after the rename, the swap is kept (the data restored).
            let want = if phase == "allowing" { "1000" } else { "1100" };
            assert_eq!(rows, want, "{phase} {sig}: {said}");
            assert!(databases(&stack, "fog\\_restore\\_%").is_empty(), "{phase}");
            assert_eq!(
                stack.sql(
                    "SELECT bool_and(datallowconn) FROM pg_database WHERE datname LIKE 'fog%'"
                ),
                "t",
                "{phase} {sig}"
            );
        }

        // kill -9: the journal and the leftovers are listed, cleanup recovers.
        let (mut child, _) = paused(&stack, &restore, phase);
        child.kill().unwrap();
        finish(child);
        let listed: serde_json::Value =
            serde_json::from_str(&stack.ok(&["backup", "list", "--dir", dir, "--format", "json"]))
                .unwrap();
        let kinds: Vec<String> = listed["leftovers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                format!(
                    "{} {}",
                    l["kind"].as_str().unwrap(),
                    l["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(
            kinds
                .iter()
                .any(|k| k.starts_with("journal ") && k.contains(".restore-journal-")),
            "{phase}: {kinds:?}"
        );
        if phase != "restoring" {
            let scratch = if phase == "allowing" {
                "database fog_before_restore_"
            } else {
                "database fog_restore_"
            };
            assert!(
                kinds.iter().any(|k| k.starts_with(scratch)),
                "{phase}: {kinds:?}"
            );
        }
        let table = stack.ok(&["backup", "list", "--dir", dir]);
        assert!(table.contains("backup cleanup"), "{table}");
        if phase == "blocking" {
            // --dry-run prints the exact commands and changes nothing.
            let out = stack.ok(&["backup", "cleanup", "--dry-run", "--dir", dir]);
            assert!(
                out.contains("DROP DATABASE IF EXISTS") && out.contains("fog_restore_"),
                "{out}"
            );
            assert_eq!(databases(&stack, "fog\\_restore\\_%").len(), 1, "{out}");
        }
        // The next run recovers: a restore (then done), or cleanup.
        if phase == "terminating" {
            let out = stack.ok(&restore);
            assert!(out.contains("interrupted at phase terminating"), "{out}");
            assert_eq!(stack.sql("SELECT count(*) FROM items"), "1000");
        }
        let out = stack.ok(&["backup", "cleanup", "--yes", "--way-back", "--dir", dir]);
        assert!(
            phase == "terminating" || out.contains(&format!("interrupted at phase {phase}")),
            "{phase}: {out}"
        );
        assert_eq!(stack.sql("SELECT 1"), "1", "{phase}: accepts connections");
        assert!(
            databases(&stack, "fog\\_%restore\\_%").is_empty(),
            "{phase}"
        );
        let listed: serde_json::Value =
            serde_json::from_str(&stack.ok(&["backup", "list", "--dir", dir, "--format", "json"]))
                .unwrap();
        assert_eq!(listed["leftovers"], serde_json::json!([]), "{phase}");
    }

    // A writer during the restore: its rows are named, no DROP is offered.
    stack.sql("DELETE FROM items WHERE id > 1000");
    let (child, marker) = paused(&stack, &restore, "restored");
    for batch in 0..5 {
        let from = 5001 + batch * 50;
        stack.sql(&format!(
            "INSERT INTO items SELECT g, 'during' FROM generate_series({from}, {}) g",
            from + 49
        ));
    }
    std::fs::remove_file(&marker).unwrap();
    let out = finish(child);
    assert!(out.status.success(), "{}", text(&out));
    let said = common::stdout(&out);
    assert!(
        said.contains("public.items (250 rows inserted, updated or deleted)"),
        "{said}"
    );
    assert!(!said.contains("DROP DATABASE"), "{said}");
    assert!(said.contains("no pre-restore dump"), "{said}");
    let aside = databases(&stack, "fog\\_before\\_restore\\_%");
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(stack.sql("SELECT count(*) FROM items"), "1000");
    let kept = stack.ok(&[
        "psql",
        "--",
        "-X",
        "-At",
        "-d",
        &aside[0],
        "-c",
        "SELECT count(*) FROM items WHERE label = 'during'",
    ]);
    assert_eq!(kept.trim(), "250");
    // Nothing written: the way back can be dropped, and cleanup does only on request.
    let out = stack.ok(&["restore", &archive, "--yes", "--dir", dir]);
    assert!(out.contains("DROP DATABASE"), "{out}");
    let out = stack.ok(&["backup", "cleanup", "--yes", "--dir", dir]);
    assert!(out.contains("pass --way-back"), "{out}");
    assert_eq!(databases(&stack, "fog\\_before\\_restore\\_%").len(), 2);
    stack.ok(&["backup", "cleanup", "--yes", "--way-back", "--dir", dir]);
    assert!(databases(&stack, "fog\\_before\\_restore\\_%").is_empty());

    // A killed drill: its container is listed, then removed.
    let (mut child, _) = paused(
        &stack,
        &["backup", "verify", &archive, "--restore"],
        "drill",
    );
    child.kill().unwrap();
    finish(child);
    let table = stack.ok(&["backup", "list", "--dir", dir]);
    assert!(table.contains("fogdrill-"), "{table}");
    stack.ok(&["backup", "cleanup", "--yes", "--dir", dir]);
    let filter = format!("label=dev.fog-compute.helper={}", stack.project);
    assert!(common::docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty());

    volume_swap_killed(&stack, dir);
}

/// kill -9 in the middle of a volume restore (Postgres' own data volume):
/// the next run finishes the swap and Postgres runs again on the restored data.
fn volume_swap_killed(stack: &DataStack, dir: &str) {
    stack.sql("CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 300) g");
    let out = stack.ok(&[
        "backup",
        "volume",
        "postgres_data",
        "--stop",
        "--dir",
        dir,
        "--format",
        "json",
    ]);
    let tarball: serde_json::Value = serde_json::from_str(&out).unwrap();
    let tarball = tarball["path"].as_str().unwrap().to_string();
    stack.up(&["postgres"]);
    stack.sql("INSERT INTO kept SELECT g FROM generate_series(301, 400) g");
    let args = ["restore", tarball.as_str(), "--yes", "--dir", dir];
    let (mut child, _) = paused(stack, &args, "swapping");
    child.kill().unwrap();
    finish(child);
    // Postgres is stopped; the journal says what to finish.
    let journal = Path::new(dir).join(format!(
        ".restore-journal-{}-volume-postgres_data.json",
        stack.project
    ));
    assert!(journal.exists());
    let out = stack.ok(&["backup", "cleanup", "--yes", "--way-back", "--dir", dir]);
    assert!(out.contains("finished the swap"), "{out}");
    assert!(!journal.exists());
    stack.wait_ready();
    assert_eq!(stack.sql("SELECT count(*) FROM kept"), "300");
    let vols = common::docker_lines(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_", stack.project),
    ]);
    assert!(
        !vols
            .iter()
            .any(|v| v.contains("_restore_") && !v.contains("_before_restore_")),
        "{vols:?}"
    );
}
