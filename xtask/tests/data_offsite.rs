//! E2E of copies off the host against a real SeaweedFS S3 server (`weed
//! server -s3` on 127.0.0.1, ports 46110-46117, an identity so credentials
//! are checked) and the real engine and Postgres (project
//! `fogdata-offsite-<pid>`, slot 9): `backup postgres --to s3://` uploads and
//! reads back; the node-exporter textfile is written; `backup list --from`
//! lists; `backup prune --from --keep 1` (and its `--dry-run`) removes the
//! older copy only; `restore s3://.../FILE` downloads, verifies and restores
//! the rows; a damaged object in the bucket is refused with nothing touched;
//! wrong credentials and a missing endpoint fail with one clear line.

mod common;
mod data_support;
mod s3_support;

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
    std::env::remove_var("FOG_BACKUP_METRICS_DIR");
    let server = s3_support::Weed::start(&weed, "fogdata-offsite", 46110, "fogtest");
    let endpoint = server.endpoint.as_str();
    stack.up(&["postgres"]);
    let backups = stack.dir.join("backups");
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

    // The textfile for node-exporter, written atomically next to the backups.
    let metrics = std::fs::read_dir(backups.join("metrics"))
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
    assert_eq!(names, [second.clone()]);

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
    drop(server);
}
