//! `cargo xtask ci`: every check CI runs, in order, each a prepared command
//! with a name and a failure message (after bevy's `tools/ci`).
//!
//! By default the first failure stops the run; `--keep-going` runs the rest
//! and reports every failure. The last line is a plain `ci: N passed, N failed`
//! summary so log readers see the outcome without scrolling. The `test`
//! check runs the test binaries in two lanes ([`lanes`]).

mod lanes;

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::Global;

/// Run fmt, clippy, the workspace tests, the fuzz harness's tests and the compose check.
///
/// Examples:
///   cargo xtask ci                       # stop at the first failing check
///   cargo xtask ci --keep-going          # run everything, report all failures
///   cargo xtask ci --only fmt --only check
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Cmd {
    /// Run every check even after one fails.
    #[arg(long)]
    keep_going: bool,
    /// Run only the named checks (repeatable). See `--list`.
    #[arg(long, value_name = "CHECK")]
    only: Vec<String>,
    /// List the checks and exit.
    #[arg(long)]
    list: bool,
    /// Run the test binaries one at a time instead of two at a time.
    #[arg(long)]
    serial: bool,
}

/// One CI step: what it is called, how to run it, what to do when it fails.
struct Check {
    name: &'static str,
    failure_hint: &'static str,
    command: Step,
}

/// How a check runs: one prepared command, or the test lanes.
enum Step {
    Cmd(fn(&Shell) -> xshell::Cmd<'_>),
    TestLanes,
}

const CHECKS: &[Check] = &[
    Check {
        name: "fmt",
        failure_hint: "run `cargo fmt --all` and commit the result",
        command: Step::Cmd(|sh| cmd!(sh, "cargo fmt --all -- --check")),
    },
    Check {
        name: "clippy",
        failure_hint: "fix the clippy findings above (warnings are errors in CI)",
        command: Step::Cmd(|sh| {
            cmd!(
                sh,
                "cargo clippy --workspace --all-targets --locked -- -D warnings"
            )
        }),
    },
    Check {
        name: "test",
        failure_hint: "a test failed; rerun it alone with `cargo test -p <crate> <name>`",
        command: Step::TestLanes,
    },
    Check {
        name: "fuzz",
        failure_hint: "the packet_unwrap fuzz harness failed on its seed inputs; see mixnode/fuzz",
        command: Step::Cmd(|sh| {
            cmd!(
                sh,
                "cargo test --locked --manifest-path mixnode/fuzz/Cargo.toml"
            )
            // The workspace's target directory: the dependencies the fuzz
            // harness shares with the workspace are built once, not twice.
            .env("CARGO_TARGET_DIR", crate::project_root().join("target"))
        }),
    },
    Check {
        name: "fuzz-compose",
        failure_hint:
            "the compose_loader fuzz harness failed on its seeds or random inputs; see crates/compose/fuzz",
        // cargo-fuzz is not installed here: the harness runs as a plain test
        // over the conformance corpus, the hostile inputs and random mutations.
        command: Step::Cmd(|sh| {
            cmd!(
                sh,
                "cargo test --locked --manifest-path crates/compose/fuzz/Cargo.toml"
            )
            // The workspace's target directory: the dependencies the fuzz
            // harness shares with the workspace are built once, not twice.
            .env("CARGO_TARGET_DIR", crate::project_root().join("target"))
        }),
    },
    Check {
        name: "check",
        failure_hint: "the compose overlays have findings; `cargo xtask check` explains each",
        // `cargo xtask check`, then promtool/amtool and `compose config` for
        // every environment when those tools are installed.
        command: Step::Cmd(|sh| cmd!(sh, "bash scripts/test-docker-configs.sh")),
    },
    Check {
        name: "claims",
        failure_hint: "TESTING.md maps a README command or promise to no test, or to one that does not exist; `cargo xtask claims` names each",
        command: Step::Cmd(|sh| cmd!(sh, "cargo xtask claims")),
    },
    Check {
        name: "compose-lint",
        failure_hint: "compose-lint found a MEDIUM or worse issue in the merged prod models; compose/README.md lists the accepted findings",
        command: Step::Cmd(|sh| cmd!(sh, "bash scripts/compose-lint.sh")),
    },
    Check {
        name: "engine-v1",
        failure_hint: "an engine end-to-end test failed under Compose v1 (`test` ran them under v2); rerun with `FOG_COMPOSE=v1 cargo test -p xtask --test <name>`",
        // The `test` check runs everything under the default flavour (v2
        // where installed); this runs the engine and conformance tests again
        // under v1, selected by the one variable the xtask reads (the compose
        // crate's corpus test runs both flavours itself, so `test` covered it). `--workspace`
        // keeps the `test` check's feature set, so nothing is rebuilt.
        command: Step::Cmd(|sh| {
            cmd!(
                sh,
                "cargo test --workspace --locked --no-fail-fast --test engine_switch --test engine_lifecycle --test engine_errors --test engine_offline --test conformance -- --skip corpus_matches_compose_v1_and_v2"
            )
            .env("FOG_COMPOSE", "v1")
        }),
    },
    Check {
        name: "actionlint",
        failure_hint: "a workflow under .github/workflows has findings (or actionlint is missing: `bash scripts/ci-setup.sh`)",
        command: Step::Cmd(|sh| cmd!(sh, "actionlint -no-color")),
    },
];

impl Cmd {
    pub fn run(self, sh: &Shell, global: &Global) -> Result<()> {
        let runner = crate::process::Runner::new(global);
        if self.list {
            for check in CHECKS {
                println!("{}", check.name);
            }
            return Ok(());
        }
        for name in &self.only {
            if !CHECKS.iter().any(|c| c.name == name) {
                let known: Vec<_> = CHECKS.iter().map(|c| c.name).collect();
                crate::usage_bail!(
                    "unknown check `{name}` in --only; known: {}",
                    known.join(", ")
                );
            }
        }
        let selected = CHECKS
            .iter()
            .filter(|c| self.only.is_empty() || self.only.iter().any(|n| n == c.name));

        let mut results: Vec<(&Check, bool, Duration)> = Vec::new();
        for check in selected {
            eprintln!("==> ci: {}", check.name);
            let started = Instant::now();
            let passed = match check.command {
                Step::Cmd(command) => {
                    // Echoed as xshell did; run even under --dry-run (CI only reads).
                    let cmd = command(sh);
                    eprintln!("$ {cmd}");
                    runner.stream(cmd).is_ok()
                }
                Step::TestLanes => match lanes::run(sh, &runner, self.serial) {
                    Ok(()) => true,
                    Err(e) => {
                        eprintln!("test: {e:#}");
                        false
                    }
                },
            };
            results.push((check, passed, started.elapsed()));
            if !passed && !self.keep_going {
                break;
            }
        }

        eprintln!();
        for (check, passed, elapsed) in &results {
            let status = if *passed { "ok" } else { "FAILED" };
            eprintln!(
                "  {:<8} {:<7} {:>6.1}s",
                check.name,
                status,
                elapsed.as_secs_f64()
            );
        }
        let failed: Vec<_> = results.iter().filter(|(_, passed, _)| !passed).collect();
        println!(
            "ci: {} passed, {} failed",
            results.len() - failed.len(),
            failed.len()
        );
        if failed.is_empty() {
            // `release plan` reads this: a full pass on a clean tree vouches for the commit.
            if self.only.is_empty() {
                if let Err(e) = crate::ci_pass::record_ci_pass(sh) {
                    eprintln!("ci: could not record the pass for `release plan`: {e:#}");
                }
            }
            return Ok(());
        }
        for (check, _, _) in &failed {
            eprintln!("{}: {}", check.name, check.failure_hint);
        }
        let names: Vec<_> = failed.iter().map(|(c, _, _)| c.name).collect();
        bail!("ci checks failed: {}", names.join(", "))
    }
}
