//! E2E of point-in-time recovery off the host, against the real engine and
//! Postgres (project `fogdata-pitroff-<pid>`, DataStack slot 14, base.yml
//! with `POSTGRES_WAL_ARCHIVE=on`) and a real SeaweedFS S3 server (ports from
//! `slot_port(14) + 10`): `backup base --to` uploads the base backup with its
//! `.base.json`; `backup wal --to --encrypt-to` ships every archived file as
//! age ciphertext with a `.sha256`, and a shipper killed with SIGKILL after
//! its first upload, then a SIGKILLed Postgres, lose nothing (the next run
//! ships the rest; `backup verify --wal` stays continuous); the textfile
//! metrics are written; `restore --to-time --from s3://` into an empty
//! backups folder brings a dropped table back from the bucket alone, and is
//! refused without `--identity` and before the oldest base backup;
//! `backup prune` (local and `--from`) removes the segments before the kept
//! base backup's start and nothing it needs (`verify --wal` passes after);
//! with the local archive wiped, `restore --latest --from` still recovers;
//! a segment deleted from the bucket is refused as a gap.

mod common;
mod data_support;
mod s3_support;

use std::{fs, time::Duration, time::Instant};

use age::secrecy::ExposeSecret;
use data_support::DataStack;
use sha2::Digest;

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

/// Switch WAL and wait (bounded) until Postgres reports the segment archived.
fn switch_and_wait(stack: &DataStack) {
    let seg = stack.sql("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = stack.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
        if last >= seg {
            return;
        }
        assert!(Instant::now() < deadline, "{seg} not archived: {last}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The archive volume's file names (segments and history files).
fn archived(stack: &DataStack) -> Vec<String> {
    let volume = format!("{}_postgres_wal_archive", stack.project);
    common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &format!("{volume}:/a:ro"),
        "--entrypoint",
        "sh",
        &data_support::postgres_image(),
        "-c",
        "ls /a/wal-archive | grep -E '^[0-9A-F]{24}$|^[0-9A-F]{8}[.]history$' | sort",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// `backup wal --dir D --to URL --encrypt-to RECIPIENT [EXTRA...]`.
fn ship_wal<'a>(d: &'a str, url: &'a str, recipient: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "backup",
        "wal",
        "--dir",
        d,
        "--to",
        url,
        "--encrypt-to",
        recipient,
    ];
    args.extend_from_slice(extra);
    args
}

/// `restore TARGET... --from URL [--identity KEY] --yes --dir D`.
fn restore_from<'a>(
    target: &[&'a str],
    url: &'a str,
    identity: Option<&'a str>,
    d: &'a str,
) -> Vec<&'a str> {
    let mut args = vec!["restore"];
    args.extend_from_slice(target);
    args.extend(["--from", url]);
    if let Some(key) = identity {
        args.extend(["--identity", key]);
    }
    args.extend(["--yes", "--dir", d]);
    args
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn wal_shipped_to_s3_restored_from_it_pruned_and_watched() {
    let Some(weed) = s3_support::weed_or_skip("wal_shipped_to_s3_restored_from_it") else {
        return;
    };
    let Some(stack) = DataStack::new("pitroff", 14, &["compose/base.yml"]) else {
        return;
    };
    let _leftovers = Leftovers(stack.project.clone());
    // The only test in this binary: the xtask children inherit these.
    std::env::set_var("AWS_ACCESS_KEY_ID", s3_support::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", s3_support::SECRET_KEY);
    let metrics_dir = stack.dir.join("metrics");
    std::env::set_var("FOG_BACKUP_METRICS_DIR", &metrics_dir);
    let server = s3_support::Weed::start(
        &weed,
        "fogw22-pitroff",
        data_support::slot_port(14) + 10,
        "fogpitr",
    );
    std::env::set_var("FOG_S3_ENDPOINT", &server.endpoint);
    let url = "s3://fogpitr/prod";
    let location = xtask::s3::Location::parse(url).unwrap().unwrap();
    let bucket = xtask::s3::Store::open(&location, &server.endpoint).unwrap();
    let wal_bucket = bucket.child(&format!("{}-wal", stack.project)).unwrap();

    let mut env = fs::read_to_string(&stack.env_file).unwrap();
    env.push_str("POSTGRES_WAL_ARCHIVE=on\nPOSTGRES_ARCHIVE_TIMEOUT=5\n");
    fs::write(&stack.env_file, env).unwrap();
    stack.up(&["postgres"]);
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();
    let key = age::x25519::Identity::generate();
    let key_file = stack.dir.join("age-key.txt");
    fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let recipient = key.to_public().to_string();
    let k = key_file.to_str().unwrap();

    // Base backup 1, encrypted in the stream, uploaded with its record.
    stack.sql("CREATE TABLE t (id serial PRIMARY KEY, batch int NOT NULL)");
    let out = stack.xtask(&[
        "backup",
        "base",
        "--dir",
        d,
        "--to",
        url,
        "--encrypt-to",
        &recipient,
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let base1 = json(&common::stdout(&out));
    let base1_name = fs::canonicalize(base1["path"].as_str().unwrap())
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    for suffix in [
        ".tar.gz.age (",
        ".sha256 (",
        ".base.json (",
        ".manifest.json (",
    ] {
        assert!(
            common::stderr(&out).contains(suffix),
            "{suffix}: {}",
            common::stderr(&out)
        );
    }
    // Ciphertext on disk, its checksum of the ciphertext; verified (the
    // plaintext by pg_verifybackup) only with the key.
    let base1_path = base1["path"].as_str().unwrap().to_string();
    assert!(base1_name.ends_with(".tar.gz.age"), "{base1_name}");
    let bytes = fs::read(&base1_path).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    let sha = fs::read_to_string(format!("{base1_path}.sha256")).unwrap();
    assert!(
        sha.starts_with(
            &sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ),
        "the checksum is of the ciphertext: {sha}"
    );
    let out = stack.xtask(&["backup", "verify", &base1_path]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(common::stderr(&out).contains("--identity"));
    let out = stack.ok(&["backup", "verify", &base1_path, "--identity", k]);
    assert!(out.contains("verified"), "{out}");

    stack.sql("INSERT INTO t (batch) SELECT 1 FROM generate_series(1, 100)");
    stack.sql("INSERT INTO t (batch) SELECT 2 FROM generate_series(1, 100)");
    stack.sql("CREATE TABLE precious AS SELECT g AS id FROM generate_series(1, 42) g");
    std::thread::sleep(Duration::from_millis(300));
    let before_drop = utc_now(&stack);
    std::thread::sleep(Duration::from_millis(300));
    stack.sql("DROP TABLE precious");
    switch_and_wait(&stack);
    // A local restore from the encrypted base backup needs the key: refused
    // before anything is touched.
    let out = stack.xtask(&["restore", "--to-time", &before_drop, "--yes", "--dir", d]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::stderr(&out).contains("--identity"),
        "{}",
        common::text(&out)
    );
    assert!(stack
        .xtask(&["psql", "--", "-c", "SELECT 1"])
        .status
        .success());

    // The shipper killed after its first verified upload...
    let marker = stack.dir.join("paused-ship");
    let mut child = stack
        .command(&ship_wal(d, url, &recipient, &[]))
        .env("FOG_TEST_PAUSE_AT", "wal-shipped-one")
        .env("FOG_TEST_PAUSE_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the shipper never shipped one");
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let killed = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(xtask::wal_remote::list(&wal_bucket).unwrap().len(), 1);
    let stale = dir.join(format!(".wal-ship-{killed}"));
    assert!(stale.exists(), "SIGKILL left its work folder");
    // ... and Postgres SIGKILLed, started again, more written.
    let pg = String::from_utf8_lossy(&stack.compose(&["ps", "-q", "postgres"]).stdout)
        .trim()
        .to_string();
    common::docker(&["kill", "-s", "KILL", &pg]);
    stack.up(&["postgres"]);
    stack.sql("INSERT INTO t (batch) SELECT 3 FROM generate_series(1, 10)");
    switch_and_wait(&stack);
    // The next run ships everything else; nothing local was removed.
    let out = stack.ok(&ship_wal(d, url, &recipient, &["--format", "json"]));
    let report = json(&out);
    assert!(
        !stale.exists(),
        "the next run removed the killed run's work folder"
    );
    let local = archived(&stack);
    let remote = xtask::wal_remote::list(&wal_bucket).unwrap();
    assert_eq!(
        remote.keys().cloned().collect::<Vec<_>>(),
        local,
        "every archived file is in the bucket with its .sha256"
    );
    assert_eq!(
        report["shipped"].as_array().unwrap().len() + 1,
        local.len(),
        "{out}"
    );
    let (object_name, object) = remote
        .iter()
        .next()
        .map(|(n, o)| (n.clone(), o.clone()))
        .unwrap();
    assert!(object.ends_with(".gz.age"), "{object}");
    let mut bytes = Vec::new();
    wal_bucket.download(&object, &mut bytes).unwrap();
    assert!(
        bytes.starts_with(b"age-encryption.org/v1\n"),
        "{object_name}: ciphertext"
    );
    let verified = stack.ok(&["backup", "verify", "--wal", "--dir", d]);
    assert!(verified.contains("continuous"), "{verified}");

    // Metrics: the archive, the shipping and the base backup.
    let read = |name: &str| fs::read_to_string(metrics_dir.join(name)).unwrap_or_default();
    let archive_prom = read(&format!("fog_wal_{}.prom", stack.project.replace('-', "_")));
    let last = archive_prom
        .lines()
        .find(|l| l.starts_with("fog_wal_last_archived_timestamp_seconds{"))
        .unwrap_or_else(|| panic!("{archive_prom}"));
    let ts: f64 = last.rsplit(' ').next().unwrap().parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(now - ts < 120.0, "{last}");
    let shipped_prom = read(&format!(
        "fog_wal_{}_shipped.prom",
        stack.project.replace('-', "_")
    ));
    assert!(
        shipped_prom.contains(&format!(
            "fog_wal_unshipped_files{{project=\"{}\"}} 0\n",
            stack.project
        )),
        "{shipped_prom}"
    );
    let base_prom = read(&format!(
        "fog_backup_{}_base_fog.prom",
        stack.project.replace('-', "_")
    ));
    assert!(base_prom.contains("kind=\"base\""), "{base_prom}");

    // Restore from the bucket alone (an empty backups folder): the dropped
    // table comes back. Without the key: refused, nothing touched.
    let fresh = stack.dir.join("fresh");
    let f = fresh.to_str().unwrap();
    let out = stack.xtask(&restore_from(&["--to-time", &before_drop], url, None, f));
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::stderr(&out).contains("--identity"),
        "{}",
        common::text(&out)
    );
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "210");
    let out = stack.xtask(&restore_from(
        &["--to-time", "2001-01-01 00:00:00"],
        url,
        Some(k),
        f,
    ));
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("before the oldest base backup") && err.contains("earliest reachable"),
        "{err}"
    );
    let started = Instant::now();
    let out = stack.xtask(&restore_from(&["--to-time", &before_drop], url, Some(k), f));
    assert!(out.status.success(), "{}", common::text(&out));
    eprintln!(
        "FIGURE restore --to-time --from s3 (download + verify + replay + swap): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(common::stderr(&out).contains("each checked against its .sha256"));
    assert_eq!(stack.sql("SELECT count(*) FROM precious"), "42");
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "200");
    assert!(
        fs::read_dir(&fresh).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".pitr-fetch")),
        "the download folder is removed"
    );

    // A figure: shipping segments full of incompressible-ish rows.
    stack.sql(
        "CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS v \
         FROM generate_series(1, 400000) g",
    );
    switch_and_wait(&stack);
    let started = Instant::now();
    let out = stack.ok(&ship_wal(d, url, &recipient, &["--format", "json"]));
    let seconds = started.elapsed().as_secs_f64();
    let shipped = json(&out)["shipped"].as_array().unwrap().clone();
    let raw: u64 = shipped
        .iter()
        .map(|f| f["shipped"]["size"].as_u64().unwrap())
        .sum();
    let stored: u64 = shipped
        .iter()
        .map(|f| f["shipped"]["stored_size"].as_u64().unwrap())
        .sum();
    assert!(shipped.len() >= 3, "{out}");
    eprintln!(
        "FIGURE backup wal --to (gzip + age + upload + read back): {} files, {:.1} MB of WAL stored as {:.1} MB in {seconds:.1}s ({:.1} MB/s of WAL)",
        shipped.len(),
        raw as f64 / 1e6,
        stored as f64 / 1e6,
        raw as f64 / 1e6 / seconds
    );

    // Base backup 2 on the new timeline; more WAL in three segments.
    let base2 = json(&stack.ok(&[
        "backup", "base", "--dir", d, "--to", url, "--format", "json",
    ]));
    let start2 = base2["base"]["start_wal"].as_str().unwrap().to_string();
    for batch in [7, 8, 9] {
        stack.sql(&format!(
            "INSERT INTO t (batch) SELECT {batch} FROM generate_series(1, 10)"
        ));
        switch_and_wait(&stack);
    }
    stack.ok(&ship_wal(d, url, &recipient, &[]));
    let number = |n: &str| u64::from_str_radix(&n[8..], 16).unwrap();
    let before: Vec<String> = archived(&stack)
        .into_iter()
        .filter(|n| n.len() == 24 && number(n) < number(&start2))
        .collect();
    assert!(
        !before.is_empty(),
        "segments before base 2: {:?}",
        archived(&stack)
    );

    // Prune: base 1 goes, and with it the WAL only it needed; history files
    // and everything from base 2's start stay; verify --wal still passes.
    let out = stack.ok(&[
        "backup",
        "prune",
        "--keep-last",
        "1",
        "--dir",
        d,
        "--project",
        &stack.project,
    ]);
    assert!(
        out.contains("removed") && out.contains("WAL segments"),
        "{out}"
    );
    let after = archived(&stack);
    assert!(
        after
            .iter()
            .all(|n| n.len() != 24 || number(n) >= number(&start2)),
        "{after:?}"
    );
    assert!(after.contains(&start2), "{after:?}");
    assert!(after.iter().any(|n| n.ends_with(".history")), "{after:?}");
    let verified = stack.ok(&["backup", "verify", "--wal", "--dir", d]);
    assert!(
        verified.contains("continuous") && !verified.contains(&base1_name),
        "{verified}"
    );
    let out = stack.ok(&["backup", "prune", "--from", url, "--keep", "1"]);
    assert!(out.contains("WAL segments"), "{out}");
    let remote = xtask::wal_remote::list(&wal_bucket).unwrap();
    assert!(
        remote
            .keys()
            .all(|n| n.len() != 24 || number(n) >= number(&start2)),
        "{remote:?}"
    );
    assert!(remote.contains_key(&start2));
    let names: Vec<String> = bucket.list().unwrap().into_iter().map(|o| o.name).collect();
    assert!(
        !names.iter().any(|n| n.starts_with(&base1_name)),
        "{names:?}"
    );

    // The local archive lost: the bucket still recovers to the newest WAL.
    let volume = format!("{}_postgres_wal_archive", stack.project);
    common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "0:0",
        "-v",
        &format!("{volume}:/a"),
        "--entrypoint",
        "sh",
        &data_support::postgres_image(),
        "-c",
        "rm -f /a/wal-archive/0*",
    ]);
    stack.ok(&restore_from(&["--latest"], url, Some(k), f));
    assert_eq!(
        stack.sql("SELECT string_agg(DISTINCT batch::text, ',' ORDER BY batch::text) FROM t"),
        "1,2,7,8,9"
    );

    // A segment missing in the bucket after base 2: a gap, refused.
    let remote = xtask::wal_remote::list(&wal_bucket).unwrap();
    let tl = &start2[..8];
    let mine: Vec<&String> = remote
        .keys()
        .filter(|n| n.len() == 24 && n.starts_with(tl) && number(n) >= number(&start2))
        .collect();
    assert!(mine.len() >= 3, "{mine:?}");
    let victim = mine[1].clone();
    wal_bucket
        .delete(&format!("{}.sha256", remote[&victim]))
        .unwrap();
    let now = utc_now(&stack);
    let out = stack.xtask(&restore_from(&["--to-time", &now], url, Some(k), f));
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("inside a gap") && err.contains(&victim) && err.contains("reachable"),
        "{err}"
    );
    assert_eq!(stack.sql("SELECT count(*) FROM t"), "230");
}
