//! Helpers shared by the integration tests: run the built `xtask` binary and
//! read its JSON findings as (rule, file name, line) facts.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `xtask/` (the crate directory); fixtures live below `tests/fixtures`.
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    crate_dir().join("tests/fixtures").join(rel)
}

/// Run `cargo xtask <args>` (the built binary) from the crate directory.
pub fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(crate_dir())
        .output()
        .expect("run the xtask binary")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One finding reduced to what tests assert: rule id, file name, line.
pub type Fact = (String, String, Option<u64>);

/// Run `check --format json` with `args` and return the exit code and facts.
pub fn check_facts(args: &[&str]) -> (i32, BTreeSet<Fact>) {
    let mut all = vec!["check", "--format", "json"];
    all.extend_from_slice(args);
    let out = xtask(&all);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check printed no JSON ({e}): {}\n{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut facts = BTreeSet::new();
    for env in doc["environments"].as_array().expect("environments array") {
        for f in env["findings"].as_array().expect("findings array") {
            let file = f["file"].as_str().map(|p| {
                Path::new(p)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            });
            facts.insert((
                f["rule"].as_str().unwrap().to_string(),
                file.unwrap_or_default(),
                f["line"].as_u64(),
            ));
        }
    }
    (out.status.code().unwrap_or(-1), facts)
}

pub fn fact(rule: &str, file: &str, line: u64) -> Fact {
    (rule.to_string(), file.to_string(), Some(line))
}
