//! E2E on the real engine (project `fogdata-busybox-<pid>`, DataStack slot 0):
//! the default online image, `postgres:15.8-alpine`, has a busybox userland,
//! and every other test runs the Debian-built offline image (GNU tar, cp,
//! find). Here the offline image gets Debian's static busybox
//! (`busybox-static`, from `scripts/ci-setup.sh`) as its `sh`, `tar`, `cp`,
//! `find` and every other tool busybox provides, as Alpine's image has them,
//! and it is the only image of the environment in the engine (the others are
//! pointed at tags that do not exist), so every helper container of the
//! volume backup, the volume restore and the drill runs busybox. A volume with
//! a sparse file, symlinks, a hard link, modes and owners round-trips through
//! `backup volume` and `restore` with the same names, types, sizes, modes,
//! owners, link targets and bytes (the output names the `docker cp` fallback,
//! which stores the sparse file in full), and so does an empty volume;
//! `backup postgres`, its drill and its
//! `restore` pass, and `archive-wal.sh` archives a WAL segment.

mod common;
mod data_support;

use std::{fs, path::Path};

use data_support::{in_volume, DataStack};

/// The busybox image, removed on drop (after the stack that runs it).
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        common::docker_output(&["rmi", "-f", &self.0]);
    }
}

/// Busybox's applets that the offline image has as programs become links
/// to it, except `setpriv` (the offline entrypoint's drop to `postgres`, what
/// `su-exec` is to Alpine's). Debian's static busybox runs its own applets
/// before PATH in `sh` (Alpine's does not), so the entrypoint runs under bash
/// to reach the image's `setpriv`; every helper's `sh -c` gets busybox's tools.
const DOCKERFILE: &str = r#"FROM {base}
COPY busybox /usr/bin/busybox
RUN ["/usr/bin/busybox", "sh", "-c", "for a in $(/usr/bin/busybox --list); do for d in /usr/bin /usr/sbin; do if [ \"$a\" != busybox ] && [ \"$a\" != setpriv ] && [ -e \"$d/$a\" ]; then /usr/bin/busybox ln -sf /usr/bin/busybox \"$d/$a\"; fi; done; done"]
ENTRYPOINT ["/bin/bash", "/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
"#;

/// The offline Postgres image with a busybox userland, tagged `fogbb-pg:<pid>`.
fn busybox_image(dir: &Path) -> Option<Image> {
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        assert!(
            !common::in_ci(),
            "data_busybox: CI is set but /bin/busybox is missing: run scripts/ci-setup.sh (busybox-static)"
        );
        eprintln!("data_busybox: skipped: no /bin/busybox (apt-get install busybox-static)");
        return None;
    }
    let context = dir.join("busybox-image");
    fs::create_dir_all(&context).unwrap();
    fs::copy(busybox, context.join("busybox")).unwrap();
    fs::write(
        context.join("Dockerfile"),
        DOCKERFILE.replace("{base}", &data_support::postgres_image()),
    )
    .unwrap();
    let image = Image(format!("fogbb-pg:{}", std::process::id()));
    common::docker(&["build", "-q", "-t", &image.0, context.to_str().unwrap()]);
    // What the helpers will meet: busybox tar (no GNU tar), busybox cp.
    let tar = common::docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        &image.0,
        "-c",
        "tar --version; ls -l /bin/cp /usr/bin/find /bin/sh",
    ]);
    assert!(
        tar.contains("busybox") && !tar.contains("GNU"),
        "not a busybox userland: {tar}"
    );
    Some(image)
}

/// Name, type, size, link count, mode, owner and link target of every path,
/// and the sha256 of every regular file; allocated blocks apart.
fn listing(volume: &str) -> (String, String) {
    (
        data_support::stat_listing(volume, data_support::STAT),
        data_support::sha256_listing(volume),
    )
}

/// Allocated 512-byte blocks of `/v/sparse`.
fn sparse_blocks(volume: &str) -> u64 {
    in_volume(volume, "stat -c %b /v/sparse").parse().unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Item 6 of issue 21: the default (Alpine, busybox) userland runs too.
#[test]
fn volume_backup_restore_and_the_drill_work_with_a_busybox_userland() {
    if !common::engine_or_skip("data_busybox") {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let Some(image) = busybox_image(scratch.path()) else {
        return;
    };
    let Some(stack) = DataStack::new("busybox", 0, &["compose/base.yml"]) else {
        return;
    };
    // Postgres runs the busybox image; no other image of the environment
    // is in the engine, so no helper can find GNU tar elsewhere.
    let env = fs::read_to_string(&stack.env_file).unwrap();
    let mut env: String = env
        .lines()
        .filter(|l| !l.starts_with("POSTGRES_IMAGE="))
        .map(|l| format!("{l}\n"))
        .collect();
    env.push_str(&format!(
        "POSTGRES_IMAGE={}\nPOSTGRES_WAL_ARCHIVE=on\n",
        image.0
    ));
    for var in [
        "MIGRATE_IMAGE",
        "PROMETHEUS_IMAGE",
        "GRAFANA_IMAGE",
        "LOKI_IMAGE",
    ] {
        env.push_str(&format!("{var}=fogbb-absent/{}:none\n", var.to_lowercase()));
    }
    fs::write(&stack.env_file, env).unwrap();
    stack.up(&["postgres"]);
    let dir = stack.dir.join("backups");
    let d = dir.to_str().unwrap();

    // A volume with a sparse file, links, modes and owners.
    let grafana = format!("{}_grafana_data", stack.project);
    in_volume(
        &grafana,
        "set -e; cd /v; mkdir -p d private 'with space'
         echo data > d/f; chown 472:0 d/f; chmod 640 d/f
         chown 70:70 private; chmod 700 private; echo s > private/secret; chmod 600 private/secret
         echo x > setuid; chmod 4755 setuid
         ln -s /etc/passwd abs; ln -s d/f rel; ln -s missing dangling; ln d/f hard; mkfifo fifo
         truncate -s 64M sparse; dd if=/dev/urandom of=sparse bs=4k count=6 seek=1000 conv=notrunc 2>/dev/null
         echo u > 'with space/ü ñ.txt'",
    );
    let original = listing(&grafana);
    assert!(original.0.contains("symbolic link"), "{}", original.0);
    assert!(sparse_blocks(&grafana) <= 64);

    let out = stack.xtask(&[
        "backup",
        "volume",
        "grafana_data",
        "--dir",
        d,
        "--format",
        "json",
    ]);
    let err = common::stderr(&out);
    assert!(out.status.success(), "{}", common::text(&out));
    // The busybox path, and it says what it costs.
    assert!(
        err.contains("no image of the environment has GNU tar")
            && err.contains("stores sparse files in full"),
        "{err}"
    );
    let archive = json(&common::stdout(&out))["path"]
        .as_str()
        .unwrap()
        .to_string();
    let name = Path::new(&archive).file_name().unwrap().to_string_lossy();
    let manifest = json(&fs::read_to_string(format!("{archive}.manifest.json")).unwrap());
    assert_eq!(manifest["image"], image.0.as_str(), "{name}");
    stack.ok(&["backup", "verify", &archive]);

    in_volume(
        &grafana,
        "rm -rf /v/d /v/sparse /v/abs /v/private && echo later > /v/added",
    );
    assert_ne!(listing(&grafana), original);
    let out = stack.xtask(&["restore", &archive, "--yes", "--dir", d]);
    assert!(out.status.success(), "{}", common::text(&out));
    let restored = listing(&grafana);
    assert_eq!(restored.0, original.0, "names, types, modes, owners, links");
    assert_eq!(restored.1, original.1, "bytes");
    // `docker cp` wrote the holes out: what the note said.
    let blocks = sparse_blocks(&grafana);
    assert!(blocks >= 64 * 2048, "sparse file blocks: {blocks}");

    // An empty volume round-trips through `docker cp` too: its root, one entry.
    let (manifest, err) = data_support::empty_volume_round_trip(&stack, "prometheus_data", d);
    assert!(
        err.contains("no image of the environment has GNU tar"),
        "{err}"
    );
    assert_eq!(manifest["entries"], 1, "{manifest}");

    // The database: dump, drill in a throwaway busybox Postgres, restore.
    stack.sql("CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 500) g");
    let out = stack.ok(&["backup", "postgres", "--dir", d, "--format", "json"]);
    let dump = json(&out)["path"].as_str().unwrap().to_string();
    let drilled = stack.ok(&["backup", "verify", &dump, "--restore", "--format", "json"]);
    let drill: serde_json::Value = json(&fs::read_to_string(format!("{dump}.drill.json")).unwrap());
    assert_eq!(drill["passed"], true, "{drilled}");
    assert_eq!(drill["image"], image.0.as_str(), "{drilled}");
    stack.sql("DELETE FROM notes WHERE id > 100");
    let out = stack.xtask(&["restore", &dump, "--yes", "--dir", d]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert_eq!(
        stack.sql("SELECT count(*), sum(id) FROM notes"),
        "500|125250"
    );

    // The WAL archive command (`sh archive-wal.sh`: cp, cmp, sync, mv) under busybox.
    let segment = stack.sql("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let archived = stack.sql(&format!(
            "SELECT count(*) FROM pg_stat_archiver WHERE last_archived_wal >= '{segment}' AND failed_count = 0"
        ));
        if archived == "1" {
            break;
        }
        let failed = stack.sql("SELECT failed_count, last_failed_wal FROM pg_stat_archiver");
        assert!(
            std::time::Instant::now() < deadline,
            "segment {segment} not archived in 120 s: {failed}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let wal = format!("{}_postgres_wal_archive", stack.project);
    let listed = in_volume(&wal, "ls /v/wal-archive");
    assert!(listed.contains(&segment), "{listed}");
}
