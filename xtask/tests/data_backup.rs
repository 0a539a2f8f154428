//! E2E on the real engine (project `fogdata-backup-<pid>`, subnets in
//! 10.235.0.0/16): concurrent `migrate up` runs apply each migration once;
//! rows -> `backup postgres` -> `verify` and a restore drill -> delete ->
//! `restore` gives identical rows (compared by a checksum over the rows); a
//! drill fails on a manifest whose row counts were altered; an archive with
//! one flipped byte is refused and the live data untouched; a backup killed
//! with SIGKILL midway leaves nothing `verify` accepts; a restore whose dump
//! fails midway leaves the old data in place and says so.

mod common;
mod data_support;

use std::{fs, path::Path, path::PathBuf, time::Duration};

use data_support::{in_volume, DataStack};
use sha2::Digest;

const ROWS_SUM: &str =
    "SELECT count(*) || ':' || md5(string_agg(id::text || label, ',' ORDER BY id)) FROM items";

fn copy_backup(archive: &Path, to: &Path) -> PathBuf {
    fs::create_dir_all(to).unwrap();
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    for suffix in ["", ".sha256", ".manifest.json"] {
        fs::copy(
            archive.with_file_name(format!("{name}{suffix}")),
            to.join(format!("{name}{suffix}")),
        )
        .unwrap();
    }
    to.join(name)
}

fn manifest(archive: &Path) -> serde_json::Value {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    serde_json::from_str(
        &fs::read_to_string(archive.with_file_name(format!("{name}.manifest.json"))).unwrap(),
    )
    .unwrap()
}

fn write_manifest(archive: &Path, m: &serde_json::Value) {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    fs::write(
        archive.with_file_name(format!("{name}.manifest.json")),
        m.to_string(),
    )
    .unwrap();
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `backup volume NAME --dir DIR --format json [EXTRA...]`: the archive's path.
fn backup_volume(stack: &DataStack, name: &str, dir: &str, extra: &[&str]) -> String {
    let mut args = vec!["backup", "volume", name, "--dir", dir, "--format", "json"];
    args.extend_from_slice(extra);
    let summary: serde_json::Value = serde_json::from_str(&stack.ok(&args)).unwrap();
    summary["path"].as_str().unwrap().to_string()
}

/// A volume archive with a `../escaped` entry, with a valid checksum and a
/// manifest copied from `like`: only the entry check can refuse it.
fn crafted_escape(dir: &Path, like: &Path) -> PathBuf {
    let evil = dir.join("evil").join("fogdata-evil.tar.gz");
    fs::create_dir_all(evil.parent().unwrap()).unwrap();
    let made = std::process::Command::new("python3")
        .args(["-c", "import io,sys,tarfile\nt=tarfile.open(sys.argv[1],'w:gz')\ni=tarfile.TarInfo('../escaped');d=b'x';i.size=len(d);t.addfile(i,io.BytesIO(d));t.close()"])
        .arg(&evil)
        .status()
        .unwrap();
    assert!(made.success());
    let bytes = fs::read(&evil).unwrap();
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut m = manifest(like);
    m["file"] = serde_json::json!("fogdata-evil.tar.gz");
    m["size"] = serde_json::json!(bytes.len());
    m["sha256"] = serde_json::json!(digest);
    m.as_object_mut().unwrap().remove("entries");
    write_manifest(&evil, &m);
    fs::write(
        evil.with_file_name("fogdata-evil.tar.gz.sha256"),
        format!("{digest}  fogdata-evil.tar.gz\n"),
    )
    .unwrap();
    evil
}

#[test]
fn backup_verify_restore_and_every_refusal() {
    let Some(stack) = DataStack::new("backup", 1, &["compose/base.yml"]) else {
        return;
    };
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
    let dir = backups.to_str().unwrap();

    // psql serves scripts on stdin.
    let mut psql = stack
        .command(&["psql", "--", "-At", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut psql.stdin.take().unwrap(), b"SELECT 6 * 7;\n").unwrap();
    let out = psql.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");

    // Two concurrent runs: each migration applied exactly once.
    let runs: Vec<_> = (0..2)
        .map(|_| {
            stack
                .command(&["migrate", "up"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = runs
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for out in &outs {
        assert!(out.status.success(), "{}", stderr(out));
    }
    let files = fs::read_dir(data_support::repo_root().join("migrations"))
        .unwrap()
        .count();
    let applied: usize = outs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .matches("applied V")
                .count()
        })
        .sum();
    assert_eq!(applied, files, "each migration applied by exactly one run");
    assert_eq!(
        stack.sql("SELECT count(*) FROM fog_schema_history WHERE success"),
        files.to_string()
    );
    assert!(stack.ok(&["migrate", "status"]).contains("applied"));
    stack.ok(&["migrate", "verify", "--schema"]);
    // Drift: a column added behind the migrations' back.
    stack.sql("ALTER TABLE mixnode_topology ADD COLUMN drift integer");
    let out = stack.xtask(&["migrate", "verify", "--schema"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("-    drift integer"),
        "{}",
        common::text(&out)
    );
    assert!(stderr(&out).contains("schema drift"));
    stack.sql("ALTER TABLE mixnode_topology DROP COLUMN drift");

    // Enough rows that a dump takes a moment (about 10 MB of table).
    stack.sql("CREATE TABLE items (id bigint PRIMARY KEY, label text NOT NULL)");
    stack.sql("INSERT INTO items SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 100000) g");
    let original = stack.sql(ROWS_SUM);

    let summary: serde_json::Value =
        serde_json::from_str(&stack.ok(&["backup", "postgres", "--dir", dir, "--format", "json"]))
            .unwrap();
    let archive = PathBuf::from(summary["path"].as_str().unwrap());
    assert!(archive.is_file());
    assert_eq!(manifest(&archive)["tables"]["public.items"], 100000);
    let sha = std::process::Command::new("sha256sum")
        .arg("-c")
        .arg(archive.with_file_name(format!(
            "{}.sha256",
            archive.file_name().unwrap().to_string_lossy()
        )))
        .current_dir(&backups)
        .output()
        .unwrap();
    assert!(sha.status.success(), "sha256sum -c: {}", common::text(&sha));
    let a = archive.to_str().unwrap();
    stack.ok(&["backup", "verify", a]);
    let drill: serde_json::Value =
        serde_json::from_str(&stack.ok(&["backup", "verify", a, "--restore", "--format", "json"]))
            .unwrap();
    assert_eq!(drill["drill"]["passed"], true);
    assert!(drill["drill"]["indexes_checked"].as_i64().unwrap() >= 2);

    // Altered row counts: checksum fine, the drill refuses.
    let altered = copy_backup(&archive, &stack.dir.join("altered"));
    let mut m = manifest(&altered);
    m["tables"]["public.items"] = serde_json::json!(100001);
    write_manifest(&altered, &m);
    let out = stack.xtask(&["backup", "verify", altered.to_str().unwrap(), "--restore"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("public.items: 100000 rows restored, manifest says 100001"),
        "{}",
        stderr(&out)
    );

    // One flipped byte: refused before anything is touched.
    let flipped = copy_backup(&archive, &stack.dir.join("flipped"));
    let mut bytes = fs::read(&flipped).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&flipped, bytes).unwrap();
    stack.sql("UPDATE items SET label = 'changed' WHERE id = 1");
    let changed = stack.sql(ROWS_SUM);
    let databases = stack.sql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database");
    let out = stack.xtask(&["restore", flipped.to_str().unwrap(), "--yes", "--dir", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("checksum mismatch") && stderr(&out).contains("nothing was touched"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.sql(ROWS_SUM), changed);
    assert_eq!(
        stack.sql("SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database"),
        databases
    );
    assert!(!fs::read_dir(&backups).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("pre-restore")));
    assert!(!stack
        .xtask(&["backup", "verify", flipped.to_str().unwrap()])
        .status
        .success());

    // No terminal and no --yes: exit 2.
    assert_eq!(stack.xtask(&["restore", a]).status.code(), Some(2));

    // Killed with SIGKILL midway: nothing that looks complete or verifies.
    let killdir = stack.dir.join("killed");
    let mut child = stack
        .command(&["backup", "postgres", "--dir", killdir.to_str().unwrap()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let partial = fs::read_dir(&killdir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .any(|e| {
                e.file_name().to_string_lossy().contains(".partial-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            });
        if partial {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the backup never started writing"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the backup finished before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for entry in fs::read_dir(&killdir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with('.') && name.contains(".partial-"),
            "a killed backup left {name}"
        );
        assert!(!stack
            .xtask(&["backup", "verify", path.to_str().unwrap()])
            .status
            .success());
    }
    let listed: serde_json::Value = serde_json::from_str(&stack.ok(&[
        "backup",
        "list",
        "--dir",
        killdir.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    assert_eq!(listed["backups"].as_array().unwrap().len(), 0);

    // Delete rows, restore (with the optional pre-restore dump): identical rows again.
    stack.sql("DELETE FROM items WHERE id > 1000");
    stack.ok(&["restore", a, "--yes", "--pre-backup", "--dir", dir]);
    assert_eq!(stack.sql(ROWS_SUM), original);
    stack.ok(&["migrate", "verify"]);
    let pre: Vec<_> = fs::read_dir(&backups)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with("-pre-restore.dump")
        })
        .collect();
    assert_eq!(pre.len(), 1, "one pre-restore backup");

    // A dump that fails midway (truncated, its manifest made to match): the
    // listing still reads, pg_restore fails, the live data stays.
    let truncated = copy_backup(&archive, &stack.dir.join("truncated"));
    let bytes = fs::read(&truncated).unwrap();
    let keep = &bytes[..bytes.len() * 6 / 10];
    fs::write(&truncated, keep).unwrap();
    let digest: String = sha2::Sha256::digest(keep)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut m = manifest(&truncated);
    m["size"] = serde_json::json!(keep.len());
    m["sha256"] = serde_json::json!(digest);
    write_manifest(&truncated, &m);
    let name = truncated
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    fs::write(
        truncated.with_file_name(format!("{name}.sha256")),
        format!("{digest}  {name}\n"),
    )
    .unwrap();
    stack.sql("UPDATE items SET label = 'after' WHERE id = 2");
    let before = stack.sql(ROWS_SUM);
    let out = stack.xtask(&[
        "restore",
        truncated.to_str().unwrap(),
        "--yes",
        "--dir",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("database fog was not replaced and accepts connections"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stack.sql(ROWS_SUM), before);
    assert_eq!(
        stack.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'fog_restore_%'"),
        "0"
    );

    // A volume: modes, owners and symlinks kept; a crafted `../` entry refused.
    let volume = format!("{}_grafana_data", stack.project);
    in_volume(&volume, "mkdir -p /v/d && echo hi > /v/d/f && chmod 640 /v/d/f && chown 472:0 /v/d/f && ln -s d/f /v/link");
    let tarball = backup_volume(&stack, "grafana_data", dir, &[]);
    stack.ok(&["backup", "verify", &tarball]);
    let listing = std::process::Command::new("tar")
        .args(["-tzvf", &tarball, "--numeric-owner"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rw-r----- 472/0") && l.ends_with("./d/f")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with('l') && l.ends_with("./link -> d/f")),
        "{listing}"
    );
    let evil = crafted_escape(&stack.dir, Path::new(&tarball));
    let out = stack.xtask(&["backup", "verify", evil.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("entry `../escaped` points outside the volume"),
        "{}",
        stderr(&out)
    );

    // `backup all`: the database and the volumes (not Postgres' own data
    // directory) as one set; a damaged member fails the set.
    let setdir = stack.dir.join("set");
    let out: serde_json::Value = serde_json::from_str(&stack.ok(&[
        "backup",
        "all",
        "--dir",
        setdir.to_str().unwrap(),
        "--format",
        "json",
    ]))
    .unwrap();
    let set_path = out["path"].as_str().unwrap().to_string();
    let set: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&set_path).unwrap()).unwrap();
    let kinds: Vec<&str> = set["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["postgres", "volume"], "{set}");
    assert!(!set.to_string().contains("postgres_data"));
    stack.ok(&["backup", "verify", &set_path]);
    let member = setdir.join(set["members"][1]["file"].as_str().unwrap());
    let mut bytes = fs::read(&member).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&member, bytes).unwrap();
    assert!(!stack
        .xtask(&["backup", "verify", &set_path])
        .status
        .success());

    // --stop: the services using the volume are stopped for the copy and
    // started again.
    let out = stack.ok(&[
        "backup",
        "volume",
        "postgres_data",
        "--stop",
        "--dir",
        setdir.to_str().unwrap(),
    ]);
    assert!(out.contains("entries"), "{out}");
    stack.up(&["postgres"]);
    assert_eq!(stack.sql("SELECT count(*) FROM items"), "100000");
}

/// Every entry of a volume with its type, size, mode, owner and link target.
fn listing(volume: &str) -> String {
    data_support::stat_listing(volume, data_support::STAT)
}

fn volumes_like(pattern: &str) -> Vec<String> {
    common::docker(&["volume", "ls", "-q", "--filter", &format!("name={pattern}")])
        .lines()
        .map(str::to_string)
        .collect()
}

/// `restore` of volume archives: a round trip keeps modes, owners and
/// symlinks and drops what was added since; the services using the volume
/// (here Postgres on its own data directory) are stopped for the swap and
/// started again; the previous data stays in a `_before_restore_` volume;
/// a damaged or crafted archive, or no terminal without `--yes`, changes
/// nothing.
#[test]
fn volume_restore_round_trip_and_refusals() {
    let Some(stack) = DataStack::new("volrestore", 2, &["compose/base.yml"]) else {
        return;
    };
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
    let dir = backups.to_str().unwrap();
    // The helpers' anonymous volumes (Postgres' image declares a VOLUME) go with them.
    let dangling = || -> std::collections::BTreeSet<String> {
        common::docker(&["volume", "ls", "-q", "--filter", "dangling=true"])
            .lines()
            .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_string)
            .collect()
    };
    let dangling_before = dangling();
    // Only this test's helpers count: the CI lanes run other tests at the same time.
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1;

    // A volume nothing runs on: modes, owners, symlinks, an empty folder.
    let grafana = format!("{}_grafana_data", stack.project);
    in_volume(&grafana, "mkdir -p /v/d/empty && echo hi > /v/d/f && chmod 640 /v/d/f && chown 472:0 /v/d/f && ln -s d/f /v/link && echo top > /v/top && chown 1234:5678 /v/top");
    let original = listing(&grafana);
    assert!(
        original.contains("./d/f regular file 3 1 640 472 0 "),
        "{original}"
    );
    let tarball = backup_volume(&stack, "grafana_data", dir, &[]);
    // Changed since the backup: one file gone, one added, one rewritten.
    in_volume(
        &grafana,
        "rm /v/d/f && echo later > /v/added && echo changed > /v/top",
    );
    let changed = listing(&grafana);
    assert_ne!(changed, original);

    // No terminal and no --yes: exit 2, nothing touched.
    let out = stack.xtask(&["restore", &tarball, "--dir", dir]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(listing(&grafana), changed);

    // One flipped byte: refused before anything is touched.
    let damaged = copy_backup(Path::new(&tarball), &stack.dir.join("damaged"));
    let mut bytes = fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&damaged, bytes).unwrap();
    let out = stack.xtask(&["restore", damaged.to_str().unwrap(), "--yes", "--dir", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("nothing was touched"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&grafana), changed);

    // The round trip: exactly the backed-up entries, the changed data aside.
    let out = stack.ok(&["restore", &tarball, "--yes", "--dir", dir]);
    assert!(out.contains("previous data kept as volume"), "{out}");
    assert_eq!(listing(&grafana), original);
    let aside = volumes_like(&format!("{grafana}_before_restore_"));
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(listing(&aside[0]), changed);
    assert!(volumes_like(&format!("{grafana}_restore_")).is_empty());
    let pre: Vec<String> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("-volume-grafana_data-") && n.ends_with(".tar.gz"))
        .collect();
    assert_eq!(
        pre.len(),
        2,
        "the backup and the pre-restore backup: {pre:?}"
    );

    // Postgres' own data directory, taken with --stop: the restore stops
    // Postgres for the swap and starts it again, with the old rows back.
    stack.sql("CREATE TABLE kept AS SELECT g AS id FROM generate_series(1, 1000) g");
    let pgdata = backup_volume(&stack, "postgres_data", dir, &["--stop"]);
    stack.up(&["postgres"]);
    stack.sql("INSERT INTO kept SELECT g FROM generate_series(1001, 1500) g");
    assert_eq!(stack.sql("SELECT count(*) FROM kept"), "1500");
    let out = stack.xtask(&["restore", &pgdata, "--yes", "--dir", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("started postgres again"),
        "{}",
        stderr(&out)
    );
    stack.wait_ready();
    assert_eq!(stack.sql("SELECT count(*) FROM kept"), "1000");

    // A crafted `../` entry: refused, the volume untouched.
    let evil = crafted_escape(&stack.dir, Path::new(&tarball));
    let out = stack.xtask(&["restore", evil.to_str().unwrap(), "--yes", "--dir", dir]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("entry `../escaped` points outside the volume"),
        "{}",
        stderr(&out)
    );
    assert_eq!(listing(&grafana), original);
    let new_dangling: std::collections::BTreeSet<String> =
        dangling().difference(&dangling_before).cloned().collect();
    let leaked = leaked_by(&stack.project, since, &new_dangling);
    assert!(
        leaked.is_empty(),
        "helpers left anonymous volumes: {leaked:?}"
    );
}

/// Of `candidates` (anonymous volumes that became dangling), those mounted
/// since `since` (unix seconds) by a container that also mounted one of
/// `project`'s volumes: this test's helpers, never another test's.
fn leaked_by(
    project: &str,
    since: u64,
    candidates: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 1;
    let events = common::docker(&[
        "events",
        "--since",
        &since.to_string(),
        "--until",
        &until.to_string(),
        "--filter",
        "type=volume",
        "--filter",
        "event=mount",
        "--format",
        "{{.Actor.ID}} {{index .Actor.Attributes \"container\"}}",
    ]);
    let mounts: Vec<(&str, &str)> = events.lines().filter_map(|l| l.split_once(' ')).collect();
    let prefix = format!("{project}_");
    let ours: std::collections::BTreeSet<&str> = mounts
        .iter()
        .filter(|(volume, _)| volume.starts_with(&prefix))
        .map(|(_, container)| *container)
        .collect();
    assert!(
        !ours.is_empty(),
        "no container mounted a volume of {project}: the events query finds nothing"
    );
    candidates
        .iter()
        .filter(|v| {
            mounts
                .iter()
                .any(|(volume, c)| volume == v && ours.contains(c))
        })
        .cloned()
        .collect()
}
