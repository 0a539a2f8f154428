//! E2E of copies off the host against a real SeaweedFS S3 server (`weed
//! server -s3` on 127.0.0.1, ports 46110-46117, an identity so credentials
//! are checked) and the real engine and Postgres (project
//! `fogdata-offsite-<pid>`, slot 9): `backup postgres --to s3://` uploads and
//! reads back; the node-exporter textfile is written; `backup list --from`
//! lists; `backup prune --from --keep 1` (and its `--dry-run`) removes the
//! older copy only; `restore s3://.../FILE` downloads, verifies and restores
//! the rows; a damaged object in the bucket is refused with nothing touched;
//! wrong credentials and a missing endpoint fail with one clear line; an
//! `--encrypt-to` backup holds only age ciphertext (its `.sha256` covers it),
//! is refused by `verify` and `restore` without `--identity` (exit 2, one
//! line) or with another key, and restores from the bucket with its key.

mod common;
mod data_support;
mod s3_support;

use age::secrecy::ExposeSecret;
use data_support::DataStack;

const ROWS_SUM: &str =
    "SELECT count(*) || ':' || md5(string_agg(id::text || label, ',' ORDER BY id)) FROM items";

fn listing(stack: &DataStack, url: &str, endpoint: &str) -> Vec<serde_json::Value> {
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
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["backups"].as_array().unwrap().clone()
}

#[test]
fn s3_upload_list_prune_restore_and_refusals() {
    let Some(weed) = s3_support::weed_or_skip("s3_upload_list_prune_restore_and_refusals") else {
        return;
    };
    let Some(stack) = DataStack::new("offsite", 9, &["compose/base.yml"]) else {
        return;
    };
    // The only test in this binary: the xtask children inherit these.
    std::env::set_var("AWS_ACCESS_KEY_ID", s3_support::ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", s3_support::SECRET_KEY);
    std::env::remove_var("FOG_S3_ENDPOINT");
    let server = s3_support::Weed::start(
        &weed,
        "fogdata-offsite",
        data_support::slot_port(9) + 10,
        "fogtest",
    );
    let endpoint = server.endpoint.as_str();
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
    // The test's own textfile folder (the default is compose/backup-metrics).
    let metrics_dir = stack.dir.join("metrics");
    std::env::set_var("FOG_BACKUP_METRICS_DIR", &metrics_dir);
    let dir = backups.to_str().unwrap();
    let url = "s3://fogtest/prod/db";

    stack.sql("CREATE TABLE items (id bigint PRIMARY KEY, label text NOT NULL)");
    stack.sql("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
    let upload = |stack: &DataStack| -> String {
        let out = stack.xtask(&[
            "backup",
            "postgres",
            "--dir",
            dir,
            "--format",
            "json",
            "--to",
            url,
            "--endpoint",
            endpoint,
        ]);
        assert!(out.status.success(), "{}", common::text(&out));
        let err = common::stderr(&out);
        for suffix in [".dump", ".dump.sha256", ".dump.manifest.json"] {
            assert!(
                err.contains(&format!("{suffix} (")) && err.contains("read back: sha256"),
                "{err}"
            );
        }
        let v: serde_json::Value = serde_json::from_str(&common::stdout(&out)).unwrap();
        std::path::Path::new(v["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    let first = upload(&stack);

    // The textfile for node-exporter, written atomically into its folder.
    let metrics = std::fs::read_dir(&metrics_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect::<Vec<_>>();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    let text = std::fs::read_to_string(&metrics[0]).unwrap();
    assert!(
        text.contains(&format!(
            "fog_backup_last_success_timestamp_seconds{{project=\"{}\",kind=\"postgres\",target=\"fog\"}}",
            stack.project
        )),
        "{text}"
    );

    stack.sql("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(20001, 25000) g");
    let second_rows = stack.sql(ROWS_SUM);
    let second = upload(&stack);
    assert_ne!(first, second);

    let listed = listing(&stack, url, endpoint);
    let names: Vec<&str> = listed.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, [second.as_str(), first.as_str()]);
    assert_eq!(listed[0]["kind"], "postgres");
    let table = stack.ok(&["backup", "list", "--from", url, "--endpoint", endpoint]);
    assert!(
        table.contains(&first) && table.starts_with("FILE"),
        "{table}"
    );

    // Wrong credentials: refused, one line naming the bucket.
    let mut cmd = stack.command(&["backup", "list", "--from", url, "--endpoint", endpoint]);
    let out = cmd
        .env("AWS_SECRET_ACCESS_KEY", "wrong-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        common::stderr(&out).contains("listing s3://fogtest/prod/db/"),
        "{}",
        common::text(&out)
    );
    // No endpoint: a usage error.
    let out = stack.xtask(&["backup", "list", "--from", url]);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("FOG_S3_ENDPOINT"));

    // Prune: --dry-run deletes nothing; then only the older copy goes.
    let dry = stack.ok(&[
        "--dry-run",
        "backup",
        "prune",
        "--from",
        url,
        "--endpoint",
        endpoint,
        "--keep",
        "1",
    ]);
    assert!(dry.contains(&format!("# delete {url}/{first}\n")), "{dry}");
    assert_eq!(listing(&stack, url, endpoint).len(), 2);
    let pruned = stack.ok(&[
        "backup",
        "prune",
        "--from",
        url,
        "--endpoint",
        endpoint,
        "--keep",
        "1",
    ]);
    assert!(
        pruned.contains(&format!("pruned {url}/{first}")),
        "{pruned}"
    );
    let names: Vec<String> = listing(&stack, url, endpoint)
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, std::slice::from_ref(&second));

    // Restore from the bucket.
    stack.sql("DELETE FROM items WHERE id > 100");
    let remote_file = format!("{url}/{second}");
    stack.ok(&[
        "restore",
        &remote_file,
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
    ]);
    assert_eq!(stack.sql(ROWS_SUM), second_rows);
    let leftovers: Vec<_> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".s3-download"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A download folder left by a killed restore is named by `backup list`.
    let stale = backups.join(".s3-download-999999");
    std::fs::create_dir(&stale).unwrap();
    let listed = stack.ok(&["backup", "list", "--dir", dir]);
    assert!(
        listed.contains("1 unfinished file(s)") && listed.contains(".s3-download-*"),
        "{listed}"
    );
    std::fs::remove_dir(&stale).unwrap();

    // A damaged copy in the bucket: refused before anything is touched.
    stack.sql("DELETE FROM items WHERE id > 10");
    let before = stack.sql(ROWS_SUM);
    server.overwrite("fogtest", &format!("prod/db/{second}"), b"not a dump");
    let out = stack.xtask(&[
        "restore",
        &remote_file,
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = common::stderr(&out);
    assert!(
        err.contains("damaged") && err.contains("nothing was touched"),
        "{err}"
    );
    assert_eq!(stack.sql(ROWS_SUM), before);

    // Encrypted (age) backup, shipped to the bucket: ciphertext only.
    stack.sql("INSERT INTO items VALUES (424242, 'PLAINTEXT-MARKER-7f3a')");
    let encrypted_rows = stack.sql(ROWS_SUM);
    let key = age::x25519::Identity::generate();
    let key_file = stack.dir.join("age-key.txt");
    std::fs::write(&key_file, format!("{}\n", key.to_string().expose_secret())).unwrap();
    let other_file = stack.dir.join("other-key.txt");
    let other = age::x25519::Identity::generate();
    std::fs::write(
        &other_file,
        format!("{}\n", other.to_string().expose_secret()),
    )
    .unwrap();
    let recipient = key.to_public().to_string();
    let out = stack.ok(&[
        "backup",
        "postgres",
        "--dir",
        dir,
        "--format",
        "json",
        "--encrypt-to",
        &recipient,
        "--to",
        url,
        "--endpoint",
        endpoint,
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let sealed = std::path::PathBuf::from(v["path"].as_str().unwrap());
    let sealed_name = sealed.file_name().unwrap().to_string_lossy().into_owned();
    assert!(sealed_name.ends_with(".dump.age"), "{sealed_name}");
    let bytes = std::fs::read(&sealed).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(!bytes.windows(5).any(|w| w == b"PGDMP"));
    assert!(!bytes.windows(21).any(|w| w == b"PLAINTEXT-MARKER-7f3a"));
    // The checksum covers the ciphertext: `sha256sum -c` passes on the file as it is.
    let check = std::process::Command::new("sha256sum")
        .args(["-c", &format!("{sealed_name}.sha256")])
        .current_dir(&backups)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", common::text(&check));
    let key_arg = key_file.to_str().unwrap();
    let sealed_arg = sealed.to_str().unwrap();
    // Without the key: refused, one line naming --identity.
    let out = stack.xtask(&["backup", "verify", sealed_arg]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    let err = common::stderr(&out);
    assert!(
        err.contains("is encrypted (age): pass --identity FILE"),
        "{err}"
    );
    let errors: Vec<&str> = err.lines().filter(|l| !l.starts_with("warning:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    // With it: verified, and its restore drill passes (and is recorded for node-exporter).
    let out = stack.ok(&[
        "backup",
        "verify",
        sealed_arg,
        "--identity",
        key_arg,
        "--restore",
        "--dir",
        dir,
    ]);
    assert!(out.contains("restore drill passed"), "{out}");
    let drill_metrics = metrics_dir.join(format!(
        "fog_backup_{}_drill_fog.prom",
        stack.project.replace('-', "_")
    ));
    assert!(drill_metrics.is_file(), "{drill_metrics:?}");
    stack.sql("DELETE FROM items");
    let out = stack.xtask(&["restore", sealed_arg, "--dir", dir, "--yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", common::text(&out));
    assert!(common::stderr(&out).contains("--identity"));
    let out = stack.xtask(&[
        "restore",
        sealed_arg,
        "--dir",
        dir,
        "--yes",
        "--identity",
        other_file.to_str().unwrap(),
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", common::text(&out));
    assert!(
        common::stderr(&out).contains("does not open it"),
        "{}",
        common::text(&out)
    );
    assert_eq!(stack.sql("SELECT count(*) FROM items"), "0");
    // Round trip from the bucket with the key.
    stack.ok(&[
        "restore",
        &format!("{url}/{sealed_name}"),
        "--endpoint",
        endpoint,
        "--dir",
        dir,
        "--yes",
        "--identity",
        key_arg,
    ]);
    assert_eq!(stack.sql(ROWS_SUM), encrypted_rows);
    drop(server);
}
