//! The HTML report in a real browser: `report --format html` for the legacy
//! three-stack layout against `betanet+monitoring`, rendered by headless
//! Chromium (Debian's `chromium`) to a DOM dump and a PNG. The page must hold
//! the before and after bars of every chart, fetch nothing, log no console
//! message, and paint a full-size, non-blank screenshot. Without Chromium the
//! test skips, except under `CI=true`, where it fails.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture, in_ci, text, xtask, Cleanup};

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|p| {
        Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Run Chromium headless on `page` with `args`, bounded in time.
fn run_chromium(program: &str, profile: &Path, page: &Path, args: &[&str]) -> Output {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        program,
        "--headless",
        "--disable-gpu",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args);
    if root {
        cmd.arg("--no-sandbox");
    }
    cmd.arg(format!("file://{}", page.display()));
    cmd.output().expect("chromium runs")
}

#[test]
fn html_report_renders_in_headless_chromium() {
    let Some(program) = chromium() else {
        assert!(
            !in_ci(),
            "CI is set but chromium is not installed (scripts/ci-setup.sh installs it)"
        );
        eprintln!("skipped: no chromium on PATH (set CI=true to make this a failure)");
        return;
    };
    let mut guard = Cleanup::default();
    let dir = guard.temp_dir("fogrep-html");
    let page = dir.join("report.html");
    let l = fixture("report/legacy3");
    let before = [
        "docker-compose.yml",
        "docker-compose.betanet.yml",
        "docker-compose.monitoring.yml",
    ]
    .map(|f| l.join(f).display().to_string())
    .join(",");
    let out = xtask(&[
        "report",
        "--before",
        &before,
        "--after",
        "betanet+monitoring",
        "--format",
        "html",
        "--out",
        &page.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "no scripts");
    assert!(
        !html.contains("<link") && !html.contains("@import") && !html.contains("url("),
        "nothing fetched"
    );

    let dom = run_chromium(program, &dir.join("profile-dom"), &page, &["--dump-dom"]);
    assert!(dom.status.success(), "chromium --dump-dom: {}", text(&dom));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for chart in ["totals", "memory", "cpu", "repositories"] {
        assert!(
            dom.contains(&format!("<svg id=\"{chart}\"")),
            "chart {chart} missing from the DOM"
        );
    }
    // Repositories: 8 rows with both bars; memory: 6 services with a limit after, none before.
    assert!(
        dom.matches("class=\"bar before\"").count() >= 8 + 3,
        "{dom}"
    );
    assert!(
        dom.matches("class=\"bar after\"").count() >= 8 + 6 + 6,
        "{dom}"
    );
    assert!(dom.contains("prom/prometheus (duplicated)"));

    let png = dir.join("report.png");
    let shot = run_chromium(
        program,
        &dir.join("profile-shot"),
        &page,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1000,2400",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ],
    );
    assert!(
        shot.status.success(),
        "chromium --screenshot: {}",
        text(&shot)
    );
    let log = String::from_utf8_lossy(&shot.stderr);
    let console: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("net::ERR")
                || l.contains("Failed to load resource")
        })
        .collect();
    assert!(
        console.is_empty(),
        "console messages or failed loads: {console:#?}"
    );
    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1000, 2400), "IHDR width and height");
    // A blank 1000x2400 page compresses to a few kB; the charts and tables do not.
    assert!(
        bytes.len() > 40_000,
        "screenshot of {} bytes looks blank",
        bytes.len()
    );
    if let Some(keep) = std::env::var_os("FOG_REPORT_KEEP_PNG") {
        std::fs::copy(&png, keep).unwrap();
    }
}
