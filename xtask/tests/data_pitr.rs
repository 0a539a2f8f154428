//! E2E on the real engine (project `fogdata-pitr-<pid>`, DataStack slot 15,
//! base.yml with `POSTGRES_WAL_ARCHIVE=on`): WAL archiving, `backup base`
//! (pg_verifybackup, listed), `backup verify --wal`, and `restore --to-time`:
//! a dropped table comes back from just before the drop; three batches of
//! rows, recovered to between the second and third, give exactly the first
//! two; a target before the oldest base backup, after the newest archived
//! WAL, or beyond a gap made by deleting a segment is refused with exit 2 and
//! the reachable span; a restore killed with SIGKILL at a named phase
//! (`FOG_TEST_PAUSE_AT`) leaves the live database running and its leftovers
//! are removed by the next run.

mod common;
mod data_support;

use std::{fs, time::Duration, time::Instant};

use data_support::DataStack;

struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let filter = format!("label=dev.fog-compute.pitr={}", self.0);
        for id in common::docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = common::docker_output(&["rm", "-f", &id]);
        }
    }
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn utc_now(stack: &DataStack) -> String {
    stack.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
}

fn refused(stack: &DataStack, args: &[&str], needle: &str) -> String {
    let out = stack.xtask(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(needle), "{args:?}: {err}");
    assert!(
        err.contains("reachable"),
        "names what can be reached: {err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    assert!(errors[0].contains(needle) && errors[0].contains("reachable"));
    err
}

/// Run `restore --latest` paused at `phase`, kill -9 it there; its stderr.
fn killed_at(stack: &DataStack, dir: &str, phase: &str) -> String {
    let marker = stack.dir.join(format!("paused-{phase}"));
    let log = stack.dir.join(format!("stderr-{phase}"));
    let mut child = stack
        .command(&["restore", "--latest", "--yes", "--dir", dir])
        .env("FOG_TEST_PAUSE_AT", phase)
        .env("FOG_TEST_PAUSE_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "never reached {phase}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before {phase}: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    fs::read_to_string(&log).unwrap_or_default()
}

#[test]
fn wal_archive_base_backup_and_restore_to_a_moment_with_every_refusal() {
    let Some(stack) = DataStack::new("pitr", 15, &["compose/base.yml"]) else {
        return;
    };
    let _leftovers = Leftovers(stack.project.clone());
    let mut env = fs::read_to_string(&stack.env_file).unwrap();
    env.push_str("POSTGRES_WAL_ARCHIVE=on\nPOSTGRES_ARCHIVE_TIMEOUT=5\n");
    fs::write(&stack.env_file, env).unwrap();
    stack.up(&["postgres"]);
    assert_eq!(stack.sql("SHOW archive_mode"), "on");

    // archive-wal.sh: a byte-identical re-archive succeeds, a different file
    // under the same name is refused (exit 1, so Postgres retries).
    let out = stack.compose(&["ps", "-q", "postgres"]);
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let name = "0000000F00000000000000AA";
    let script = format!(
        "cd /tmp && head -c 4096 /dev/urandom > s && sh /etc/fog/archive-wal.sh /tmp/s {name} && \
         sh /etc/fog/archive-wal.sh /tmp/s {name} && echo same-ok && echo x >> s && \
         if sh /etc/fog/archive-wal.sh /tmp/s {name}; then echo overwrote; else echo refused; fi; \
         ls -a /var/lib/postgresql/wal-archive | grep -c partial; rm /var/lib/postgresql/wal-archive/{name}"
    );
    let out = common::docker_output(&["exec", "-u", "postgres", &container, "sh", "-c", &script]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("same-ok") && text.contains("refused"),
        "{text} {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("refusing to overwrite"),
        "{}",
        stderr(&out)
    );
    assert!(
        text.trim_end().ends_with('0'),
        "no temporary file left: {text}"
    );
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();

    // No base backup yet: refused, naming the command that takes one.
    let out = stack.xtask(&["restore", "--latest", "--yes", "--dir", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("backup base"), "{}", stderr(&out));

    stack.sql("CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL)");
    let base: serde_json::Value =
        serde_json::from_str(&stack.ok(&["backup", "base", "--dir", d, "--format", "json"]))
            .unwrap();
    let path = base["path"].as_str().unwrap().to_string();
    assert!(base["base"]["start_lsn"].as_str().unwrap().contains('/'));
    for suffix in [".sha256", ".manifest.json", ".base.json"] {
        assert!(fs::metadata(format!("{path}{suffix}")).is_ok(), "{suffix}");
    }
    assert!(stack.ok(&["backup", "list", "--dir", d]).contains("base"));
    assert!(stack.ok(&["backup", "verify", &path]).contains("verified"));

    // Three batches; T2 between the second and the third commit.
    stack.sql("INSERT INTO t (batch) SELECT 1 FROM generate_series(1, 100)");
    stack.sql("INSERT INTO t (batch) SELECT 2 FROM generate_series(1, 100)");
    std::thread::sleep(Duration::from_millis(300));
    let t2 = utc_now(&stack);
    std::thread::sleep(Duration::from_millis(300));
    stack.sql("INSERT INTO t (batch) SELECT 3 FROM generate_series(1, 100)");
    stack.sql("CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 42) g");
    std::thread::sleep(Duration::from_millis(300));
    let before_drop = utc_now(&stack);
    std::thread::sleep(Duration::from_millis(300));
    stack.sql("DROP TABLE precious");

    // Each refusal names the nearest reachable moments: the base backup's
    // end, and the newest archived commit.
    let stop_time = base["base"]["stop_time"].as_str().unwrap();
    let err = refused(
        &stack,
        &[
            "restore",
            "--to-time",
            "2001-01-01 00:00:00",
            "--yes",
            "--dir",
            d,
        ],
        "before the oldest base backup",
    );
    assert!(
        err.contains(&format!("the earliest reachable moment is {stop_time}")),
        "{err}"
    );
    let err = refused(
        &stack,
        &[
            "restore",
            "--to-time",
            "2100-01-01 00:00:00+00",
            "--yes",
            "--dir",
            d,
        ],
        "after the newest archived WAL",
    );
    // ... to the newest commit (the DROP, after `before_drop`).
    let span = format!("reachable from {stop_time} to ");
    let newest = err
        .split_once(&span)
        .map(|(_, rest)| &rest[..19])
        .unwrap_or_else(|| panic!("names the span from the base backup's end: {err}"));
    assert!(
        newest >= &before_drop[..19],
        "{newest} vs {before_drop}: {err}"
    );
    let verified = stack.ok(&["backup", "verify", "--wal", "--dir", d]);
    assert!(verified.contains("continuous"), "{verified}");

    // The dropped table comes back.
    let started = Instant::now();
    stack.ok(&["restore", "--to-time", &before_drop, "--yes", "--dir", d]);
    eprintln!(
        "FIGURE restore --to-time (base + WAL replay + swap): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(stack.sql("SELECT count(*) FROM precious"), "42");
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "300");
    let aside = common::docker_lines(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_postgres_data_before_pitr_", stack.project),
    ]);
    assert_eq!(aside.len(), 1, "the previous data is kept aside: {aside:?}");

    // Between the second and third batch: exactly the first two.
    stack.ok(&["restore", "--to-time", &t2, "--yes", "--dir", d]);
    assert_eq!(
        stack.sql("SELECT string_agg(batch || ':' || n, ',' ORDER BY batch) FROM (SELECT batch, count(*) n FROM t GROUP BY batch) s"),
        "1:100,2:100"
    );

    // Killed after the recovered copy verified, before the swap: the live
    // database keeps running with its data.
    let filter = format!("label=dev.fog-compute.pitr={}", stack.project);
    killed_at(&stack, d, "verified");
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "200");
    assert!(!common::docker_lines(&["volume", "ls", "-q", "--filter", &filter]).is_empty());

    // Killed inside the swap (journal at `copy-in`, live Postgres stopped):
    // this run first removed the earlier run's leftovers; the next one rolls
    // the swap back and starts the live Postgres again.
    let err = killed_at(&stack, d, "copy-in");
    assert!(err.contains("removed volume"), "leftovers reported: {err}");
    assert!(stack.xtask(&["psql", "--", "-c", "SELECT 1"]).status.code() != Some(0));
    assert!(stack
        .dir
        .join("backups")
        .join(format!(".pitr-{}.journal.json", stack.project))
        .exists());

    // A gap: delete an archived segment after the base backup. The next run
    // first removes the killed run's leftovers, then refuses.
    let archive = format!("{}_postgres_wal_archive", stack.project);
    let segs = common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{archive}:/a"),
        "--entrypoint",
        "sh",
        &data_support::postgres_image(),
        "-c",
        "ls /a/wal-archive | grep -E '^[0-9A-F]{24}$' | sort",
    ]);
    let start = base["base"]["start_wal"].as_str().unwrap();
    let victim = segs
        .lines()
        .find(|s| *s > start && s.starts_with("00000001"))
        .expect("a segment after the base backup")
        .to_string();
    common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0:0",
        "-v",
        &format!("{archive}:/a"),
        "--entrypoint",
        "rm",
        &data_support::postgres_image(),
        &format!("/a/wal-archive/{victim}"),
    ]);
    let out = stack.xtask(&["restore", "--to-time", &before_drop, "--yes", "--dir", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("inside a gap"), "{}", stderr(&out));
    assert!(stderr(&out).contains(&victim), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("reachable from {stop_time}")),
        "the gap refusal names what can be reached: {}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("rolled back"), "{}", stderr(&out));
    assert!(common::docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty());
    let out = stack.xtask(&["backup", "verify", "--wal", "--dir", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(&victim));
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "200");
}
