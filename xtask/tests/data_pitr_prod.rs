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

