//! E2E: the offline images run under the project's real overlays
//! (`compose/base.yml` + `compose/monitoring.yml`) with the overlays' own
//! commands, users, cap_drop, config mounts and healthchecks: postgres,
//! prometheus, node-exporter and alertmanager all turn healthy; a backup
//! metrics textfile (as `cargo xtask backup` writes it) in the folder the
//! overlay mounts is exported by node-exporter and queried back from
//! Prometheus. Own project
//! name, networks in 10.232.10.0/24 and 10.232.11.0/24, host ports
//! 16101-16103 on 127.0.0.1; `down -v` on drop.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use common::*;

struct Stack {
    program: Vec<&'static str>,
    project: String,
    env_file: PathBuf,
    root: PathBuf,
}

impl Stack {
    fn compose(&self, args: &[&str]) -> std::process::Output {
        let env_file = self.env_file.display().to_string();
        let mut base = vec![
            "--project-directory",
            "compose",
            "--env-file",
            &env_file,
            "-p",
            &self.project,
            "-f",
            "compose/base.yml",
            "-f",
            "compose/monitoring.yml",
        ];
        base.extend_from_slice(args);
        Command::new(self.program[0])
            .args(&self.program[1..])
            .args(&base)
            .current_dir(&self.root)
            .output()
            .expect("running compose")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]);
        let _ = std::fs::remove_file(&self.env_file);
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn offline_images_run_under_the_real_overlays() {
    if !engine_or_skip("offline_images_run_under_the_real_overlays") {
        return;
    }
    let Some(program) = compose_program() else {
        if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
            panic!("CI is set but neither `docker compose` nor `docker-compose` is installed");
        }
        eprintln!("skipped: no compose");
        return;
    };
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let mut guard = Cleanup::default();
    let dir = guard.temp_dir("imgs-stack");
    let env_file = dir.join(".env");
    let built = xtask_env(
        &[
            "images",
            "offline",
            "--quiet",
            "--only",
            "postgres",
            "--only",
            "prometheus",
            "--only",
            "alertmanager",
            "--only",
            "node-exporter",
        ],
        &env_file,
    );
    assert!(built.status.success(), "{}", text(&built));
    let env = std::fs::read_to_string(&env_file).unwrap();
    let project = unique("imgsstack").replace('-', "");
    // What `backup postgres` writes after a success, into the mounted folder.
    let metrics = dir.join("metrics");
    let run = xtask::backup::metrics::Run {
        project: &project,
        kind: "postgres",
        target: "fog",
        at: xtask::backup::metrics::now(),
        size: 4242,
        seconds: 1.5,
    };
    xtask::backup::metrics::write(&metrics, &run).unwrap();
    std::fs::write(
        &env_file,
        format!(
            "{env}COMPOSE_PROJECT_NAME={project}\nFOG_NETWORK_NAME={project}-fog\nFOG_NETWORK_SUBNET=10.232.10.0/24\n\
             BETANET_NETWORK_NAME={project}-betanet\nBETANET_NETWORK_SUBNET=10.232.11.0/24\n\
             POSTGRES_USER=fog\nPOSTGRES_PASSWORD=stack-test-pw\nPOSTGRES_DB=fog\nGRAFANA_ADMIN_PASSWORD=unused\n\
             NODE_EXPORTER_PORT=16101\nALERTMANAGER_PORT=16102\nCADVISOR_PORT=16103\n\
             FOG_BACKUP_METRICS_DIR={}\n",
            metrics.display()
        ),
    )
    .unwrap();
    let stack = Stack {
        program,
        project: project.clone(),
        env_file: env_file.clone(),
        root,
    };
    let services = ["postgres", "prometheus", "node-exporter", "alertmanager"];
    let mut up = vec!["up", "-d", "--no-deps"];
    up.extend_from_slice(&services);
    let out = stack.compose(&up);
    assert!(
        out.status.success(),
        "compose up: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let label = format!("label=com.docker.compose.project={project}");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let states = docker(&[
            "ps",
            "-a",
            "--filter",
            &label,
            "--format",
            "{{.Names}} {{.Status}}",
        ]);
        let healthy = states.lines().filter(|l| l.contains("(healthy)")).count();
        if healthy == services.len() {
            break;
        }
        if Instant::now() > deadline || states.contains("unhealthy") || states.contains("Exited") {
            let logs = stack.compose(&["logs", "--no-color", "--tail", "20"]);
            panic!(
                "not all healthy:\n{states}\n{}",
                String::from_utf8_lossy(&logs.stdout)
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let images = docker(&["ps", "--filter", &label, "--format", "{{.Image}}"]);
    assert_eq!(
        images
            .lines()
            .filter(|l| l.starts_with("fog-offline/"))
            .count(),
        4,
        "{images}"
    );
    assert!(
        http_get(16102, "/-/ready").starts_with("HTTP/1.0 200"),
        "alertmanager not ready"
    );
    assert!(
        http_get(16101, "/metrics").contains("node_exporter_build_info"),
        "node-exporter metrics"
    );
    let exported = http_get(16101, "/metrics");
    assert!(
        exported.contains(&format!(
            "fog_backup_last_size_bytes{{kind=\"postgres\",project=\"{project}\",target=\"fog\"}} 4242"
        )),
        "node-exporter does not export the backup textfile"
    );
    // Prometheus scrapes node-exporter every 15 s: the backup metric arrives.
    let prometheus = docker(&[
        "ps",
        "-q",
        "--filter",
        &label,
        "--filter",
        "label=com.docker.compose.service=prometheus",
    ]);
    let query =
        "http://127.0.0.1:9090/api/v1/query?query=fog_backup_last_success_timestamp_seconds";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = docker_output(&["exec", prometheus.trim(), "wget", "-qO-", query]);
        let body = String::from_utf8_lossy(&answer.stdout);
        if body.contains(&format!("\"project\":\"{project}\"")) {
            assert!(body.contains("\"kind\":\"postgres\""), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never saw the backup metric: {body}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    drop(stack);
    let left = docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
    assert!(left.is_empty(), "containers left after down: {left}");
}
