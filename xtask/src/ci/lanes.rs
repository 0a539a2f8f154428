//! The `test` check in two lanes: the workspace's test binaries are built once
//! (`cargo test --no-run`), then run by this process directly, one binary at a
//! time per lane, with the Postgres data binaries ([`DATA_LANE`]: the
//! `data_support` stacks, which pick a free bank of subnets and ports by
//! themselves) beside all the others. Most of their time is spent waiting on
//! Docker and Postgres, so two lanes on two cores nearly halve the wall time.
//! Each binary runs as `cargo test` would run it (its package folder as the
//! working directory, `CARGO_MANIFEST_DIR` set); its whole output is printed
//! when it ends, under cargo's own `Running` header, so the two lanes never
//! interleave lines. The doc tests run last, through cargo. A summary lists
//! each binary's time, slowest first, to keep the lanes balanced.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// Test binaries (integration-test target names) of the data lane: the
/// `data_support` users. `lanes_name_real_targets` ties this list to the
/// files under `xtask/tests`.
pub const DATA_LANE: &[&str] = &[
    "adopt",
    "data_backup",
    "data_backup_live",
    "data_betanet",
    "data_offsite",
    "data_pitr",
    "data_restore",
];

/// One test executable as cargo built it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestBin {
    /// `xtask`, `mixnode`, ...
    pub package: String,
    /// The target's name (`adopt`, or the crate name for unit tests).
    pub name: String,
    /// `lib`, `bin`, `test`, `bench`, `example`.
    pub kind: String,
    /// The source file, for the `Running` header.
    pub src_path: PathBuf,
    pub executable: PathBuf,
    /// The package folder: the working directory cargo gives a test binary.
    pub manifest_dir: PathBuf,
}

/// The test executables in cargo's `--message-format json` output.
pub fn parse_artifacts(json_lines: &str) -> Result<Vec<TestBin>> {
    let mut bins = Vec::new();
    for line in json_lines.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("cargo printed {line:?}"))?;
        if v["reason"] != "compiler-artifact" || v["profile"]["test"] != true {
            continue;
        }
        let Some(executable) = v["executable"].as_str() else {
            continue;
        };
        let manifest = PathBuf::from(v["manifest_path"].as_str().unwrap_or_default());
        let package = v["package_id"]
            .as_str()
            .map(package_name)
            .unwrap_or_default();
        bins.push(TestBin {
            package,
            name: v["target"]["name"].as_str().unwrap_or_default().to_string(),
            kind: v["target"]["kind"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            src_path: PathBuf::from(v["target"]["src_path"].as_str().unwrap_or_default()),
            executable: PathBuf::from(executable),
            manifest_dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
        });
    }
    Ok(bins)
}

/// `path+file:///work/main/xtask#0.1.0` or `xtask 0.1.0 (path+...)` -> `xtask`.
fn package_name(id: &str) -> String {
    if let Some((_, rest)) = id.split_once('#') {
        let url_tail = id.split('#').next().unwrap_or_default();
        return match rest.split_once('@') {
            Some((name, _)) => name.to_string(),
            None => url_tail.rsplit('/').next().unwrap_or_default().to_string(),
        };
    }
    id.split_whitespace().next().unwrap_or_default().to_string()
}

/// Split the binaries into the data lane and the main lane, keeping cargo's order.
pub fn split(bins: Vec<TestBin>) -> (Vec<TestBin>, Vec<TestBin>) {
    bins.into_iter()
        .partition(|b| b.kind == "test" && DATA_LANE.contains(&b.name.as_str()))
}

/// The outcome of one binary.
struct Ran {
    label: String,
    lane: &'static str,
    passed: bool,
    took: Duration,
}

/// Build, run both lanes (or one, with `serial`), then the doc tests.
pub fn run(sh: &Shell, runner: &Runner, serial: bool) -> Result<()> {
    let json = runner
        .read(cmd!(
            sh,
            "cargo test --workspace --locked --no-run --message-format json-render-diagnostics"
        ))
        .context("building the workspace's tests")?;
    let bins = parse_artifacts(&json)?;
    if bins.is_empty() {
        bail!("cargo built no test binaries");
    }
    let root = crate::project_root();
    let (data, main) = split(bins);
    let print = Mutex::new(());
    let results = Mutex::new(Vec::<Ran>::new());
    let lane = |name: &'static str, bins: Vec<TestBin>| {
        for bin in bins {
            let ran = run_one(runner, &root, &bin, name, &print);
            results.lock().unwrap_or_else(|e| e.into_inner()).push(ran);
        }
    };
    if serial {
        lane("main", [main, data].concat());
    } else {
        std::thread::scope(|s| {
            s.spawn(|| lane("data", data));
            lane("main", main);
        });
    }
    let doc_started = Instant::now();
    let doc = cmd!(sh, "cargo test --workspace --locked --no-fail-fast --doc");
    // Echoed as xshell did.
    eprintln!("$ {doc}");
    let doc = runner.stream(doc).is_ok();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.push(Ran {
        label: "doc tests".into(),
        lane: "main",
        passed: doc,
        took: doc_started.elapsed(),
    });
    summarize(&results)
}

/// Run one test binary with its output captured, then print it whole.
fn run_one(
    runner: &Runner,
    root: &Path,
    bin: &TestBin,
    lane: &'static str,
    print: &Mutex<()>,
) -> Ran {
    let label = format!("{} {} `{}`", bin.package, bin.kind, bin.name);
    let started = Instant::now();
    let output = Shell::new().map_err(anyhow::Error::from).and_then(|sh| {
        sh.change_dir(&bin.manifest_dir);
        let exe = &bin.executable;
        runner.output(
            cmd!(sh, "{exe}")
                .env("CARGO_MANIFEST_DIR", &bin.manifest_dir)
                .env("CARGO_PKG_NAME", &bin.package),
        )
    });
    let took = started.elapsed();
    let _guard = print.lock().unwrap_or_else(|e| e.into_inner());
    let shown = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
    let src = bin
        .src_path
        .strip_prefix(&bin.manifest_dir)
        .unwrap_or(&bin.src_path);
    println!(
        "     Running {} ({}) [lane {lane}, {:.1}s]",
        src.display(),
        shown(&bin.executable),
        took.as_secs_f64()
    );
    let passed = match output {
        Ok(out) => {
            print!("{}", String::from_utf8_lossy(&out.stdout));
            eprint!("{}", String::from_utf8_lossy(&out.stderr));
            out.status.success()
        }
        Err(e) => {
            println!("error: could not run {}: {e}", shown(&bin.executable));
            false
        }
    };
    Ran {
        label,
        lane,
        passed,
        took,
    }
}

/// Each binary's time, slowest first, and the failures; Err if any failed.
fn summarize(results: &[Ran]) -> Result<()> {
    let mut sorted: Vec<&Ran> = results.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.took));
    println!("\ntest binaries, slowest first:");
    for r in &sorted {
        println!(
            "  {:>7.1}s  {:<4}  {:<6}  {}",
            r.took.as_secs_f64(),
            r.lane,
            if r.passed { "ok" } else { "FAILED" },
            r.label
        );
    }
    for lane in ["main", "data"] {
        let total: Duration = results
            .iter()
            .filter(|r| r.lane == lane)
            .map(|r| r.took)
            .sum();
        println!("  lane {lane}: {:.1}s", total.as_secs_f64());
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.label.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("failing test binaries: {}", failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARGO_JSON: &str = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"adopt","src_path":"/w/xtask/tests/adopt.rs","edition":"2021","doctest":false,"test":true},"profile":{"opt_level":"0","debuginfo":2,"debug_assertions":true,"overflow_checks":true,"test":true},"features":[],"filenames":["/w/target/debug/deps/adopt-1"],"executable":"/w/target/debug/deps/adopt-1","fresh":true}
{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#serde@1.0.0","manifest_path":"/r/serde/Cargo.toml","target":{"kind":["lib"],"name":"serde","src_path":"/r/serde/src/lib.rs"},"profile":{"test":false},"executable":null,"fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/mixnode#fog-mixnode@0.1.0","manifest_path":"/w/mixnode/Cargo.toml","target":{"kind":["lib"],"name":"fog_mixnode","src_path":"/w/mixnode/src/lib.rs"},"profile":{"test":true},"executable":"/w/target/debug/deps/fog_mixnode-2","fresh":true}
{"reason":"compiler-artifact","package_id":"path+file:///w/xtask#0.1.0","manifest_path":"/w/xtask/Cargo.toml","target":{"kind":["bin"],"name":"xtask","src_path":"/w/xtask/src/main.rs"},"profile":{"test":false},"executable":"/w/target/debug/xtask","fresh":true}
{"reason":"build-finished","success":true}
"#;

    #[test]
    fn test_executables_are_read_from_cargo_json() {
        let bins = parse_artifacts(CARGO_JSON).unwrap();
        assert_eq!(bins.len(), 2, "{bins:?}");
        assert_eq!(
            (
                bins[0].package.as_str(),
                bins[0].name.as_str(),
                bins[0].kind.as_str()
            ),
            ("xtask", "adopt", "test")
        );
        assert_eq!(bins[0].manifest_dir, PathBuf::from("/w/xtask"));
        assert_eq!(bins[1].package, "fog-mixnode");
        let (data, main) = split(bins);
        assert_eq!(data.len(), 1);
        assert_eq!(main[0].name, "fog_mixnode");
        assert!(parse_artifacts("{not json").is_err());
        assert_eq!(package_name("xtask 0.1.0 (path+file:///w/xtask)"), "xtask");
    }

    #[test]
    fn lanes_name_real_targets() {
        let tests = crate::project_root().join("xtask/tests");
        for name in DATA_LANE {
            let file = tests.join(format!("{name}.rs"));
            assert!(
                file.is_file(),
                "DATA_LANE names `{name}`, but {} does not exist",
                file.display()
            );
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.contains("mod data_support;"),
                "{name} is in DATA_LANE but does not use data_support"
            );
        }
        for entry in std::fs::read_dir(&tests).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs")
                && std::fs::read_to_string(&path)
                    .unwrap()
                    .contains("mod data_support;")
            {
                let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
                assert!(
                    DATA_LANE.contains(&stem.as_str()),
                    "{stem} uses data_support: add it to DATA_LANE"
                );
            }
        }
    }
}
