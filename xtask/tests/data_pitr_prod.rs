//! E2E on the real engine, in the **prod** overlay (`compose/base.yml` +
//! `compose/prod.yml`: the password from a secret file, a read-only root
//! filesystem, capabilities dropped, nothing published, WAL archiving on by
//! prod's default; project `fogdata-pitrprod-<pid>`, DataStack slot 4, the
//! offline Postgres image): a table dropped by mistake comes back with one
//! `cargo xtask restore --to-time T --yes`, T a moment before the drop well
//! inside `archive_timeout`, with exactly the rows committed before T; later
//! writes on the new timeline come back with `restore --latest --yes`.

mod common;
mod data_support;

use std::{fs, time::Duration, time::Instant};

use data_support::DataStack;

/// The pitr throwaway containers of the project, removed on drop.
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let filter = format!("label=dev.fog-compute.pitr={}", self.0);
        for id in common::docker_lines(&["ps", "-aq", "--filter", &filter]) {
            let _ = common::docker_output(&["rm", "-f", &id]);
        }
    }
}

fn utc_now(stack: &DataStack) -> String {
    stack.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
}

fn batches(stack: &DataStack) -> String {
    stack.sql("SELECT string_agg(batch || ':' || n, ',' ORDER BY batch) FROM (SELECT batch, count(*) n FROM t GROUP BY batch) s")
}

/// The prod stack with WAL archiving at its default (on) and a 5 s
/// `archive_timeout`; Postgres up and checked to run as prod says.
fn prod_stack(test: &str, slot: u16) -> Option<(DataStack, Leftovers, String)> {
    let stack = DataStack::new(test, slot, &["compose/base.yml", "compose/prod.yml"])?;
    let leftovers = Leftovers(stack.project.clone());
    // prod.yml names both secret files; Postgres reads only its own.
    fs::write(
        stack.dir.join("secrets").join("grafana_admin_password"),
        "Ua2mPw6xJq1Ls5tRb8nCv3Df",
    )
    .unwrap();
    let mut env = fs::read_to_string(&stack.env_file).unwrap();
    env.push_str("POSTGRES_ARCHIVE_TIMEOUT=5\n");
    fs::write(&stack.env_file, env).unwrap();
    stack.up(&["postgres"]);
    let out = stack.compose(&["ps", "-q", "postgres"]);
    let container = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let inspect = |format: &str| common::docker(&["inspect", "--format", format, &container]);
    assert_eq!(inspect("{{.HostConfig.ReadonlyRootfs}}").trim(), "true");
    assert!(
        !inspect("{{json .NetworkSettings.Ports}}").contains("HostPort"),
        "prod publishes nothing"
    );
    let env = inspect("{{json .Config.Env}}");
    assert!(
        env.contains("POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password"),
        "{env}"
    );
    assert_eq!(
        stack.sql("SHOW archive_mode"),
        "on",
        "prod archives by default"
    );
    assert_eq!(stack.sql("SHOW archive_timeout"), "5s");
    Some((stack, leftovers, container))
}

#[test]
fn prod_a_dropped_table_comes_back_with_one_command() {
    let Some((stack, _leftovers, _)) = prod_stack("pitrprod", 4) else {
        return;
    };
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();
    stack.sql("CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())");
    stack.ok(&["backup", "base", "--dir", d]);

    stack.sql("INSERT INTO t (batch) SELECT 1 FROM generate_series(1, 100)");
    stack.sql("CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 42) g");
    std::thread::sleep(Duration::from_millis(300));
    let before_drop = utc_now(&stack);
    std::thread::sleep(Duration::from_millis(300));
    stack.sql("DROP TABLE precious");
    let dropped_at = stack.sql("SELECT extract(epoch FROM clock_timestamp())");
    stack.sql("INSERT INTO t (batch) SELECT 2 FROM generate_series(1, 100)");

    // One command, straight after the mistake.
    let started = Instant::now();
    let out = stack.ok(&["restore", "--to-time", &before_drop, "--yes", "--dir", d]);
    eprintln!(
        "FIGURE prod restore --to-time: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(out.contains("recovered"), "{out}");
    assert_eq!(stack.sql("SELECT count(*) FROM precious"), "42");
    assert_eq!(
        batches(&stack),
        "1:100",
        "exactly what was committed before T"
    );
    // Back to within archive_timeout (5 s) of the drop: the newest row that
    // came back was written less than that before the drop.
    let lost: f64 = stack
        .sql(&format!(
            "SELECT {dropped_at} - extract(epoch FROM max(at)) FROM t"
        ))
        .parse()
        .unwrap();
    assert!(lost > 0.0 && lost < 5.0, "{lost} s before the drop");
    // Still prod after the swap: read-only, archiving, healthy.
    assert_eq!(stack.sql("SHOW archive_mode"), "on");

    // Writes on the new timeline, then --latest brings all of them back.
    stack.sql("INSERT INTO t (batch) SELECT 3 FROM generate_series(1, 50)");
    stack.ok(&["restore", "--latest", "--yes", "--dir", d]);
    assert_eq!(batches(&stack), "1:100,3:50");
    assert_eq!(stack.sql("SELECT count(*) FROM precious"), "42");
    let verified = stack.ok(&["backup", "verify", "--wal", "--dir", d]);
    assert!(verified.contains("continuous"), "{verified}");
}

/// Run `restore ARGS` paused at `phase` (`FOG_TEST_PAUSE_AT`) and kill -9 it
/// there.
fn killed_at(stack: &DataStack, args: &[&str], phase: &str) {
    let marker = stack.dir.join(format!("paused-{phase}"));
    let log = stack.dir.join(format!("stderr-{phase}"));
    let mut child = stack
        .command(args)
        .env("FOG_TEST_PAUSE_AT", phase)
        .env("FOG_TEST_PAUSE_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
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
}

/// The next run: a refused target (before the oldest base backup) that
/// first finishes or rolls back what the killed run left; its stderr.
fn next_run(stack: &DataStack, d: &str) -> String {
    let out = stack.xtask(&[
        "restore",
        "--to-time",
        "2001-01-01 00:00:00",
        "--yes",
        "--dir",
        d,
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("before the oldest base backup"), "{err}");
    err
}

#[test]
fn prod_a_restore_killed_at_stopping_copy_aside_or_starting_is_rolled_back_or_finished() {
    let Some((stack, _leftovers, container)) = prod_stack("pitrkill", 5) else {
        return;
    };
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();
    let journal = dir.join(format!(".pitr-{}.journal.json", stack.project));
    let running = || common::docker(&["inspect", "--format", "{{.State.Running}}", &container]);
    stack.sql("CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL)");
    stack.ok(&["backup", "base", "--dir", d]);
    stack.sql("INSERT INTO t (batch) SELECT 1 FROM generate_series(1, 100)");
    std::thread::sleep(Duration::from_millis(300));
    let t1 = utc_now(&stack);
    std::thread::sleep(Duration::from_millis(300));
    stack.sql("INSERT INTO t (batch) SELECT 2 FROM generate_series(1, 100)");
    let restore = ["restore", "--to-time", &t1, "--yes", "--dir", d];

    // `stopping`: journalled, the live server not stopped yet. The next run
    // rolls back: the live data (both batches) was never touched.
    killed_at(&stack, &restore, "stopping");
    assert!(journal.exists());
    assert_eq!(running().trim(), "true");
    let err = next_run(&stack, d);
    assert!(
        err.contains("stopped at `stopping`") && err.contains("rolled back"),
        "{err}"
    );
    assert!(!journal.exists());
    assert_eq!(batches(&stack), "1:100,2:100");

    // `copy-aside`: the live server stopped, its data partly copied aside.
    // The next run rolls back and starts it with its own data.
    killed_at(&stack, &restore, "copy-aside");
    assert_eq!(
        running().trim(),
        "false",
        "killed with the live Postgres stopped"
    );
    assert!(stack.xtask(&["psql", "--", "-c", "SELECT 1"]).status.code() != Some(0));
    let err = next_run(&stack, d);
    assert!(
        err.contains("stopped at `copy-aside`") && err.contains("rolled back"),
        "{err}"
    );
    assert!(!journal.exists());
    stack.wait_ready();
    assert_eq!(batches(&stack), "1:100,2:100");
    assert_eq!(stack.sql("SHOW archive_mode"), "on");

    // `starting`: the recovered data copied in completely, the server not
    // started yet. The next run finishes: it starts with the data at T1.
    killed_at(&stack, &restore, "starting");
    assert_eq!(running().trim(), "false");
    let err = next_run(&stack, d);
    assert!(
        err.contains("stopped at `starting`") && err.contains("copied in completely"),
        "{err}"
    );
    assert!(!journal.exists());
    stack.wait_ready();
    assert_eq!(batches(&stack), "1:100");
    let aside = common::docker_lines(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        &format!("name={}_postgres_data_before_pitr_", stack.project),
    ]);
    assert_eq!(aside.len(), 1, "the previous data is kept aside: {aside:?}");
    // Nothing of the killed runs is left: no throwaway container, no scratch volume.
    let filter = format!("label=dev.fog-compute.pitr={}", stack.project);
    assert!(common::docker_lines(&["ps", "-aq", "--filter", &filter]).is_empty());
    let scratch: Vec<String> = common::docker_lines(&["volume", "ls", "-q", "--filter", &filter])
        .into_iter()
        .filter(|v| v.contains("_pitr_") && !v.contains("_before_pitr_"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
}
