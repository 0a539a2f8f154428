//! The `migrate` binary against a real, throwaway PostgreSQL 15 server
//! (initdb + pg_ctl from /usr/lib/postgresql/15/bin on a free 127.0.0.1 port
//! in 49100-49199, as `nobody` when run as root): up, status, verify,
//! concurrent runs applying each file once, and every refusal (edited,
//! missing, failed/dirty, out of order), with CRLF not counted as an edit and
//! a `-- no-transaction` file running `CREATE INDEX CONCURRENTLY`. Under
//! `CI=true` missing binaries fail the test instead of skipping it. A
//! transactional file with a top-level `COMMIT` is refused before it runs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

struct Server {
    dir: tempfile::TempDir,
    port: u16,
    root: bool,
}

fn as_user(root: bool, program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if !root {
        return Command::new(path);
    }
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(path);
    cmd
}

fn must(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Server {
    /// `None` (skip) only when the binaries are missing and CI is unset.
    fn start() -> Option<Server> {
        if !Path::new(PG_BIN).join("postgres").is_file() {
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(!ci, "CI is set but {PG_BIN}/postgres is missing (scripts/ci-setup.sh installs postgresql-15)");
            eprintln!("skipped: no PostgreSQL 15 binaries in {PG_BIN}");
            return None;
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        let dir = tempfile::tempdir().unwrap();
        if root {
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
        }
        // Each server of this process starts its search 20 ports apart.
        static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let first = 49100 + 20 * NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 100;
        let port = (first..49200)
            .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            .expect("a free port in 49100-49199");
        let data = dir.path().join("data");
        must(
            as_user(root, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth=trust", "--no-sync"])
                .output()
                .unwrap(),
            "initdb",
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            dir.path().display()
        );
        must(
            as_user(root, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-o", &options, "-l"])
                .arg(dir.path().join("log"))
                .args(["-w", "start"])
                .output()
                .unwrap(),
            "pg_ctl start",
        );
        Some(Server { dir, port, root })
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(Path::new(PG_BIN).join("psql"))
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.url(db),
                "-c",
                sql,
            ])
            .output()
            .unwrap();
        must(out, sql)
    }

    /// A fresh database for one test.
    fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name.to_string()
    }

    fn migrate(&self, db: &str, dir: &Path, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
            .args(["--dir"])
            .arg(dir)
            .args(args)
            .env("DATABASE_URL", self.url(db))
            .env_remove("DATABASE_URL_FILE")
            .env_remove("DATABASE_PASSWORD_FILE")
            .output()
            .unwrap();
        eprintln!(
            "$ migrate {args:?} -> {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_user(self.root, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

fn folder(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let path = dir.path().to_path_buf();
    (dir, path)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

const V1: (&str, &str) = ("V0001__items.sql", "CREATE TABLE items (id BIGINT PRIMARY KEY, label TEXT NOT NULL);\nINSERT INTO items VALUES (1, 'a;b');\n");
const V2: (&str, &str) = (
    "V0002__counter.sql",
    "CREATE TABLE counter (n INT);\nINSERT INTO counter VALUES (1);\n",
);

#[test]
fn up_status_verify_and_every_refusal() {
    let Some(pg) = Server::start() else { return };

    // The embedded set (the repository's migrations/) applies and verifies.
    let db = pg.database("embedded");
    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .args(["up"])
        .env("DATABASE_URL", pg.url(&db))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM mixnode_topology"), "0");

    let db = pg.database("refusals");
    let (_keep, dir) = folder(&[V1]);
    // Dry run: the plan, nothing applied.
    let out = pg.migrate(&db, &dir, &["up", "--dry-run"]);
    let plan = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success());
    assert!(
        plan.contains("pg_try_advisory_lock")
            && plan.contains("BEGIN;")
            && plan.contains("CREATE TABLE items"),
        "{plan}"
    );
    assert_eq!(pg.psql(&db, "SELECT to_regclass('items') IS NULL"), "t");

    assert!(pg.migrate(&db, &dir, &["up"]).status.success());
    let row = pg.psql(&db, "SELECT version, name, length(checksum), success, execution_ms >= 0 FROM fog_schema_history");
    assert_eq!(row, "1|items|64|t|t");
    assert!(pg.migrate(&db, &dir, &["verify"]).status.success());

    // Status: a table and JSON, pending shown.
    fs::write(dir.join(V2.0), V2.1).unwrap();
    let out = pg.migrate(&db, &dir, &["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["migrations"][0]["state"], "applied");
    assert_eq!(doc["migrations"][1]["state"], "pending");
    assert!(
        !pg.migrate(&db, &dir, &["verify"]).status.success(),
        "pending is not verified"
    );

    // CRLF checkout of an applied file: not an edit.
    fs::write(dir.join(V1.0), V1.1.replace('\n', "\r\n")).unwrap();
    assert!(pg.migrate(&db, &dir, &["up"]).status.success());
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM fog_schema_history WHERE success"),
        "2"
    );

    // Edited after it was applied.
    fs::write(dir.join(V1.0), format!("{}-- changed\n", V1.1)).unwrap();
    let out = pg.migrate(&db, &dir, &["up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("V0001__items.sql was edited after it was applied"),
        "{}",
        stderr(&out)
    );
    let out = pg.migrate(&db, &dir, &["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("edited"));
    fs::write(dir.join(V1.0), V1.1).unwrap();

    // Missing from the folder.
    fs::remove_file(dir.join(V2.0)).unwrap();
    let out = pg.migrate(&db, &dir, &["up"]);
    assert!(
        stderr(&out).contains("V0002__counter.sql is missing from migrations/"),
        "{}",
        stderr(&out)
    );
    fs::write(dir.join(V2.0), V2.1).unwrap();

    // Out of order: a lower version added after a higher one was applied.
    fs::write(dir.join("V0004__later.sql"), "SELECT 1;").unwrap();
    assert!(pg.migrate(&db, &dir, &["up"]).status.success());
    fs::write(dir.join("V0003__forgotten.sql"), "SELECT 1;").unwrap();
    let out = pg.migrate(&db, &dir, &["up"]);
    assert!(
        stderr(&out).contains(
            "V0003__forgotten.sql (version 3) is older than the latest applied version 4"
        ),
        "{}",
        stderr(&out)
    );
    fs::remove_file(dir.join("V0003__forgotten.sql")).unwrap();

    // A failing file: rolled back, recorded as failed, later runs refuse.
    fs::write(
        dir.join("V0005__broken.sql"),
        "CREATE TABLE half (a INT);\nSELECT * FROM no_such_table;\n",
    )
    .unwrap();
    let out = pg.migrate(&db, &dir, &["up"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("V0005__broken.sql failed") && stderr(&out).contains("no_such_table"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        pg.psql(&db, "SELECT to_regclass('half') IS NULL"),
        "t",
        "rolled back"
    );
    assert_eq!(
        pg.psql(
            &db,
            "SELECT success FROM fog_schema_history WHERE version = 5"
        ),
        "f"
    );
    fs::write(dir.join("V0005__broken.sql"), "SELECT 1;").unwrap();
    let out = pg.migrate(&db, &dir, &["up"]);
    assert!(
        stderr(&out).contains("left the database dirty"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("DELETE FROM fog_schema_history WHERE version = 5 AND NOT success")
    );
    pg.psql(
        &db,
        "DELETE FROM fog_schema_history WHERE version = 5 AND NOT success",
    );
    assert!(pg.migrate(&db, &dir, &["up"]).status.success());

    // -- no-transaction: CREATE INDEX CONCURRENTLY runs (it refuses a transaction).
    fs::write(
        dir.join("V0006__index.sql"),
        "-- no-transaction\nCREATE INDEX CONCURRENTLY items_label_idx ON items (label);\nCREATE INDEX CONCURRENTLY items_id_label_idx ON items (id, label);\n",
    )
    .unwrap();
    assert!(pg.migrate(&db, &dir, &["up"]).status.success());
    assert_eq!(
        pg.psql(
            &db,
            "SELECT count(*) FROM pg_indexes WHERE tablename = 'items'"
        ),
        "3"
    );
    assert!(pg.migrate(&db, &dir, &["verify"]).status.success());
}

#[test]
fn concurrent_runs_apply_each_file_once() {
    let Some(pg) = Server::start() else { return };
    let db = pg.database("concurrent");
    // A slow first file keeps the lock held while the others wait.
    let slow = ("V0001__slow.sql", "SELECT pg_sleep(1);\nCREATE TABLE applied_once (n INT);\nINSERT INTO applied_once VALUES (1);\n");
    let (_keep, dir) = folder(&[slow, V2]);
    let spawned: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_migrate"))
                .arg("--dir")
                .arg(&dir)
                .arg("up")
                .env("DATABASE_URL", pg.url(&db))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = spawned
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outputs {
        assert!(out.status.success(), "{}", stderr(out));
    }
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM applied_once"), "1");
    assert_eq!(pg.psql(&db, "SELECT count(*) FROM counter"), "1");
    assert_eq!(
        pg.psql(&db, "SELECT count(*) FROM fog_schema_history WHERE success"),
        "2"
    );
    let applied: usize = outputs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("applied V")
                .count()
        })
        .sum();
    assert_eq!(applied, 2, "each file applied by exactly one run");
}

/// A transactional file with a top-level `COMMIT;` then an error used to
/// report "rolled back" while its table existed: now it is refused before
/// anything runs, naming the file, the line and the `-- no-transaction` way.
#[test]
fn a_commit_in_a_transactional_file_is_refused_before_anything_runs() {
    let Some(pg) = Server::start() else { return };
    let db = pg.database("commit_inside");
    let early = (
        "V0001__early.sql",
        "CREATE TABLE committed_early (a INT);\nCOMMIT;\nSELECT 1/0;\n",
    );
    let (_keep, dir) = folder(&[early]);
    let out = pg.migrate(&db, &dir, &["up"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("V0001__early.sql:2: `COMMIT;`"), "{err}");
    assert!(err.contains("-- no-transaction"), "{err}");
    assert!(!err.contains("rolled back"), "{err}");
    assert_eq!(
        pg.psql(&db, "SELECT to_regclass('committed_early') IS NULL"),
        "t"
    );
    assert_eq!(
        pg.psql(&db, "SELECT to_regclass('fog_schema_history') IS NULL OR (SELECT count(*) = 0 FROM fog_schema_history)"),
        "t"
    );
}
