//! ARCHITECTURE.md: "only `xtask/src/process` starts a process, so
//! `--dry-run` and `-v` behave the same everywhere". Clippy enforces it:
//! `xtask/clippy.toml` disallows the methods that start a process
//! (`std::process::Command::{new, spawn, output, status}`, `duct::cmd`,
//! xshell's `Cmd::{run, read, read_stderr, output}`), `xtask/src/lib.rs` and
//! `main.rs` deny `clippy::disallowed_methods`, and `cargo xtask ci` runs
//! clippy, so a stray call anywhere in `xtask/src` fails CI (the package's
//! `[lints]` leave the integration tests alone). This test keeps that guard
//! honest: the configuration lists every one of those methods, both crate
//! roots deny the lint, CI runs clippy, and no other mention of the lint (an
//! `allow` or `expect`) appears in `xtask/src` outside the process module.
//! The same lint keeps `interrupt.rs` the one place that installs the
//! process's Ctrl-C handler (`ctrlc::set_handler`; the crate allows one).

use std::{fs, path::Path};

const DISALLOWED: &[&str] = &[
    "std::process::Command::new",
    "std::process::Command::spawn",
    "std::process::Command::output",
    "std::process::Command::status",
    "duct::cmd",
    "xshell::Cmd::run",
    "xshell::Cmd::read",
    "xshell::Cmd::read_stderr",
    "xshell::Cmd::output",
    "ctrlc::set_handler",
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `(file below xtask/src, line)` of every lint exception for spawning.
fn exceptions() -> Vec<(String, usize)> {
    let src = manifest_dir().join("src");
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
            if !rel.ends_with(".rs") {
                continue;
            }
            let text = fs::read_to_string(&path).unwrap();
            for (i, line) in text.lines().enumerate() {
                let root_deny = (rel == "lib.rs" || rel == "main.rs")
                    && line.trim() == "#![deny(clippy::disallowed_methods)]";
                if (line.contains("disallowed_methods") || line.contains("clippy::restriction"))
                    && !root_deny
                {
                    found.push((rel.clone(), i + 1));
                }
            }
        }
    }
    found.sort();
    found
}

#[test]
fn clippy_disallows_every_way_to_start_a_process() {
    let config = fs::read_to_string(manifest_dir().join("clippy.toml"))
        .expect("xtask/clippy.toml configures the runner lint");
    let table: Vec<&str> = config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    let table = table.join("\n");
    assert!(table.contains("disallowed-methods"), "{config}");
    for method in DISALLOWED {
        assert!(
            table.contains(&format!("path = \"{method}\"")),
            "xtask/clippy.toml no longer disallows {method}"
        );
    }
    for root in ["src/lib.rs", "src/main.rs"] {
        let text = fs::read_to_string(manifest_dir().join(root)).unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim() == "#![deny(clippy::disallowed_methods)]"),
            "xtask/{root} must deny clippy::disallowed_methods"
        );
    }
    let ci = fs::read_to_string(manifest_dir().join("src/ci/mod.rs")).unwrap();
    assert!(
        ci.contains("cargo clippy --workspace --all-targets --locked -- -D warnings"),
        "CI must run clippy with warnings as errors, or the lint guards nothing"
    );
}

#[test]
fn only_the_process_module_may_start_a_process() {
    let found = exceptions();
    let outside: Vec<_> = found
        .iter()
        .filter(|(file, _)| !file.starts_with("process/") && file != "interrupt.rs")
        .collect();
    assert!(
        outside.is_empty(),
        "lint exceptions for starting a process outside xtask/src/process (say what to run with process::Cmd and run it through process::Runner): {outside:#?}"
    );
    // Not vacuous: the process module is where duct's command is built, and
    // interrupt.rs installs the one Ctrl-C handler.
    for file in ["process/cmd.rs", "interrupt.rs"] {
        assert!(found.iter().any(|(f, _)| f == file), "{file}: {found:#?}");
    }
    assert_eq!(
        found.iter().filter(|(f, _)| f == "interrupt.rs").count(),
        1,
        "one allow in interrupt.rs: {found:#?}"
    );
}
