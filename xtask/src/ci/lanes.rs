//! The `test` check in two lanes: the workspace's test binaries are built
//! once (`cargo test --no-run`), then run by this process directly, two at a
//! time. Most of their time is spent waiting on Docker and Postgres, so two
//! lanes on two cores cut the wall time by about a third. Each lane takes the
//! next binary from one shared queue, slowest first ([`SLOW_FIRST`]), skipping
//! a binary whose exclusive group is running in the other lane: the binaries
//! that declare the same support module of [`EXCLUSIVE`] (the Postgres data
//! stacks' slots, the one swarm an engine can be in) never overlap, exactly as
//! when every binary ran one after another. Each binary runs as `cargo test`
//! would run it (its package folder as the working directory,
//! `CARGO_MANIFEST_DIR` set); its whole output is printed when it ends, under
//! cargo's own `Running` header, so the lanes never interleave lines. The doc
//! tests run last, through cargo. A summary lists each binary's time, slowest
//! first, to keep [`SLOW_FIRST`] true.

use std::{
    path::{Path, PathBuf},
    sync::{Condvar, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// Support modules (folders under a crate's `tests/`) whose users must not
/// run at the same time: the data stacks share 16 slots of ports and subnets,
/// and an engine can be in one swarm only.
pub const EXCLUSIVE: &[&str] = &["data_support", "swarm_support"];

/// Binaries by their last measured time, slowest first (the data chain
/// first: it runs one after another, so it must start at once). Binaries not
/// named here run after these, in cargo's order.
pub const SLOW_FIRST: &[&str] = &[
    "adopt",
    "data_restore",
    "data_betanet",
    "data_pitr",
    "data_pitr_offsite",
    "data_pitr_prod",
    "data_backup_live",
    "data_backup",
    "data_offsite",
    "data_busybox",
    "release_pipeline",
    "swarm_single",
    "swarm_cluster",
    "swarm_prod",
    "images_offline",
    "engine_debootstrap",
    "conformance",
    "engine_lifecycle",
    "bench_backup",
    "bench_pitr",
    "soak",
    "stack_real",
    "stack_prod",
    "images_offline_stack",
    "engine_switch",
    "engine_offline",
    "report_live",
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

/// The exclusive group of an integration-test binary: the first module of
/// [`EXCLUSIVE`] its source declares (`mod data_support;`).
pub fn group_of(source: &str) -> Option<&'static str> {
    EXCLUSIVE
        .iter()
        .copied()
        .find(|m| source.lines().any(|l| l.trim() == format!("mod {m};")))
}

/// A binary waiting in the queue, with its exclusive group.
#[derive(Debug, Clone)]
pub struct Queued {
    pub bin: TestBin,
    pub group: Option<&'static str>,
}

/// The queue: [`SLOW_FIRST`] order, then cargo's.
pub fn queue(bins: Vec<TestBin>) -> Vec<Queued> {
    let mut queued: Vec<Queued> = bins
        .into_iter()
        .map(|bin| {
            let group = if bin.kind == "test" {
                std::fs::read_to_string(&bin.src_path)
                    .ok()
                    .and_then(|s| group_of(&s))
            } else {
                None
            };
            Queued { bin, group }
        })
        .collect();
    let rank = |q: &Queued| {
        SLOW_FIRST
            .iter()
            .position(|n| q.bin.kind == "test" && *n == q.bin.name)
            .unwrap_or(SLOW_FIRST.len())
    };
    queued.sort_by_key(rank); // stable: cargo's order among the rest
    queued
}

/// Take the first binary whose group is not running; `None` when every
/// waiting binary's group is busy (or the queue is empty).
pub fn pick(queue: &mut Vec<Queued>, running: &[&'static str]) -> Option<Queued> {
    let at = queue
        .iter()
        .position(|q| !matches!(q.group, Some(g) if running.contains(&g)))?;
    Some(queue.remove(at))
}

/// The shared state of the lanes.
struct Board {
    queue: Vec<Queued>,
    running: Vec<&'static str>,
}

/// The outcome of one binary.
struct Ran {
    label: String,
    lane: usize,
    passed: bool,
    took: Duration,
}

/// Build, run the binaries in two lanes (one with `serial`), then the doc tests.
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
    let lanes = if serial { 1 } else { 2 };
    let board = Mutex::new(Board {
        queue: queue(bins),
        running: Vec::new(),
    });
    let freed = Condvar::new();
    let print = Mutex::new(());
    let results = Mutex::new(Vec::<Ran>::new());
    let lane = |n: usize| loop {
        let next = {
            let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if b.queue.is_empty() {
                    break None;
                }
                let running = b.running.clone();
                if let Some(q) = pick(&mut b.queue, &running) {
                    b.running.extend(q.group);
                    break Some(q);
                }
                b = freed.wait(b).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(q) = next else { return };
        let ran = run_one(runner, &root, &q.bin, n, &print);
        results.lock().unwrap_or_else(|e| e.into_inner()).push(ran);
        let mut b = board.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = q.group {
            b.running.retain(|r| *r != g);
        }
        freed.notify_all();
    };
    std::thread::scope(|s| {
        for n in 2..=lanes {
            s.spawn(move || lane(n));
        }
        lane(1);
    });
    let doc_started = Instant::now();
    let doc = cmd!(sh, "cargo test --workspace --locked --no-fail-fast --doc");
    // Echoed as xshell did.
    eprintln!("$ {doc}");
    let doc = runner.stream(doc).is_ok();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.push(Ran {
        label: "doc tests".into(),
        lane: 1,
        passed: doc,
        took: doc_started.elapsed(),
    });
    summarize(&results, lanes)
}

/// Run one test binary with its output captured, then print it whole.
fn run_one(runner: &Runner, root: &Path, bin: &TestBin, lane: usize, print: &Mutex<()>) -> Ran {
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
fn summarize(results: &[Ran], lanes: usize) -> Result<()> {
    let mut sorted: Vec<&Ran> = results.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.took));
    println!("\ntest binaries, slowest first:");
    for r in &sorted {
        println!(
            "  {:>7.1}s  lane {}  {:<6}  {}",
            r.took.as_secs_f64(),
            r.lane,
            if r.passed { "ok" } else { "FAILED" },
            r.label
        );
    }
    for lane in 1..=lanes {
        let total: Duration = results
            .iter()
            .filter(|r| r.lane == lane)
            .map(|r| r.took)
            .sum();
        println!("  lane {lane}: {:.1}s busy", total.as_secs_f64());
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
        assert!(parse_artifacts("{not json").is_err());
        assert_eq!(package_name("xtask 0.1.0 (path+file:///w/xtask)"), "xtask");
    }

    fn queued(name: &str, group: Option<&'static str>) -> Queued {
        Queued {
            bin: TestBin {
                package: "xtask".into(),
                name: name.into(),
                kind: "test".into(),
                src_path: PathBuf::new(),
                executable: PathBuf::new(),
                manifest_dir: PathBuf::new(),
            },
            group,
        }
    }

    #[test]
    fn a_busy_group_is_skipped_and_order_is_kept() {
        let mut q = vec![
            queued("adopt", Some("data_support")),
            queued("data_backup", Some("data_support")),
            queued("swarm_single", Some("swarm_support")),
            queued("e2e", None),
        ];
        assert_eq!(pick(&mut q, &[]).unwrap().bin.name, "adopt");
        assert_eq!(
            pick(&mut q, &["data_support"]).unwrap().bin.name,
            "swarm_single"
        );
        assert_eq!(
            pick(&mut q, &["data_support", "swarm_support"])
                .unwrap()
                .bin
                .name,
            "e2e"
        );
        assert!(pick(&mut q, &["data_support"]).is_none());
        assert_eq!(pick(&mut q, &[]).unwrap().bin.name, "data_backup");
        assert!(pick(&mut q, &[]).is_none());
        assert_eq!(
            group_of("mod common;\nmod data_support;\n"),
            Some("data_support")
        );
        assert_eq!(group_of("// mod data_support; is not declared\n"), None);
    }

    /// Every exclusive support module exists and has users; every name in
    /// SLOW_FIRST is a test file (a renamed test would silently lose its rank).
    #[test]
    fn groups_and_ranks_name_real_files() {
        let tests = crate::project_root().join("xtask/tests");
        for m in EXCLUSIVE {
            assert!(
                tests.join(m).join("mod.rs").is_file(),
                "{m} is in EXCLUSIVE but xtask/tests/{m}/mod.rs does not exist"
            );
        }
        let root = crate::project_root();
        for name in SLOW_FIRST {
            let found = ["xtask", "mixnode", "migrate"].iter().any(|c| {
                root.join(c)
                    .join("tests")
                    .join(format!("{name}.rs"))
                    .is_file()
            });
            assert!(
                found,
                "SLOW_FIRST names `{name}`, but no crate has tests/{name}.rs"
            );
        }
        let data: Vec<String> = std::fs::read_dir(&tests)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                std::fs::read_to_string(p).is_ok_and(|s| group_of(&s) == Some("data_support"))
            })
            .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(data.iter().any(|n| n == "adopt"), "{data:?}");
    }
}
