//! `cargo xtask report --live` on the real engine: the legacy main stack
//! (`report/legacy3/docker-compose.yml`: postgres, prometheus, grafana, plus
//! `report/broken.yml`, a service that exits with code 3) against `base`
//! (postgres, prometheus, grafana, loki). Each side is really
//! started under its own `fogrep-*` project, sampled for 3 seconds and
//! removed; services with no image here (grafana, loki) are listed as not
//! measured. A second test presses Ctrl-C (SIGINT) mid-run and finds nothing
//! left behind. Offline images come from `images offline`; without an engine
//! the tests skip, except under `CI=true`.

mod common;

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{compose_or_skip, docker, docker_output, engine_or_skip, fixture, text, xtask};
use serde_json::Value;

/// The two tests pick subnets the same way: run them one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn ensure_offline_images() {
    let out = xtask(&[
        "images",
        "offline",
        "--no-env",
        "--quiet",
        "--only",
        "postgres",
        "--only",
        "prometheus",
    ]);
    assert!(out.status.success(), "images offline: {}", text(&out));
}

/// What a report run under `pid` may have created, removed on drop.
struct Leftovers(Vec<String>);

impl Leftovers {
    fn for_pid(pid: u32) -> Leftovers {
        Leftovers(vec![
            format!("fogrep-before-{pid}"),
            format!("fogrep-after-{pid}"),
        ])
    }

    /// Containers, networks and volumes of the projects that still exist.
    fn remaining(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.0 {
            let label = format!("label=com.docker.compose.project={p}");
            out.extend(lines(&[
                "ps",
                "-a",
                "--filter",
                &label,
                "--format",
                "{{.Names}}",
            ]));
            out.extend(
                lines(&["network", "ls", "--format", "{{.Name}}"])
                    .into_iter()
                    .filter(|n| n.starts_with(&format!("{p}-")) || n.starts_with(&format!("{p}_"))),
            );
            out.extend(
                lines(&["volume", "ls", "--format", "{{.Name}}"])
                    .into_iter()
                    .filter(|v| v.starts_with(&format!("{p}_"))),
            );
        }
        out
    }
}

fn lines(args: &[&str]) -> Vec<String> {
    docker(args)
        .lines()
        .map(String::from)
        .filter(|l| !l.is_empty())
        .collect()
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        for p in &self.0 {
            let label = format!("label=com.docker.compose.project={p}");
            let ids =
                String::from_utf8_lossy(&docker_output(&["ps", "-aq", "--filter", &label]).stdout)
                    .into_owned();
            for id in ids.split_whitespace() {
                docker_output(&["rm", "-f", "-v", id]);
            }
        }
        for thing in self.remaining() {
            docker_output(&["network", "rm", &thing]);
            docker_output(&["volume", "rm", "-f", &thing]);
        }
    }
}

fn report_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("report")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn row<'a>(side: &'a Value, name: &str) -> &'a Value {
    side["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()
}

#[test]
fn live_report_measures_two_real_environments() {
    if !engine_or_skip("live_report") || compose_or_skip("live_report").is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ensure_offline_images();
    let legacy = format!(
        "{},{}",
        fixture("report/legacy3/docker-compose.yml").display(),
        fixture("report/broken.yml").display()
    );
    let child = report_command(&[
        "--before",
        &legacy,
        "--after",
        "base",
        "--live",
        "--duration",
        "3",
        "--timeout",
        "150",
        "--format",
        "json",
        "--claims",
    ])
    .spawn()
    .unwrap();
    let leftovers = Leftovers::for_pid(child.id());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["live"], true);
    assert!(
        doc["memory_counting"]
            .as_str()
            .unwrap()
            .contains("inactive_file"),
        "{}",
        doc["memory_counting"]
    );
    for (side, project) in [("before", &leftovers.0[0]), ("after", &leftovers.0[1])] {
        let s = &doc[side];
        assert_eq!(s["project"], project.as_str());
        assert_eq!(s["samples"], 3, "{side}");
        for service in ["postgres", "prometheus"] {
            let r = row(s, service);
            assert_eq!(r["status"], "measured", "{side} {service}: {r}");
            assert!(
                r["memory_bytes"].as_f64().unwrap() > 1e6,
                "{side} {service}: {r}"
            );
            assert!(
                r["memory_max_bytes"].as_f64() >= r["memory_bytes"].as_f64(),
                "{side} {service}: {r}"
            );
            assert!(r["cpu_percent"].as_f64().unwrap() >= 0.0);
            assert!(r["time_to_healthy_s"].as_f64().unwrap() > 0.0);
            assert!(r["measured_image"].as_str().unwrap().contains(':'), "{r}");
        }
        let grafana = row(s, "grafana");
        assert_eq!(grafana["status"], "not-measured");
        let reasons = s["not_measured"].to_string();
        assert!(
            reasons.contains("grafana") && reasons.contains("no image here"),
            "{side}: {reasons}"
        );
        let sum = row(s, "postgres")["memory_bytes"].as_f64().unwrap()
            + row(s, "prometheus")["memory_bytes"].as_f64().unwrap();
        assert!(
            (s["memory_bytes"].as_f64().unwrap() - sum).abs() < 1.0,
            "totals are the measured services' sum"
        );
        assert!(
            s["memory_max_bytes"].as_f64().unwrap() >= s["memory_bytes"].as_f64().unwrap() * 0.9
        );
    }
    assert!(doc["after"]["not_measured"].to_string().contains("loki"));
    let broken = doc["before"]["not_measured"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["service"] == "broken")
        .expect("the failing service is listed");
    assert!(
        broken["reason"].as_str().unwrap().contains("exit code 3"),
        "{broken}"
    );
    assert_eq!(row(&doc["before"], "broken")["status"], "not-measured");
    // base's Prometheus has a healthcheck (5s interval): it is ready only once it passes.
    assert!(
        row(&doc["after"], "prometheus")["time_to_healthy_s"]
            .as_f64()
            .unwrap()
            >= 4.0
    );
    assert!(doc["delta"]["memory_bytes"].is_number());
    let prometheus_claim = &doc["claims"][0];
    assert!(
        prometheus_claim["measured_bytes"].as_f64().unwrap() > 1e6,
        "{prometheus_claim}"
    );
    assert_eq!(
        doc["claims"][1]["verdict"], "not measured",
        "no Grafana image here"
    );
    assert_eq!(
        leftovers.remaining(),
        Vec::<String>::new(),
        "the report removes what it started"
    );
}

#[test]
fn ctrl_c_tears_the_side_down() {
    if !engine_or_skip("live_ctrl_c") || compose_or_skip("live_ctrl_c").is_none() {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    ensure_offline_images();
    let mut child = report_command(&[
        "--before",
        "base",
        "--after",
        "base",
        "--live",
        "--duration",
        "60",
    ])
    .spawn()
    .unwrap();
    let leftovers = Leftovers::for_pid(child.id());
    let label = format!("label=com.docker.compose.project={}", leftovers.0[0]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines(&[
        "ps",
        "--filter",
        &label,
        "--filter",
        "status=running",
        "--format",
        "{{.Names}}",
    ])
    .is_empty()
    {
        assert!(Instant::now() < deadline, "the before side never started");
        assert!(child.try_wait().unwrap().is_none(), "report exited early");
        std::thread::sleep(Duration::from_millis(300));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "report did not exit after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(
        leftovers.remaining(),
        Vec::<String>::new(),
        "nothing left after Ctrl-C"
    );
    assert!(
        lines(&[
            "ps",
            "-a",
            "--filter",
            &format!("label=com.docker.compose.project={}", leftovers.0[1]),
            "-q"
        ])
        .is_empty(),
        "the after side never started"
    );
}

#[test]
fn current_flags_a_service_above_80_percent_of_its_memory_limit() {
    if !engine_or_skip("live_current") {
        return;
    }
    ensure_offline_images();
    let image = lines(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "fog-offline/postgres",
    ])
    .into_iter()
    .next()
    .expect("an offline postgres image");
    let project = format!("fogrep-cur-{}", std::process::id());
    let leftovers = Leftovers(vec![project.clone()]);
    let start = |service: &str, limit: Option<&str>, script: &str| {
        let name = format!("{project}-{service}-1");
        let mut args = vec![
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "none",
            "--label",
            &format!("com.docker.compose.project={project}"),
            "--label",
            &format!("com.docker.compose.service={service}"),
            "--tmpfs",
            "/hog:size=80m",
            "--entrypoint",
            "sh",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        if let Some(limit) = limit {
            args.extend(["--memory".to_string(), limit.to_string()]);
        }
        args.extend([image.clone(), "-c".into(), script.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
    };
    // tmpfs pages are shared memory: docker stats counts them (not inactive file cache).
    start(
        "hog",
        Some("64m"),
        "head -c 57000000 /dev/zero > /hog/fill && sleep 300",
    );
    start("calm", Some("1g"), "sleep 300");
    start("free", None, "sleep 300");
    let deadline = Instant::now() + Duration::from_secs(60);
    let doc: Value = loop {
        let out = xtask(&[
            "report",
            "--current",
            "--project",
            &project,
            "--format",
            "json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        if doc["flagged"].as_array().is_some_and(|f| !f.is_empty()) || Instant::now() > deadline {
            break doc;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(doc["project"], project.as_str());
    assert_eq!(doc["flagged"], serde_json::json!(["hog"]), "{doc:#}");
    let rows = doc["containers"].as_array().unwrap();
    let get = |s: &str| rows.iter().find(|r| r["service"] == s).unwrap();
    assert!(get("hog")["memory_of_limit_percent"].as_f64().unwrap() > 80.0);
    assert_eq!(get("hog")["memory_limit_bytes"], 64 << 20);
    assert_eq!(get("calm")["flagged"], false);
    assert!(get("free")["memory_limit_bytes"].is_null());
    let table = xtask(&["report", "--current", "--project", &project]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("| `hog` |") && table.contains("above 80% of its memory limit"),
        "{table}"
    );
    let none = xtask(&["report", "--current", "--project", "fogrep-nothing-here"]);
    assert_eq!(none.status.code(), Some(1), "{}", text(&none));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no running containers"));
    drop(leftovers);
}
