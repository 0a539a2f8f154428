//! E2E of issue 19's off-host copies beyond `--keep N`, against a real
//! SeaweedFS S3 server (`weed server -s3` on 127.0.0.1, DataStack slot 10's
//! ports + 10..17, an identity so credentials are checked) and the real
//! engine and Postgres (project `fogdata-s3policy-<pid>`, slot 10). An
//! encrypted volume backup (`backup volume --encrypt-to age1... --to
//! s3://`) holds only ciphertext; restored from the bucket with the key, a
//! sparse file stays sparse and the links stay links (`stat` compared); a
//! wrong key and no key are refused before anything is touched (no helper,
//! no scratch volume, the volume as it was). `backup prune --from s3://`
//! takes the folder's policy: `--keep-daily/weekly/monthly` per kind, the
//! newest drill-passed backup and a kept set's members stay, another
//! project's backups and stray objects are never touched, `--dry-run`
//! deletes nothing. Older backups are real archives re-labelled with past
//! times (a clock cannot be waited for).

mod common;
mod data_support;
mod s3_support;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
};

use age::secrecy::ExposeSecret;
use data_support::{in_volume, stat_listing, DataStack, STAT_BLOCKS};

const BUCKET: &str = "fogpolicy";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The engine's volumes and containers (any state) of the project.
fn engine_state(project: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let volumes = common::docker_lines(&["volume", "ls", "-q"])
        .into_iter()
        .filter(|v| v.contains(project))
        .collect();
    let containers = common::docker_lines(&["ps", "-a", "--format", "{{.Names}}"])
        .into_iter()
        .filter(|c| {
            c.contains(project)
                || c.starts_with("fogrestore-")
                || c.starts_with("fogvol-")
                || c.starts_with("fogdrill-")
        })
        .collect();
    (volumes, containers)
}

fn names(stack: &DataStack, url: &str, endpoint: &str) -> Vec<String> {
    let out = stack.ok(&[
        "backup",
        "list",
        "--from",
        url,
        "--endpoint",
        endpoint,
        "--format",
        "json",
    ]);
    json(&out)["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// A copy of the real backup `archive` as `project`'s, taken at `at`
/// (`2020-11-28T10:00:00Z`), uploaded under `prefix` with its `.sha256`,
/// manifest and (if `drilled`) a passed drill. Returns its file name.
fn plant(
    server: &s3_support::Weed,
    prefix: &str,
    archive: &Path,
    project: &str,
    at: &str,
    drilled: bool,
) -> String {
    let manifest_path = PathBuf::from(format!("{}.manifest.json", archive.display()));
    let mut m = json(&fs::read_to_string(&manifest_path).unwrap());
    let name = format!("{project}-postgres-{}.dump", at.replace(['-', ':'], ""));
    m["project"] = serde_json::json!(project);
    m["file"] = serde_json::json!(name);
    m["created_at"] = serde_json::json!(at);
    let key = |suffix: &str| format!("{prefix}/{name}{suffix}");
    server.overwrite(BUCKET, &key(""), &fs::read(archive).unwrap());
    server.overwrite(
        BUCKET,
        &key(".sha256"),
        format!("{}  {name}\n", m["sha256"].as_str().unwrap()).as_bytes(),
    );
    if drilled {
        server.overwrite(
            BUCKET,
            &key(".drill.json"),
            br#"{"passed": true, "restore_seconds": 1.0}"#,
        );
    }
    server.overwrite(BUCKET, &key(".manifest.json"), m.to_string().as_bytes());
    name
}

#[test]
fn s3_prune_by_policy_and_an_encrypted_volume_round_trip() {
    let Some(weed) =
        s3_support::weed_or_skip("s3_prune_by_policy_and_an_encrypted_volume_round_trip")
    else {
        return;
    };
    let Some(stack) = DataStack::new("s3policy", 10, &["compose/base.yml"]) else {
        return;
    };
    // The only test in this binary: the xtask children inherit these.
    std::env::set_var("AWS_ACCESS_KEY_ID", s3_support::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", s3_support::SECRET_KEY);
    std::env::remove_var("FOG_S3_ENDPOINT");
    std::env::set_var("FOG_BACKUP_METRICS_DIR", stack.dir.join("metrics"));
    let server = s3_support::Weed::start(
        &weed,
        "fogdata-s3policy",
        data_support::slot_port(10) + 10,
        BUCKET,
    );
    let endpoint = server.endpoint.as_str();
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
    let dir = backups.to_str().unwrap();

    // --- An encrypted volume backup off the host and back. ---
    let grafana = format!("{}_grafana_data", stack.project);
    in_volume(
        &grafana,
        "set -e; cd /v; mkdir d; echo data > d/f; chown 472:0 d/f; chmod 640 d/f
         ln -s /etc/passwd abs; ln -s d/f rel; ln d/f hard
         truncate -s 1G sparse; dd if=/dev/urandom of=sparse bs=4k count=6 seek=1000 conv=notrunc 2>/dev/null
         echo PLAINTEXT-VOLUME-MARKER-51c2 > marker",
    );
    let original = stat_listing(&grafana, STAT_BLOCKS);
    let blocks = |listing: &str| -> u64 {
        let line = listing
            .lines()
            .find(|l| l.starts_with("./sparse "))
            .unwrap_or_else(|| panic!("{listing}"));
        line.split(' ').nth(4).unwrap().parse().unwrap()
    };
    assert!(blocks(&original) <= 64, "{original}");
    let key = age::x25519::Identity::generate();
    let key_file = stack.dir.join("age-key.txt");
    fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let other_file = stack.dir.join("other-key.txt");
    let other = age::x25519::Identity::generate();
    fs::write(
        &other_file,
        format!("{}\n", other.to_string().expose_secret()),
    )
    .unwrap();
    let recipient = key.to_public().to_string();
    let vol_url = format!("s3://{BUCKET}/prod/vol");
    let out = stack.ok(&[
        "backup",
        "volume",
        "grafana_data",
        "--dir",
        dir,
        "--format",
        "json",
        "--encrypt-to",
        &recipient,
        "--to",
        &vol_url,
        "--endpoint",
        endpoint,
    ]);
    let written = json(&out);
    let sealed = PathBuf::from(written["path"].as_str().unwrap());
    // Counted as it streamed, though only the key opens the archive: the
    // restore checks the volume it makes against this.
    assert_eq!(
        written["manifest"]["entries"].as_u64(),
        Some(original.lines().count() as u64 + 1),
        "{out}\n{original}"
    );
    let sealed_name = sealed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(sealed_name.ends_with(".tar.gz.age"), "{sealed_name}");
    let bytes = fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes
        .windows(26)
        .any(|w| w == b"PLAINTEXT-VOLUME-MARKER-51c2"));
    // The holes are not stored: 24 KiB of random data, a few small files.
    assert!(bytes.len() < 1 << 19, "{} bytes: holes stored", bytes.len());
    // Only the bucket's copy is left to restore from.
    for f in fs::read_dir(&backups).unwrap() {
        let f = f.unwrap().path();
        if f.to_string_lossy().contains(&sealed_name) {
            fs::remove_file(f).unwrap();
        }
    }
    in_volume(
        &grafana,
        "rm -rf /v/d /v/sparse /v/abs /v/hard && echo later > /v/added",
    );
    let changed = stat_listing(&grafana, STAT_BLOCKS);
    assert_ne!(changed, original);
    let engine_before = engine_state(&stack.project);
    let remote = format!("{vol_url}/{sealed_name}");
    // No key: a usage error in one line; a wrong key: refused. Nothing touched.
    let out = stack.xtask(&[
        "restore",
        &remote,
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(
        common::stderr(&out).contains("--identity"),
        "{}",
        common::text(&out)
    );
    let out = stack.xtask(&[
        "restore",
        &remote,
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
        "--identity",
        other_file.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", common::text(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("does not open it") && err.contains("nothing was touched"),
        "{err}"
    );
    assert_eq!(stat_listing(&grafana, STAT_BLOCKS), changed);
    assert_eq!(engine_state(&stack.project), engine_before);
    let leftovers: Vec<String> = fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".s3-download") || n.starts_with(".restore-journal"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // With the key: the volume as it was, holes and links included.
    stack.ok(&[
        "restore",
        &remote,
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
        "--identity",
        key_file.to_str().unwrap(),
    ]);
    let restored = stat_listing(&grafana, STAT_BLOCKS);
    assert_eq!(restored, original);
    assert!(blocks(&restored) <= 64, "{restored}");
    assert!(
        restored.contains("./abs symbolic link") && restored.contains("'./abs' -> '/etc/passwd'"),
        "{restored}"
    );

    // --- Retention in the bucket, as in a folder. ---
    let url = format!("s3://{BUCKET}/prod/policy");
    let prefix = "prod/policy";
    stack.sql("CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g");
    let real = |args: &[&str]| -> PathBuf {
        let mut all = args.to_vec();
        all.extend([
            "--dir",
            dir,
            "--format",
            "json",
            "--to",
            &url,
            "--endpoint",
            endpoint,
        ]);
        PathBuf::from(json(&stack.ok(&all))["path"].as_str().unwrap())
    };
    let r1 = real(&["backup", "postgres"]);
    std::thread::sleep(std::time::Duration::from_millis(1100)); // distinct stamps
    let set = real(&["backup", "all"]);
    let set_name = set.file_name().unwrap().to_string_lossy().into_owned();
    let set_members: Vec<String> = json(&fs::read_to_string(&set).unwrap())["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap().to_string())
        .collect();
    assert!(set_members.len() >= 2, "{set_members:?}");
    let p = stack.project.as_str();
    let a = plant(&server, prefix, &r1, p, "2020-11-28T10:00:00Z", false);
    let b = plant(&server, prefix, &r1, p, "2020-11-28T08:00:00Z", false);
    let c = plant(&server, prefix, &r1, p, "2020-11-20T10:00:00Z", false);
    let d = plant(&server, prefix, &r1, p, "2020-10-15T10:00:00Z", false);
    let e = plant(&server, prefix, &r1, p, "2020-10-02T10:00:00Z", false);
    let f = plant(&server, prefix, &r1, p, "2020-09-10T10:00:00Z", true);
    let g = plant(&server, prefix, &r1, p, "2020-08-01T10:00:00Z", false);
    // An older set whose only member is b.
    let old_set = format!("{p}-all-20201128T080030Z.set.json");
    let mut set_json = json(&fs::read_to_string(&set).unwrap());
    set_json["created_at"] = serde_json::json!("2020-11-28T08:00:30Z");
    set_json["members"] =
        serde_json::json!([{"file": b, "kind": "postgres", "size": 1, "sha256": "x"}]);
    server.overwrite(
        BUCKET,
        &format!("{prefix}/{old_set}"),
        set_json.to_string().as_bytes(),
    );
    // Another project's old backups and a stray object are never touched.
    let other1 = plant(
        &server,
        prefix,
        &r1,
        "fogother",
        "2020-07-01T10:00:00Z",
        false,
    );
    let other2 = plant(
        &server,
        prefix,
        &r1,
        "fogother",
        "2020-06-01T10:00:00Z",
        false,
    );
    server.overwrite(BUCKET, &format!("{prefix}/{p}-postgres-notes.dump"), b"x");
    server.overwrite(BUCKET, &format!("{prefix}/README.txt"), b"not ours");
    let before = names(&stack, &url, endpoint);
    let r1_name = r1.file_name().unwrap().to_string_lossy().into_owned();
    for n in [
        &r1_name, &a, &b, &c, &d, &e, &f, &g, &old_set, &other1, &other2,
    ] {
        assert!(before.contains(n), "{n}: {before:?}");
    }

    let policy = [
        "--keep-daily",
        "1",
        "--keep-weekly",
        "2",
        "--keep-monthly",
        "3",
    ];
    let mut args = vec![
        "--dry-run",
        "backup",
        "prune",
        "--from",
        &url,
        "--endpoint",
        endpoint,
    ];
    args.extend(policy);
    let plan = stack.ok(&args);
    let gone = [&r1_name, &c, &e, &g];
    for n in gone {
        assert!(plan.contains(&format!("would remove {n} (")), "{n}: {plan}");
        assert!(
            plan.contains(&format!("# delete {url}/{n}.manifest.json\n")),
            "{plan}"
        );
    }
    let kept = |name: &str, why: &str| {
        let line = plan
            .lines()
            .find(|l| l.starts_with(&format!("keep   {name} (")))
            .unwrap_or_else(|| panic!("{name}: {plan}"));
        assert!(line.contains(why), "{name} kept for `{why}`: {line}");
    };
    kept(&a, "weekly 2020-W48");
    kept(&a, "monthly 2020-11");
    kept(&d, "monthly 2020-10");
    kept(&f, "newest passed drill");
    kept(&b, &format!("member of kept set {old_set}"));
    kept(&old_set, "weekly 2020-W48");
    kept(&set_name, "newest");
    for m in &set_members {
        kept(m, &format!("member of kept set {set_name}"));
    }
    assert!(!plan.contains("fogother"), "{plan}");
    assert_eq!(names(&stack, &url, endpoint), before);

    let mut args = vec!["backup", "prune", "--from", &url, "--endpoint", endpoint];
    args.extend(policy);
    let pruned = stack.ok(&args);
    for n in gone {
        assert!(pruned.contains(&format!("pruned {url}/{n} (")), "{pruned}");
    }
    let after = names(&stack, &url, endpoint);
    let expected: Vec<&String> = before.iter().filter(|n| !gone.contains(n)).collect();
    assert_eq!(after.iter().collect::<Vec<_>>(), expected);
    // Every object of a pruned backup is gone; the strays stay.
    let objects = server.names(BUCKET, prefix);
    for n in gone {
        assert!(
            !objects.iter().any(|o| o.starts_with(n.as_str())),
            "{n}: {objects:?}"
        );
    }
    for stray in [format!("{p}-postgres-notes.dump"), "README.txt".to_string()] {
        assert!(objects.contains(&stray), "{stray}: {objects:?}");
    }
    // The kept set restores whole: its database member comes back from the bucket.
    let member = set_members.iter().find(|m| m.ends_with(".dump")).unwrap();
    stack.sql("DELETE FROM items");
    stack.ok(&[
        "restore",
        &format!("{url}/{member}"),
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
    ]);
    assert_eq!(stack.sql("SELECT count(*) FROM items"), "1000");
    drop(server);
}
