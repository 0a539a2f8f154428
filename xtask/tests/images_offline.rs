//! E2E: `cargo xtask images offline` against the real engine. Builds (or
//! reuses) the Debian-based offline images, checks the env file update, runs
//! the Postgres image on its own network in 10.232.0.0/16 with a port in
//! 16000-16999 on 127.0.0.1, and connects with psql from the host using
//! POSTGRES_USER/PASSWORD/DB and POSTGRES_PASSWORD_FILE.

mod common;

use std::{os::unix::fs::PermissionsExt, process::Command, sync::OnceLock, time::Duration};

use common::*;

/// The offline image `images offline` set `var` to, checked to be
/// `<repository>:<prefix><rest of a full version>-bookworm` (e.g. `15.14-bookworm`).
fn offline_image(var: &str, repository: &str, prefix: &str) -> String {
    let env = offline_images();
    let image = env
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{var}=")))
        .unwrap_or_else(|| panic!("no {var} in:\n{env}"))
        .to_string();
    let version = image
        .strip_prefix(&format!("{repository}:"))
        .and_then(|tag| tag.strip_suffix("-bookworm"))
        .unwrap_or_else(|| panic!("{var}={image} is not {repository}:<version>-bookworm"));
    assert!(
        version.starts_with(prefix)
            && version.split('.').count() >= 2
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "{var}={image}: the tag is not a full {prefix}* version"
    );
    image
}

fn postgres_image() -> String {
    offline_image("POSTGRES_IMAGE", "fog-offline/postgres", "15.")
}

/// Build the offline images once per test binary; returns the env file text.
fn offline_images() -> &'static String {
    static BUILT: OnceLock<String> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = temp_dir("imgs-env");
        let env_file = dir.join(".env");
        std::fs::write(
            &env_file,
            "# test env\nPOSTGRES_IMAGE=postgres:15.8-alpine\nPOSTGRES_USER=fog\n",
        )
        .unwrap();
        let out = xtask_env(&["images", "offline", "--quiet"], &env_file);
        assert!(
            out.status.success(),
            "images offline failed:\n{}",
            text(&out)
        );
        let mode = std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "env file mode after update");
        let again = xtask_env(&["images", "offline", "--quiet", "--no-env"], &env_file);
        assert!(again.status.success(), "{}", text(&again));
        let stdout = String::from_utf8_lossy(&again.stdout);
        assert_eq!(
            stdout.matches("cached").count(),
            4,
            "second run rebuilt something:\n{}",
            text(&again)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("grafana, loki, cadvisor"),
            "no warning about services without offline images:\n{}",
            text(&out)
        );
        let env_text = std::fs::read_to_string(&env_file).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        env_text
    })
}

#[test]
fn offline_run_points_env_at_offline_images() {
    if !engine_or_skip("offline_run_points_env_at_offline_images") {
        return;
    }
    let env = offline_images();
    assert!(
        env.starts_with(&format!(
            "# test env\nPOSTGRES_IMAGE={}\nPOSTGRES_USER=fog\n",
            postgres_image()
        )),
        "{env}"
    );
    for (var, repository, prefix) in [
        ("PROMETHEUS_IMAGE", "fog-offline/prometheus", "2.42."),
        ("ALERTMANAGER_IMAGE", "fog-offline/alertmanager", "0.25."),
        ("NODE_EXPORTER_IMAGE", "fog-offline/node-exporter", "1.5."),
    ] {
        offline_image(var, repository, prefix);
    }
    assert!(!env.contains("GRAFANA_IMAGE=fog-offline"), "{env}");
}

/// Start the offline Postgres image; returns the container name.
fn start_postgres(guard: &mut Cleanup, subnet: &str, port: u16, extra: &[&str]) -> String {
    let network = guard.network("imgs-pg-net", subnet);
    let name = guard.container("imgs-pg");
    let volume = format!("{name}-data");
    guard.volumes.push(volume.clone());
    let publish = format!("127.0.0.1:{port}:5432");
    let mount = format!("{volume}:/var/lib/postgresql/data");
    let mut args = vec![
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        "-p",
        &publish,
        "-v",
        &mount,
        "-e",
        "POSTGRES_USER=fog_user",
        "-e",
        "POSTGRES_DB=fog_db",
        "--health-cmd",
        "pg_isready -U $POSTGRES_USER -d $POSTGRES_DB",
        "--health-interval",
        "1s",
        "--health-retries",
        "60",
    ];
    args.extend_from_slice(extra);
    let image = postgres_image();
    args.push(&image);
    docker(&args);
    wait_healthy(&name, Duration::from_secs(240));
    name
}

fn psql(port: u16, password: &str, sql: &str) -> std::process::Output {
    Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "fog_user",
            "-d",
            "fog_db",
            "-Atc",
            sql,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .expect("running psql (install postgresql-client: scripts/ci-setup.sh)")
}

/// psql may race the server's switch from the init phase; retry for up to
/// about a minute (a generous bound: the shared machine is loaded).
fn query(port: u16, password: &str, sql: &str) -> String {
    let mut last = None;
    for _ in 0..200 {
        let out = psql(port, password, sql);
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        last = Some(out);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "psql failed: {}",
        String::from_utf8_lossy(&last.unwrap().stderr)
    );
}

#[test]
fn offline_postgres_initialises_and_accepts_password() {
    let Some(mut guard) = engine_guard("offline_postgres_initialises_and_accepts_password") else {
        return;
    };
    offline_images();
    let name = start_postgres(
        &mut guard,
        "10.232.1.0/24",
        16001,
        &["-e", "POSTGRES_PASSWORD=pw with spaces'\""],
    );
    let row = query(16001, "pw with spaces'\"", "select current_user || ' ' || current_database() || ' ' || current_setting('server_version_num')");
    assert!(row.starts_with("fog_user fog_db 15"), "{row}");
    let wrong = psql(16001, "wrong", "select 1");
    assert!(!wrong.status.success(), "a wrong password was accepted");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("password authentication failed"));
    // The server runs as the postgres user, not root.
    let status = docker(&["exec", &name, "cat", "/proc/1/status"]);
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        !uid.split_whitespace().nth(1).unwrap().eq("0"),
        "postgres runs as root: {uid}"
    );
    assert_eq!(
        docker(&["exec", &name, "id", "-un"]),
        "root",
        "docker exec default user"
    );
    let user = docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "ps -o user= -p 1 2>/dev/null || stat -c %U /proc/1",
    ]);
    assert_eq!(user, "postgres");
}

#[test]
fn offline_postgres_reads_password_file() {
    let Some(mut guard) = engine_guard("offline_postgres_reads_password_file") else {
        return;
    };
    offline_images();
    let dir = guard.temp_dir("imgs-pg-secret");
    let secret = dir.join("postgres_password");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mount = format!("{}:/run/secrets/postgres_password:ro", secret.display());
    start_postgres(
        &mut guard,
        "10.232.2.0/24",
        16002,
        &[
            "-v",
            &mount,
            "-e",
            "POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password",
        ],
    );
    assert_eq!(query(16002, "from-a-file", "select 40 + 2"), "42");
}

#[test]
fn offline_postgres_refuses_to_init_without_password() {
    let Some(mut guard) = engine_guard("offline_postgres_refuses_to_init_without_password") else {
        return;
    };
    offline_images();
    let name = guard.container("imgs-pg-nopw");
    let out = Command::new("docker")
        .args([
            "run",
            "--name",
            &name,
            "--network",
            "none",
            &postgres_image(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE"),
        "{stderr}"
    );
}

#[test]
fn offline_monitoring_images_serve_http() {
    let Some(mut guard) = engine_guard("offline_monitoring_images_serve_http") else {
        return;
    };
    offline_images();
    let network = guard.network("imgs-mon-net", "10.232.4.0/24");
    for (image, port, path, expect) in [
        (
            offline_image("PROMETHEUS_IMAGE", "fog-offline/prometheus", "2.42."),
            9090,
            "/-/healthy",
            "Healthy",
        ),
        (
            offline_image("ALERTMANAGER_IMAGE", "fog-offline/alertmanager", "0.25."),
            9093,
            "/-/healthy",
            "OK",
        ),
        (
            offline_image("NODE_EXPORTER_IMAGE", "fog-offline/node-exporter", "1.5."),
            9100,
            "/metrics",
            "node_exporter_build_info",
        ),
    ] {
        let name = guard.container("imgs-mon");
        let health = format!("wget -q -O /dev/null http://127.0.0.1:{port}{path}");
        docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            &network,
            "--health-cmd",
            &health,
            "--health-interval",
            "1s",
            "--health-retries",
            "60",
            &image,
        ]);
        wait_healthy(&name, Duration::from_secs(180));
        assert_eq!(
            docker(&["inspect", "--format", "{{.Config.User}}", &name]),
            "nobody",
            "{image}"
        );
        let url = format!("http://127.0.0.1:{port}{path}");
        let body = docker(&["exec", &name, "wget", "-q", "-O", "-", &url]);
        assert!(body.contains(expect), "{image}: {url} gave {body:.200}");
    }
}

/// `images ensure` is what bring-up runs: with upstream images missing and
/// offline requested, it points the env file at the offline images and names
/// the services that have none.
#[test]
fn ensure_switches_a_fresh_env_file_to_offline_images() {
    let Some(mut guard) = engine_guard("ensure_switches_a_fresh_env_file_to_offline_images") else {
        return;
    };
    offline_images();
    let dir = guard.temp_dir("imgs-ensure");
    let env_file = dir.join(".env");
    std::fs::write(
        &env_file,
        "POSTGRES_IMAGE=postgres:15.8-alpine\nPOSTGRES_PASSWORD=keep-me\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "images",
            "ensure",
            "--env",
            "monitoring",
            "--format",
            "json",
            "--quiet",
        ])
        .env("FOG_ENV_FILE", &env_file)
        .env("FOG_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["offline"], true);
    assert_eq!(
        report["skipped_services"],
        serde_json::json!(["grafana", "loki", "cadvisor"])
    );
    assert_eq!(
        report["env_updates"].as_array().unwrap().len(),
        4,
        "{report}"
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    assert!(
        env.starts_with(&format!(
            "POSTGRES_IMAGE={}\nPOSTGRES_PASSWORD=keep-me\n",
            postgres_image()
        )),
        "{env}"
    );
    assert!(
        env.contains(&format!(
            "ALERTMANAGER_IMAGE={}\n",
            offline_image("ALERTMANAGER_IMAGE", "fog-offline/alertmanager", "0.25.")
        )),
        "{env}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let skipped_warnings = stderr
        .lines()
        .filter(|l| l.starts_with("warning:") && l.contains("grafana, loki, cadvisor"))
        .count();
    assert_eq!(
        skipped_warnings, 1,
        "one warning naming the skipped services expected:\n{stderr}"
    );

    // Without FOG_OFFLINE the pull probe decides: here nothing can be pulled,
    // so the result is the same; where pulls work, the images must be present.
    let again = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "images",
            "ensure",
            "--env",
            "monitoring",
            "--format",
            "json",
            "--quiet",
        ])
        .env("FOG_ENV_FILE", &env_file)
        .env_remove("FOG_OFFLINE")
        .output()
        .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    if report["offline"] == true {
        assert_eq!(
            report["skipped_services"],
            serde_json::json!(["grafana", "loki", "cadvisor"])
        );
    } else {
        for image in ["grafana/grafana:11.2.0", "grafana/loki:2.9.10"] {
            assert!(
                docker_ok(&["image", "inspect", image]),
                "{image} neither pulled nor skipped"
            );
        }
    }
}

/// A data volume keeps its data across containers, and one whose files belong
/// to another uid (as upstream's postgres image leaves them) is adopted.
#[test]
fn offline_postgres_keeps_and_adopts_its_volume() {
    let Some(mut guard) = engine_guard("offline_postgres_keeps_and_adopts_its_volume") else {
        return;
    };
    offline_images();
    let first = start_postgres(
        &mut guard,
        "10.232.5.0/24",
        16005,
        &["-e", "POSTGRES_PASSWORD=pw"],
    );
    query(
        16005,
        "pw",
        "create table kept (v int); insert into kept values (7)",
    );
    let volume = format!("{first}-data");
    let network = guard.networks[0].clone();
    docker(&["stop", &first]);
    docker(&["rm", &first]);
    guard.containers.retain(|c| c != &first);
    let mount = format!("{volume}:/var/lib/postgresql/data");
    docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &mount,
        "--entrypoint",
        "chown",
        &postgres_image(),
        "-R",
        "70:70",
        "/var/lib/postgresql/data",
    ]);
    let second = guard.container("imgs-pg-again");
    docker(&[
        "run",
        "-d",
        "--name",
        &second,
        "--network",
        &network,
        "-p",
        "127.0.0.1:16005:5432",
        "-v",
        &mount,
        "--health-cmd",
        "pg_isready -U fog_user -d fog_db",
        "--health-interval",
        "1s",
        "--health-retries",
        "60",
        &postgres_image(),
    ]);
    wait_healthy(&second, Duration::from_secs(240));
    assert_eq!(query(16005, "pw", "select v from kept"), "7");
}
