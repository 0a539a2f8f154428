//! E2E on the real engine: `cargo xtask adopt` moves an old-layout stack
//! (`fixtures/legacy-adopt`: Postgres as fog_user/fog_password on
//! fog_compute, a hyphenated `prometheus-data` volume full of files, a
//! duplicated Prometheus, a redis-like service with no counterpart, its own
//! network and ports; project `fogad-<test>-<pid>`, subnets in
//! 10.236.0.0/16) onto dev and betanet (`data_support` stacks on the offline Postgres
//! image, the real `migrate` image, stub images for the other services).
//! Every row and file is checked, the old volumes are checksummed before and
//! after, each refusal changes nothing, a failure after the stop brings the
//! old stack back, so does Ctrl-C (SIGINT at a named phase,
//! `FOG_TEST_PAUSE_AT`) and `--rollback` after adopt is killed (SIGKILL at
//! that phase), and `--rollback` undoes a finished adopt.

mod adopt_support;
mod common;
mod data_support;
mod engine_support;

use std::{
    fs,
    path::PathBuf,
    process::{Command, Stdio},
};

use adopt_support::{adopt, checksum, new_stack, OldStack, FINGERPRINT, WRITE};
use common::{docker, docker_lines, docker_output, text};
use data_support::{in_volume, postgres_image, spawn_paused_at};
use engine_support::{ensure_failing_image, ensure_stub_image, STUB_IMAGE};

/// The old stack runs again with every row, and the new project has no
/// volume left (`volumes`: its `name=` filter); `what` says which case failed.
fn assert_old_back(old: &OldStack, before: &str, volumes: &str, what: &str) {
    assert!(old.all_running(), "{what}: {:?}", old.states());
    old.wait_pg();
    assert_eq!(old.sql(FINGERPRINT), before, "{what}");
    assert!(
        docker_lines(&["volume", "ls", "-q", "--filter", volumes]).is_empty(),
        "{what}"
    );
}

#[test]
fn adopt_moves_every_row_and_file_into_dev_refuses_a_second_time_and_rolls_back() {
    let port = data_support::slot_port(12) + 4;
    let Some(new) = new_stack("adopt", 12, "dev", "fog-compute/migrate:0.1.0", port) else {
        return;
    };
    ensure_stub_image();
    new.ok(&["images", "build", "migrate", "--quiet"]);
    let old = OldStack::new("main", 0, port, true);
    old.sql(WRITE);
    let before = old.sql(FINGERPRINT);
    assert!(
        before.starts_with("5000:") && before.ends_with("/0"),
        "{before}"
    );
    in_volume(
        &old.volume("prometheus-data"),
        "mkdir -p /v/01HX/chunks /v/wal && head -c 1048576 /dev/urandom > /v/01HX/chunks/000001 \
         && echo '{\"ulid\":\"01HX\"}' > /v/01HX/meta.json && : > '/v/wal/with space' && ln -s 01HX /v/latest \
         && chmod 0640 /v/01HX/meta.json && chown -R 65534:65534 /v",
    );
    in_volume(
        &old.volume("prometheus2-data"),
        "echo second > /v/only-here",
    );
    in_volume(&old.volume("redis-data"), "echo rdb > /v/dump.rdb");
    let sums: Vec<String> = ["prometheus-data", "prometheus2-data", "redis-data"]
        .iter()
        .map(|k| checksum(&old.volume(k)))
        .collect();
    let sets = new.dir.join("sets");
    let sets_arg = sets.display().to_string();
    let from = old.from();
    let base = [
        "--from",
        from.as_str(),
        "--env",
        "dev",
        "--skip-images",
        "--dir",
        &sets_arg,
    ];

    // Two old Prometheus volumes for one new one: refused, naming the choice.
    let out = adopt(&new, &[&base[..], &["--dry-run"]].concat(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("new volume `prometheus_dev_data` has 2 old candidates")
            && text(&out).contains("--map prometheus-data=prometheus_dev_data"),
        "{}",
        text(&out)
    );

    // The plan.
    let mapped = [&base[..], &["--map", "prometheus-data=prometheus_dev_data"]].concat();
    let out = adopt(&new, &[&mapped[..], &["--dry-run"]].concat(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let plan = common::stdout(&out);
    for want in [
        "  postgres -> postgres",
        "  prometheus -> prometheus",
        "  prometheus-2: left behind (no counterpart), volumes ",
        "  redis: left behind (no counterpart), volumes ",
        "pg_dump as fog_user on fog_compute (password from the old model) -> pg_restore --no-owner --no-privileges --role=fog into database fog",
        "_prometheus-data (prometheus: /prometheus, 1.0 MiB, 8 entries) -> ",
        "verified copy",
        &format!("port {port}: old prometheus publishes it, new prometheus wants it"),
        "pg_dump -Fc -Z1 -U fog_user -d fog_compute > ",
        "_prometheus-data:/from:ro -v fogdata-adopt-",
        "cargo xtask up --env dev (wait until healthy)",
        "Before/after (static)",
    ] {
        assert!(plan.contains(want), "plan lacks `{want}`:\n{plan}");
    }
    assert!(old.all_running(), "{:?}", old.states());
    let out = adopt(
        &new,
        &[&mapped[..], &["--dry-run", "--format", "json"]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_str(common::stdout(&out).trim()).unwrap();
    assert_eq!(json["plan"]["postgres"]["user"], "fog_user", "{json}");
    assert!(json["plan"]["postgres"].get("password").is_none(), "{json}");
    assert_eq!(json["report"]["after"]["spec"], "dev", "{json}");

    // A source volume used outside the old project: refused, nothing changed.
    let intruder = common::unique("fogad-intruder");
    let mount = format!("{}:/x", old.volume("prometheus-data"));
    docker(&["create", "--name", &intruder, "-v", &mount, STUB_IMAGE]);
    let out = adopt(&new, &[&mapped[..], &["--yes"]].concat(), &[]);
    docker_output(&["rm", "-f", &intruder]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "is in use by container {intruder} outside project"
        )),
        "{}",
        text(&out)
    );
    assert!(old.all_running(), "{:?}", old.states());

    // An old database newer than the new server: refused.
    let older = common::unique("fogad-pg14");
    let dockerfile = format!(
        "FROM {}\nRUN mkdir -p /fake && printf '#!/bin/sh\\necho \"postgres (PostgreSQL) 14.11\"\\n' > /fake/postgres && chmod 755 /fake/postgres\nENV PATH=/fake:$PATH\n",
        postgres_image()
    );
    let mut build = Command::new("docker")
        .args(["build", "-q", "-t", &older, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut build.stdin.take().unwrap(), dockerfile.as_bytes()).unwrap();
    assert!(build.wait().unwrap().success());
    let out = adopt(
        &new,
        &[&mapped[..], &["--dry-run"]].concat(),
        &[("POSTGRES_IMAGE", older.as_str())],
    );
    docker_output(&["rmi", "-f", &older]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("the old database is PostgreSQL 15, newer than the new server's 14"),
        "{}",
        text(&out)
    );

    // The move.
    let out = adopt(
        &new,
        &[&mapped[..], &["--yes", "--format", "json"]].concat(),
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    // The dump's bytes as they passed: no terminal here, so the closing line.
    let dumped = common::stderr(&out);
    assert!(
        dumped
            .lines()
            .any(|l| l.starts_with("adopt: postgres.dump: ") && l.ends_with("/s)")),
        "{dumped}"
    );
    let last = common::stdout(&out)
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    let figures: serde_json::Value = serde_json::from_str(&last).unwrap();
    for phase in [
        "stop-services",
        "backup-dump",
        "backup-volumes",
        "backup-verify",
        "stop-postgres",
        "create",
        "restore",
        "copy",
        "up",
        "verify",
        "total",
    ] {
        assert!(figures["phases"][phase].as_f64().is_some(), "{last}");
    }
    assert_eq!(figures["rows"], 25000, "{last}");

    // Every row, owned by the new role, with the migrations on top.
    assert_eq!(new.sql(FINGERPRINT), before);
    assert_eq!(
        new.sql("SELECT string_agg(DISTINCT tableowner, ',') FROM pg_tables WHERE tablename IN ('nodes', 'runs', 'empty_one')"),
        "fog"
    );
    assert_eq!(new.sql("SELECT count(*) > 0 FROM fog_schema_history"), "t");
    // Every file, and the old volumes untouched.
    assert_eq!(
        checksum(&format!("{}_prometheus_dev_data", new.project)),
        sums[0]
    );
    for (k, sum) in ["prometheus-data", "prometheus2-data", "redis-data"]
        .iter()
        .zip(&sums)
    {
        assert_eq!(&checksum(&old.volume(k)), sum, "old volume {k} changed");
    }
    assert!(old.states().iter().all(|(_, r)| !r), "{:?}", old.states());
    let set = PathBuf::from(figures["backup_set"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(set.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["postgres"]["rows"]["public.nodes"], 5000);
    assert_eq!(manifest["postgres"]["rows"]["jobs.runs"], 20000);

    // A second adopt onto the now-populated dev: refused, nothing touched.
    let out = adopt(&new, &[&mapped[..], &["--yes"]].concat(), &[]);
    assert!(!out.status.success());
    assert!(text(&out).contains("was already adopted"), "{}", text(&out));
    let other_dir = new.dir.join("other-sets").display().to_string();
    let elsewhere = [
        "--from",
        from.as_str(),
        "--env",
        "dev",
        "--skip-images",
        "--dir",
        &other_dir,
        "--map",
        "prometheus-data=prometheus_dev_data",
        "--yes",
    ];
    let out = adopt(&new, &elsewhere, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("_postgres_dev_data already holds data")
            && text(&out).contains("--replace"),
        "{}",
        text(&out)
    );
    assert_eq!(new.sql(FINGERPRINT), before);
    assert!(old.states().iter().all(|(_, r)| !r), "{:?}", old.states());

    // The way back.
    let out = adopt(
        &new,
        &["--rollback", "--project", &old.project, "--dir", &sets_arg],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(old.all_running(), "{:?}", old.states());
    old.wait_pg();
    assert_eq!(old.sql(FINGERPRINT), before);
    let project = format!("label=com.docker.compose.project={}", new.project);
    assert!(
        docker_lines(&["ps", "-q", "--filter", &project]).is_empty(),
        "the new environment still runs"
    );

    // --replace: dev's populated volumes are backed up into the set first.
    old.sql("INSERT INTO empty_one VALUES (1)");
    let replaced = [&elsewhere[..], &["--replace"]].concat();
    let out = adopt(&new, &replaced, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        common::stdout(&out).contains("--replace: ")
            && common::stdout(&out).contains("_postgres_dev_data holds data"),
        "{}",
        text(&out)
    );
    assert_eq!(new.sql("SELECT count(*) FROM empty_one"), "1");
    let sets: Vec<PathBuf> = fs::read_dir(new.dir.join("other-sets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(sets.len(), 1, "{sets:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(sets[0].join("manifest.json")).unwrap()).unwrap();
    let kept: Vec<&str> = manifest["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["volume"].as_str().unwrap())
        .collect();
    assert!(
        kept.contains(&format!("{}_postgres_dev_data", new.project).as_str()),
        "{kept:?}"
    );
}

#[test]
fn a_failure_or_a_kill_after_the_stop_brings_the_old_stack_back_then_betanet_adopts_it() {
    let port = data_support::slot_port(13) + 4;
    let Some(new) = new_stack("adoptfail", 13, "betanet", &ensure_failing_image(), port) else {
        return;
    };
    new.ok(&["images", "build", "migrate", "--quiet"]);
    let old = OldStack::new("fail", 1, 47900 + (std::process::id() % 50) as u16, false);
    old.sql(WRITE);
    let before = old.sql(FINGERPRINT);
    in_volume(
        &old.volume("prometheus-data"),
        "mkdir -p /v/wal && head -c 65536 /dev/urandom > /v/wal/00000001 && chown -R 65534:65534 /v",
    );
    let prometheus = checksum(&old.volume("prometheus-data"));
    let sets = new.dir.join("sets").display().to_string();
    let from = old.from();
    let args = [
        "--from",
        from.as_str(),
        "--env",
        "betanet",
        "--skip-images",
        "--dir",
        &sets,
        "--yes",
        "--timeout",
        "60",
    ];

    // The old Postgres stopped, and its port held by another container: refused.
    let pg = old.container("postgres");
    docker(&["stop", &pg]);
    let pg_port = docker(&[
        "inspect",
        "--format",
        "{{(index (index .HostConfig.PortBindings \"5432/tcp\") 0).HostPort}}",
        &pg,
    ]);
    let blocker = common::unique("fogad-blocker");
    let publish = format!("127.0.0.1:{pg_port}:9");
    docker(&["run", "-d", "--name", &blocker, "-p", &publish, STUB_IMAGE]);
    let out = adopt(&new, &args, &[]);
    docker_output(&["rm", "-f", &blocker]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("is not running and cannot be started"),
        "{}",
        text(&out)
    );
    let volumes = format!("name={}_", new.project);
    assert!(docker_lines(&["volume", "ls", "-q", "--filter", &volumes]).is_empty());

    // A port the environment publishes, held by another container: refused.
    let mixnode_port = format!("127.0.0.1:{}:9", data_support::slot_port(13) + 1);
    docker(&[
        "run",
        "-d",
        "--name",
        &blocker,
        "-p",
        &mixnode_port,
        STUB_IMAGE,
    ]);
    let out = adopt(&new, &[&args[..], &["--dry-run"]].concat(), &[]);
    docker_output(&["rm", "-f", &blocker]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("is taken by container `{blocker}`")),
        "{}",
        text(&out)
    );

    // The new environment cannot become healthy (its migrate image fails):
    // adopt starts the stopped Postgres itself, moves, fails, and undoes.
    let out = adopt(&new, &args, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("adopt failed and was undone")
            && text(&out).contains("is running again"),
        "{}",
        text(&out)
    );
    assert_old_back(&old, &before, &volumes, "adopt left new volumes behind");
    let journal: serde_json::Value = serde_json::from_slice(
        &fs::read(PathBuf::from(&sets).join(format!("adopt-{}.json", old.project))).unwrap(),
    )
    .unwrap();
    assert_eq!(journal["phase"], "failed");

    // Ctrl-C (SIGINT) before the copy, after the stop and the restore: adopt
    // ends the phase it is in, undoes, and says so; nothing is left.
    let adopt_cmd = || {
        let mut cmd = new.command(&[&["adopt"], &args[..]].concat());
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    };
    let (child, marker) = spawn_paused_at(adopt_cmd(), "copy");
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    fs::remove_file(&marker).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("interrupted (Ctrl-C or SIGTERM) before phase copy")
            && text(&out).contains("adopt failed and was undone"),
        "{}",
        text(&out)
    );
    assert_old_back(
        &old,
        &before,
        &volumes,
        "the interrupted adopt left new volumes behind",
    );

    // Killed (SIGKILL) before the copy, after the stop and the restore:
    // `--rollback` reads the journal and brings the old stack back.
    let (mut child, marker) = spawn_paused_at(adopt_cmd(), "copy");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    fs::remove_file(&marker).unwrap();
    assert!(old.states().iter().all(|(_, r)| !r), "{:?}", old.states());
    let out = adopt(
        &new,
        &["--rollback", "--project", &old.project, "--dir", &sets],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("the volumes the unfinished adopt created are removed"),
        "{}",
        text(&out)
    );
    assert_old_back(
        &old,
        &before,
        &volumes,
        "the killed adopt's volumes are left",
    );

    // Mended, the same adopt moves into betanet: every row and file.
    let env = fs::read_to_string(&new.env_file).unwrap();
    let mended: String = env
        .lines()
        .map(|l| match l.strip_prefix("MIGRATE_IMAGE=") {
            Some(_) => "MIGRATE_IMAGE=fog-compute/migrate:0.1.0\n".to_string(),
            None => format!("{l}\n"),
        })
        .collect();
    fs::write(&new.env_file, mended).unwrap();
    let out = adopt(&new, &args, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(new.sql(FINGERPRINT), before);
    assert_eq!(new.sql("SELECT count(*) > 0 FROM fog_schema_history"), "t");
    assert_eq!(
        checksum(&format!("{}_prometheus_data", new.project)),
        prometheus
    );
    assert_eq!(checksum(&old.volume("prometheus-data")), prometheus);
    assert!(old.states().iter().all(|(_, r)| !r), "{:?}", old.states());
}
