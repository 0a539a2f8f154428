//! ARCHITECTURE.md: "every mutating external command goes through
//! `process::Runner`, so `--dry-run` and `-v` behave the same everywhere".
//! A source scan of `xtask/src`: every place that executes a process itself
//! (`.spawn()`, `.output()`, `.status()`, or `.run()`/`.read()` on an xshell
//! command, outside `process.rs` and outside `runner.*(..)` calls) must be a
//! reviewed entry of [`ALLOWED`]: read-only queries, local temp/staging files,
//! or (for pipes and streams that `Runner` cannot express) a function that
//! checks `runner.dry_run` itself and prints the command. A new direct call
//! fails this test until it goes through `Runner` or is reviewed here; an
//! entry that no longer matches fails it too.

use std::{collections::BTreeSet, fs, path::Path};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Changes nothing outside the process (queries, logs, `ldd`, CI steps).
    ReadOnly,
    /// Writes only the command's own temp or staging files.
    Local,
    /// Mutates the engine or the host; the function honours `runner.dry_run`.
    ChecksDryRun,
}

/// (file below xtask/src, enclosing fn, kind, why).
const ALLOWED: &[(&str, &str, Kind, &str)] = &[
    (
        "backup/wal.rs",
        "run",
        Kind::ReadOnly,
        "`backup wal --to`: `docker run --rm --network none` with the archive volume mounted read-only, `tar -cf -` of finished files into this process (under --dry-run printed instead); uploads go to the bucket, nothing local is changed",
    ),
    (
        "bench/swarm.rs",
        "run_once",
        Kind::ChecksDryRun,
        "`cargo test --test swarm_cluster` with CI=true: the scenario's own harness builds and removes its swarm; a dry run prints the command",
    ),
    (
        "restore/volume.rs",
        "shell_image",
        Kind::ChecksDryRun,
        "`docker run --rm --network none` probing an image for sh, cp and find (skipped under --dry-run)",
    ),
    (
        "restore/volume.rs",
        "fill",
        Kind::ChecksDryRun,
        "a gunzipped archive piped into `docker cp -` of a created helper, then read back with `docker cp` to count entries; printed under --dry-run",
    ),
    (
        "restore/volume.rs",
        "swap",
        Kind::ChecksDryRun,
        "the copy-aside-and-swap helper whose exit code says what state the volume is in (Runner keeps no exit code); printed under --dry-run",
    ),
    (
        "backup/recover.rs",
        "recover_volume",
        Kind::ChecksDryRun,
        "the restartable swap helper run again for a killed volume restore; its exit code says which state the volume is in (Runner keeps no exit code); printed under --dry-run",
    ),
    (
        "restore/volume.rs",
        "remove_volume",
        Kind::ChecksDryRun,
        "best-effort `docker volume rm` of the restore's own scratch volumes",
    ),
    (
        "bench/betanet.rs",
        "run",
        Kind::ChecksDryRun,
        "loadgen in the bench's own throwaway project: a dry run prints it through Runner and skips it; its exit 1 (packets lost) is a measurement",
    ),
    (
        "bench/backup/seaweed.rs",
        "start",
        Kind::Local,
        "the bench's own SeaweedFS server on 127.0.0.1 (free ports, data in the bench's temp folder), stopped by its guard; the bench refuses --dry-run",
    ),
    (
        "release/sign.rs",
        "run",
        Kind::ChecksDryRun,
        "minisign with the key password piped on stdin, which Runner cannot express; a dry run returns before it",
    ),
    (
        "backup/drill.rs",
        "wait_ready",
        Kind::ReadOnly,
        "pg_isready, docker inspect and docker logs of the drill container",
    ),
    (
        "backup/postgres.rs",
        "open",
        Kind::ReadOnly,
        "the snapshot session: psql (docker exec -i) holding a READ ONLY REPEATABLE READ transaction open while pg_dump reads its exported snapshot; backup() prints it under --dry-run",
    ),
    (
        "backup/stream.rs",
        "from_child",
        Kind::Local,
        "pg_dump / docker cp out of a container into the backup's own temp file; callers print under --dry-run",
    ),
    (
        "backup/stream.rs",
        "from_fifo",
        Kind::Local,
        "a GNU tar helper writing a volume into the backup's own named pipe, read into the backup's temp file; callers print under --dry-run",
    ),
    (
        "backup/stream.rs",
        "into_fifo",
        Kind::ChecksDryRun,
        "an archive fed through a named pipe into a GNU tar helper extracting into a restore's fresh volume; printed under --dry-run",
    ),
    (
        "backup/stream.rs",
        "into_child",
        Kind::ChecksDryRun,
        "a file into pg_restore's stdin (listing, drill, restore) with a byte bar",
    ),
    (
        "adopt/set.rs",
        "stream_to_file",
        Kind::ChecksDryRun,
        "pg_dump / tar out of the old stack into the adopt backup set's temp file, hashed in the same pass; printed under --dry-run",
    ),
    (
        "backup/volume.rs",
        "drop",
        Kind::Local,
        "docker rm -f -v of the backup's, restore's or drill's own helper container (never created under --dry-run)",
    ),
    (
        "migrate/mod.rs",
        "print_output",
        Kind::ReadOnly,
        "one-off migrate status / verify / up --dry-run: reads the history, output passed through",
    ),
    (
        "psql.rs",
        "capture",
        Kind::ChecksDryRun,
        "docker exec psql/pg_dump and docker run/create with captured output",
    ),
    (
        "psql.rs",
        "run",
        Kind::ChecksDryRun,
        "interactive psql with inherited stdio and exit status",
    ),
    (
        "images/docker.rs",
        "pipe",
        Kind::ChecksDryRun,
        "`a | b` with a progress bar (docker import, docker load)",
    ),
    (
        "images/docker.rs",
        "run_quiet",
        Kind::ChecksDryRun,
        "docker build with captured output",
    ),
    (
        "images/mod.rs",
        "can_pull",
        Kind::ChecksDryRun,
        "docker pull with a time limit",
    ),
    (
        "images/offline.rs",
        "ensure_rootfs",
        Kind::ChecksDryRun,
        "debootstrap with streamed progress",
    ),
    (
        "images/bundle.rs",
        "save_bundle",
        Kind::ChecksDryRun,
        "tar of the staged bundle, after the dry-run return",
    ),
    (
        "images/bundle.rs",
        "save_archive",
        Kind::Local,
        "docker save | gzip into the staging dir; only called by `save` after its dry-run return",
    ),
    (
        "images/bundle.rs",
        "load_bundle",
        Kind::Local,
        "tar -x of a bundle into a temp dir, before verifying it",
    ),
    (
        "images/build.rs",
        "strip_debug_info",
        Kind::Local,
        "strip a staged copy in target/docker-context",
    ),
    ("images/build.rs", "shared_libraries", Kind::ReadOnly, "ldd"),
    (
        "engine/mod.rs",
        "run_timeout",
        Kind::ReadOnly,
        "docker/compose version and info probes",
    ),
    (
        "engine/containers.rs",
        "tail_logs",
        Kind::ReadOnly,
        "docker logs",
    ),
    (
        "logs.rs",
        "run",
        Kind::ReadOnly,
        "compose logs [-f], streamed to the terminal",
    ),
    (
        "ci/mod.rs",
        "run",
        Kind::ReadOnly,
        "the CI steps (cargo fmt/clippy/test, check scripts)",
    ),
    (
        "ci/lanes.rs",
        "run",
        Kind::ReadOnly,
        "the CI test check: `cargo test --no-run` (the build) and `cargo test --doc`",
    ),
    (
        "ci/lanes.rs",
        "run_one",
        Kind::ReadOnly,
        "the CI test check: one test binary, its output captured and printed whole",
    ),
    (
        "report/live.rs",
        "free_subnets",
        Kind::ReadOnly,
        "docker network inspect, exit status ignored",
    ),
    (
        "report/sampler.rs",
        "start",
        Kind::ReadOnly,
        "docker stats stream",
    ),
    (
        "comparison/spec.rs",
        "read_at_revision",
        Kind::ReadOnly,
        "git show of a file at a revision",
    ),
    (
        "bench/check.rs",
        "compose_config_ms",
        Kind::ReadOnly,
        "times `compose config`",
    ),
];

/// `(file, enclosing fn, line)` of every direct execution in `xtask/src`.
fn direct_calls() -> Vec<(String, String, usize)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap().display().to_string();
            if !rel.ends_with(".rs") || rel == "process.rs" {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let executes = [".spawn()", ".output()", ".status()", ".run()", ".read()"]
                    .iter()
                    .any(|m| code.contains(m));
                let via_runner = code.contains("runner.") || code.contains("runner\n");
                if executes && !via_runner {
                    found.push((rel.clone(), enclosing_fn(&lines, i), i + 1));
                }
            }
        }
    }
    found.sort();
    found
}

/// The name of the innermost `fn` declared at or above line `i`.
fn enclosing_fn(lines: &[&str], i: usize) -> String {
    lines[..=i]
        .iter()
        .rev()
        .find_map(|l| {
            let rest = l.trim_start();
            let rest = rest.strip_prefix("pub ").unwrap_or(rest);
            let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
            let rest = rest.strip_prefix("pub(super) ").unwrap_or(rest);
            let name = rest.strip_prefix("fn ")?;
            Some(name.split(['(', '<']).next()?.to_string())
        })
        .unwrap_or_default()
}

/// The text of `fn name` in `file`: from its line to the next top-level item
/// (a line starting with a letter, `//` or `#[`).
fn body_of(file: &str, name: &str) -> String {
    let text =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file)).unwrap();
    let start = text
        .lines()
        .position(|l| enclosing_fn(&[l], 0) == name)
        .unwrap_or_else(|| panic!("{file} has no fn {name}"));
    text.lines()
        .skip(start)
        .take_while({
            let mut first = true;
            move |l| {
                std::mem::take(&mut first)
                    || !l.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '#')
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_direct_process_call_outside_runner_is_reviewed_and_honours_dry_run() {
    let calls = direct_calls();
    let unreviewed: Vec<_> = calls
        .iter()
        .filter(|(file, func, _)| !ALLOWED.iter().any(|(f, n, _, _)| f == file && n == func))
        .collect();
    assert!(
        unreviewed.is_empty(),
        "process calls that bypass process::Runner (use runner.run/read/probe, or review them in ALLOWED): {unreviewed:#?}"
    );
    let used: BTreeSet<(&str, &str)> = calls
        .iter()
        .map(|(f, n, _)| (f.as_str(), n.as_str()))
        .collect();
    for (file, func, kind, why) in ALLOWED {
        assert!(
            used.contains(&(*file, *func)),
            "stale ALLOWED entry {file}::{func} ({why}): it no longer runs a process"
        );
        if *kind == Kind::ChecksDryRun {
            assert!(
                body_of(file, func).contains("runner.dry_run"),
                "{file}::{func} mutates ({why}) but never checks runner.dry_run"
            );
        }
    }
}

#[test]
fn the_scan_sees_a_direct_call_and_its_function() {
    let lines = [
        "fn outer() {",
        "    let x = 1;",
        "    Command::new(\"docker\").arg(\"rm\").status();",
        "}",
    ];
    assert_eq!(enclosing_fn(&lines, 2), "outer");
    // The real tree has direct calls (pipes, debootstrap), so the scan is not vacuous.
    assert!(direct_calls()
        .iter()
        .any(|(f, n, _)| f == "images/offline.rs" && n == "ensure_rootfs"));
}
