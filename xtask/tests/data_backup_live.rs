//! E2E on the real engine (projects `fogdata-<test>-<pid>`, DataStack slots
//! 6-8): backups of data as it is found in production. A dump taken while a
//! writer inserts rows matches its manifest, so the drill and `restore`
//! pass; `verify` alone catches bytes changed inside a dump and resealed; a
//! full disk names the folder. `prune` treats each project and kind on its
//! own and keeps sets whole. A volume with absolute and relative symlinks,
//! hard links, a 1 GiB sparse file, a FIFO and odd names comes back exactly
//! (`stat` compared, the sparse file still sparse); so does an empty volume.

mod common;
mod data_support;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use data_support::{in_volume, stat_listing, DataStack, STAT_BLOCKS};
use sha2::Digest;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn manifest(archive: &Path) -> serde_json::Value {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    json(&fs::read_to_string(archive.with_file_name(format!("{name}.manifest.json"))).unwrap())
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `backup postgres --dir DIR --format json`: the archive's path.
fn backup_postgres(stack: &DataStack, dir: &Path) -> PathBuf {
    let out = stack.ok(&[
        "backup",
        "postgres",
        "--dir",
        dir.to_str().unwrap(),
        "--format",
        "json",
    ]);
    PathBuf::from(json(&out)["path"].as_str().unwrap())
}

/// A tmpfs mounted for the test, unmounted on drop (also on failure).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Rows inserted in a loop (50 per commit) until the `stop_writer` table has
/// a row or a minute passes; the session runs in the Postgres container.
const WRITER: &str = "CREATE TABLE events (id bigserial PRIMARY KEY, payload text NOT NULL);
CREATE TABLE stop_writer (at timestamptz);
CREATE PROCEDURE writer() LANGUAGE plpgsql AS $$
DECLARE until timestamptz := clock_timestamp() + interval '60 seconds';
BEGIN
  LOOP
    EXIT WHEN EXISTS (SELECT 1 FROM stop_writer) OR clock_timestamp() > until;
    INSERT INTO events (payload) SELECT md5(random()::text) FROM generate_series(1, 50);
    COMMIT;
    PERFORM pg_sleep(0.002);
  END LOOP;
END $$;";

/// Item 1 and item 8 of issue 19: consistent manifests under writes, a
/// full read in plain `verify`, and a full disk named as such.
#[test]
fn a_backup_under_writes_passes_its_drill_and_restore_and_verify_reads_every_byte() {
    let Some(stack) = DataStack::new("bklive", 6, &["compose/base.yml"]) else {
        return;
    };
    stack.up(&["postgres"]);
    let dir = stack.dir.join("backups");
    stack.sql("CREATE TABLE bulk AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS label FROM generate_series(1, 120000) g");
    stack.sql(WRITER);
    let mut writer = stack
        .command(&["psql", "--", "-X", "-q", "-c", "CALL writer()"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stack.sql("SELECT count(*) FROM events") == "0" {
        assert!(Instant::now() < deadline, "the writer never wrote");
        std::thread::sleep(Duration::from_millis(100));
    }
    let dump = backup_postgres(&stack, &dir);
    let counted = manifest(&dump)["tables"]["public.events"].as_i64().unwrap();
    stack.sql("INSERT INTO stop_writer VALUES (now())");
    let finished = writer.wait().unwrap();
    assert!(finished.success(), "the writer failed");
    let written: i64 = stack.sql("SELECT count(*) FROM events").parse().unwrap();
    assert!(
        written > counted && counted > 0,
        "rows were written while the backup ran ({counted} counted, {written} in the end)"
    );

    // The drill and the restore agree with the manifest.
    let d = dump.to_str().unwrap();
    let out = stack.xtask(&[
        "backup",
        "verify",
        d,
        "--restore",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = stack.xtask(&["restore", d, "--yes", "--dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stack.sql("SELECT count(*) FROM events"),
        counted.to_string()
    );

    // Bytes changed in the middle of the dump and resealed (new checksum in
    // the .sha256 and the manifest): plain verify reads them and refuses.
    let resealed_dir = stack.dir.join("resealed");
    fs::create_dir_all(&resealed_dir).unwrap();
    let name = dump.file_name().unwrap().to_string_lossy().into_owned();
    let resealed = resealed_dir.join(&name);
    let mut bytes = fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0xa5;
    }
    fs::write(&resealed, &bytes).unwrap();
    let digest = sha256_hex(&bytes);
    let mut m = manifest(&dump);
    m["sha256"] = serde_json::json!(digest);
    fs::write(
        resealed_dir.join(format!("{name}.manifest.json")),
        m.to_string(),
    )
    .unwrap();
    fs::write(
        resealed_dir.join(format!("{name}.sha256")),
        format!("{digest}  {name}\n"),
    )
    .unwrap();
    let out = stack.xtask(&["backup", "verify", resealed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("does not read in full"),
        "{}",
        stderr(&out)
    );

    // A full disk: the folder is named with "no space left on device", no
    // SIGPIPE, and nothing that looks like a backup is left.
    let full = stack.dir.join("full");
    match Tmpfs::mount(&full, "2m") {
        Some(_mounted) => {
            let out = stack.xtask(&["backup", "postgres", "--dir", full.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("no space left on device in {}", full.display())),
                "{err}"
            );
            assert!(!err.contains("SIGPIPE"), "{err}");
            let left: Vec<_> = fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
        None => {
            assert!(
                !common::in_ci(),
                "CI runs as root: mounting a tmpfs must work"
            );
            eprintln!("skipped the full-disk check: mounting a tmpfs needs root");
        }
    }
}

/// Rename a backup's three files as another project's, as that project's
/// tool would have written them.
fn as_other_project(archive: &Path, project: &str, other: &str, to: &Path) -> PathBuf {
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    let renamed = name.replacen(project, other, 1);
    let bytes = fs::read(archive).unwrap();
    fs::write(to.join(&renamed), &bytes).unwrap();
    let mut m = manifest(archive);
    m["project"] = serde_json::json!(other);
    m["file"] = serde_json::json!(renamed);
    fs::write(to.join(format!("{renamed}.manifest.json")), m.to_string()).unwrap();
    fs::write(
        to.join(format!("{renamed}.sha256")),
        format!("{}  {renamed}\n", m["sha256"].as_str().unwrap()),
    )
    .unwrap();
    to.join(renamed)
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".dump") || n.ends_with(".tar.gz") || n.ends_with(".set.json"))
        .collect();
    n.sort();
    n
}

/// Item 3 of issue 19: retention by project and kind, sets kept whole.
#[test]
fn prune_acts_on_one_project_and_kind_and_keeps_sets_whole() {
    let Some(stack) = DataStack::new("bkprune", 7, &["compose/base.yml"]) else {
        return;
    };
    stack.up(&["postgres"]);
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();
    stack.sql("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 100) g");
    let grafana = format!("{}_grafana_data", stack.project);
    common::docker(&["volume", "create", &grafana]);

    // The reported break: a database and then a volume backup; `--keep 1`
    // kept the volume and deleted the only database backup.
    let db1 = backup_postgres(&stack, &dir);
    // Another project's backup in the same folder, and a stray file.
    let other = as_other_project(&db1, &stack.project, "fogother", &dir);
    fs::write(
        dir.join(format!("{}-postgres-notes.dump", stack.project)),
        "x",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // distinct stamps
    let out = stack.ok(&[
        "backup",
        "volume",
        "grafana_data",
        "--dir",
        d,
        "--format",
        "json",
    ]);
    let v1 = PathBuf::from(json(&out)["path"].as_str().unwrap());
    stack.ok(&["backup", "prune", "--keep", "1", "--dir", d]);
    assert!(db1.exists() && v1.exists(), "{:?}", names(&dir));
    assert!(other.exists());

    // A set, then a newer database backup: keeping the last one of each
    // kind keeps the set with its (older) members.
    std::thread::sleep(Duration::from_millis(1100));
    let set = PathBuf::from(
        json(&stack.ok(&["backup", "all", "--dir", d, "--format", "json"]))["path"]
            .as_str()
            .unwrap(),
    );
    let members: Vec<String> = json(&fs::read_to_string(&set).unwrap())["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(members.len(), 2, "{members:?}");
    std::thread::sleep(Duration::from_millis(1100));
    let db3 = backup_postgres(&stack, &dir);
    let before = names(&dir);

    // --dry-run: what would go, why the rest stays; nothing removed.
    let plan = stack.ok(&[
        "--dry-run",
        "backup",
        "prune",
        "--keep-last",
        "1",
        "--dir",
        d,
    ]);
    let db1_name = db1.file_name().unwrap().to_string_lossy().into_owned();
    let v1_name = v1.file_name().unwrap().to_string_lossy().into_owned();
    assert!(plan.contains(&format!("would remove {db1_name}")), "{plan}");
    assert!(plan.contains(&format!("would remove {v1_name}")), "{plan}");
    let set_name = set.file_name().unwrap().to_string_lossy().into_owned();
    for m in &members {
        let line = plan
            .lines()
            .find(|l| l.starts_with(&format!("keep   {m} (")))
            .unwrap_or_else(|| panic!("{m}: {plan}"));
        assert!(
            line.contains(&format!("member of kept set {set_name}")),
            "{plan}"
        );
    }
    assert!(!plan.contains("fogother"), "{plan}");
    assert_eq!(names(&dir), before);

    stack.ok(&["backup", "prune", "--keep-last", "1", "--dir", d]);
    assert!(!db1.exists() && !v1.exists(), "{:?}", names(&dir));
    assert!(db3.exists() && set.exists() && other.exists());
    assert!(dir
        .join(format!("{}-postgres-notes.dump", stack.project))
        .exists());
    stack.ok(&["backup", "verify", set.to_str().unwrap()]);

    // Daily: the set and the newest database backup are from today, so one
    // per day keeps db3 and the set keeps its own members.
    stack.ok(&["backup", "prune", "--keep-daily", "1", "--dir", d]);
    assert!(db3.exists() && set.exists());
    stack.ok(&["backup", "verify", set.to_str().unwrap()]);
    // No policy: a usage error.
    let out = stack.xtask(&["backup", "prune", "--dir", d]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// Item 4 of issue 19: a volume comes back as it was.
#[test]
fn a_volume_with_links_holes_fifos_and_odd_names_round_trips_exactly() {
    let Some(stack) = DataStack::new("bkvol", 8, &["compose/base.yml"]) else {
        return;
    };
    stack.up(&["postgres"]);
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();
    let grafana = format!("{}_grafana_data", stack.project);
    in_volume(
        &grafana,
        "set -e; cd /v; mkdir -p d 'with space' \"$(printf 'new\\nline')\"
         echo data > d/f; chown 472:0 d/f; chmod 640 d/f
         ln -s /etc/passwd abs; ln -s d/f rel; ln -s ../../outside up; ln -s missing dangling
         ln d/f hard; mkfifo fifo
         truncate -s 1G sparse; dd if=/dev/urandom of=sparse bs=4k count=6 seek=1000 conv=notrunc 2>/dev/null
         echo u > 'ü ñ 名.txt'; echo n > \"$(printf 'new\\nline')/inner file\"
         head -c 3000001 /dev/urandom > 'big, through the pipe in short reads'",
    );
    let original = stat_listing(&grafana, STAT_BLOCKS);
    assert!(original.contains("symbolic link"), "{original}");
    let blocks = |listing: &str| -> u64 {
        let line = listing
            .lines()
            .find(|l| l.starts_with("./sparse "))
            .unwrap_or_else(|| panic!("{listing}"));
        line.split(' ').nth(4).unwrap().parse().unwrap()
    };
    assert!(blocks(&original) <= 64, "{original}");

    let out = stack.ok(&[
        "backup",
        "volume",
        "grafana_data",
        "--dir",
        d,
        "--format",
        "json",
    ]);
    let archive = json(&out)["path"].as_str().unwrap().to_string();
    // The 3 MB random file and little else: 1 GiB of holes gzipped would add over 1 MB.
    let size = fs::metadata(&archive).unwrap().len();
    assert!(
        size < 3_000_001 + (1 << 19),
        "the holes are stored: {size} bytes"
    );
    stack.ok(&["backup", "verify", &archive]);
    in_volume(
        &grafana,
        "rm -rf /v/d /v/sparse /v/abs && echo later > /v/added",
    );
    assert_ne!(stat_listing(&grafana, STAT_BLOCKS), original);
    let out = stack.xtask(&["restore", &archive, "--yes", "--dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restored = stat_listing(&grafana, STAT_BLOCKS);
    assert_eq!(restored, original);
    assert!(blocks(&restored) <= 64, "{restored}");

    // An empty volume round-trips too: GNU tar stores its root, one entry.
    let (manifest, _) = data_support::empty_volume_round_trip(&stack, "prometheus_data", d);
    assert_eq!(manifest["entries"], 1, "{manifest}");

    // A full disk during a volume backup (its 3 MB random file does not fit
    // 2 MiB) is named as such, not as the tar check's cut-short stream.
    let full = stack.dir.join("full-volume");
    match Tmpfs::mount(&full, "2m") {
        Some(_mounted) => {
            let out = stack.xtask(&[
                "backup",
                "volume",
                "grafana_data",
                "--dir",
                full.to_str().unwrap(),
            ]);
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("no space left on device in {}", full.display())),
                "{err}"
            );
            assert!(
                !err.contains("truncated") && !err.contains("damaged"),
                "{err}"
            );
            let left: Vec<_> = fs::read_dir(&full)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            assert!(left.is_empty(), "{left:?}");
        }
        None => assert!(
            !common::in_ci(),
            "CI runs as root: mounting a tmpfs must work"
        ),
    }

    // Postgres' live data volume without --stop: a warning names `backup postgres`.
    let out = stack.xtask(&["backup", "volume", "postgres_data", "--dir", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`cargo xtask backup postgres`"),
        "{}",
        stderr(&out)
    );
}
