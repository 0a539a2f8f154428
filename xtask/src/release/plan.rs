//! `release plan`: check that a release can be cut from this commit and
//! print every step with its exact command, artifacts and tags; changes
//! nothing. Checks: the tree is clean, the tag `v<version>` does not exist,
//! `CHANGELOG.md` has a section for the version, `cargo xtask ci` passed on
//! this commit (its marker under `target/ci-passed/`; reported as pending, an
//! error with `--require-ci`), the signing key is there, and the registry
//! answers when `--registry` is given. Failures are printed with the plan and
//! end in one line naming each problem and what to do.

use std::fs;

use anyhow::{bail, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

use super::{
    common::{Release, LOCK, PUBLISHED, SIG, SUMS},
    publish, sign, Common,
};
use crate::{image::project_images, output::Format, process::Runner};

#[derive(clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  cargo xtask release plan
  cargo xtask release plan --version 0.2.0 --registry registry.example:5000 --format json
  cargo xtask ci && cargo xtask release plan --require-ci   # what the release workflow runs"
)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// minisign secret key to check for (else FOG_MINISIGN_KEY_FILE or FOG_MINISIGN_KEY).
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// Registry `publish` will push to; checked for reachability.
    #[arg(long, value_name = "HOST[:PORT]")]
    registry: Option<String>,
    /// Fail when `cargo xtask ci` has not passed on this commit.
    #[arg(long)]
    require_ci: bool,
}

#[derive(Serialize)]
struct Plan {
    version: String,
    revision: String,
    tag: String,
    source_date_epoch: u64,
    out: String,
    checks: Vec<Check>,
    steps: Vec<Step>,
}

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Whether a failure stops the release.
    blocking: bool,
    detail: String,
}

#[derive(Serialize)]
struct Step {
    name: &'static str,
    command: String,
    artifacts: Vec<String>,
    tags: Vec<String>,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let release = Release::load(sh, runner, &args.common)?;
    let checks = checks(sh, runner, &release, &args);
    let plan = Plan {
        version: release.version.clone(),
        revision: release.revision.clone(),
        tag: release.tag(),
        source_date_epoch: release.epoch,
        out: release.out.display().to_string(),
        steps: steps(&release, &args)?,
        checks,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&plan)?),
        Format::Table => print_table(&plan),
    }
    let errors: Vec<&str> = plan
        .checks
        .iter()
        .filter(|c| !c.ok && c.blocking)
        .map(|c| c.detail.as_str())
        .collect();
    if !errors.is_empty() {
        bail!(
            "release {} cannot be cut: {}",
            plan.version,
            errors.join("; ")
        );
    }
    Ok(())
}

fn checks(sh: &Shell, runner: &Runner, release: &Release, args: &Args) -> Vec<Check> {
    let check = |name, ok, blocking, detail: String| Check {
        name,
        ok,
        blocking,
        detail,
    };
    let mut out = Vec::new();

    let status = runner
        .read(cmd!(sh, "git status --porcelain"))
        .unwrap_or_else(|e| format!("?? {e}"));
    let dirty: Vec<&str> = status.lines().collect();
    out.push(match dirty.first() {
        None => check("clean tree", true, true, "no uncommitted changes".into()),
        Some(first) => check(
            "clean tree",
            false,
            true,
            format!(
                "the tree is dirty ({} changed, e.g. `{}`): commit or stash first",
                dirty.len(),
                first.trim()
            ),
        ),
    });

    let tag = release.tag();
    let tag_ref = format!("refs/tags/{tag}");
    out.push(
        match runner.probe(cmd!(sh, "git rev-parse -q --verify {tag_ref}")) {
            None => check(
                "tag absent",
                true,
                true,
                format!("{tag} does not exist yet"),
            ),
            Some(_) => check(
                "tag absent",
                false,
                true,
                format!(
                    "tag {tag} already exists: bump the version in Cargo.toml or pass --version"
                ),
            ),
        },
    );

    let changelog = fs::read_to_string(release.root.join("CHANGELOG.md")).unwrap_or_default();
    out.push(if has_section(&changelog, &release.version) {
        check(
            "changelog",
            true,
            true,
            format!("CHANGELOG.md has a {} section", release.version),
        )
    } else {
        check(
            "changelog",
            false,
            true,
            format!(
                "CHANGELOG.md has no `## [{}]` section: add one describing the release",
                release.version
            ),
        )
    });

    let marker = crate::ci_pass::ci_marker(&release.root, &release.revision);
    out.push(if marker.is_file() {
        check("ci passed", true, true, format!("`cargo xtask ci` passed on {}", release.short))
    } else {
        check(
            "ci passed",
            false,
            args.require_ci,
            format!(
                "no `cargo xtask ci` pass recorded for {}: it must pass on this commit before publishing",
                release.short
            ),
        )
    });

    out.push(
        match sign::resolve_key(args.key.as_deref(), &release.root) {
            Ok(key) => check(
                "signing key",
                true,
                true,
                format!("key from {}", key.describe()),
            ),
            Err(e) => check("signing key", false, true, e.to_string()),
        },
    );

    if let Some(registry) = &args.registry {
        out.push(match publish::check_registry(registry) {
            Ok(()) => check("registry", true, true, format!("{registry} answers")),
            Err(e) => check("registry", false, true, e.to_string()),
        });
    }
    out
}

/// Whether `changelog` has a `## [version]` or `## version` heading.
fn has_section(changelog: &str, version: &str) -> bool {
    let bracketed = format!("[{version}]");
    changelog
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .any(|heading| {
            let heading = heading.trim_start();
            let rest = heading
                .strip_prefix(&bracketed)
                .or_else(|| heading.strip_prefix(version));
            rest.is_some_and(|r| r.is_empty() || r.starts_with(' '))
        })
}

fn steps(release: &Release, args: &Args) -> Result<Vec<Step>> {
    let flags = match &args.common.version {
        Some(v) => format!(" --version {v} --out {}", release.out.display()),
        None => format!(" --out {}", release.out.display()),
    };
    let mut image_tags = Vec::new();
    for name in project_images()? {
        image_tags.push(format!("fog-compute/{name}:{}", release.version));
        image_tags.push(format!("fog-compute/{name}:{}", release.short));
    }
    let registry = args.registry.as_deref().unwrap_or("HOST[:PORT]");
    let step = |name, command: String, artifacts: &[String], tags: Vec<String>| Step {
        name,
        command,
        artifacts: artifacts.to_vec(),
        tags,
    };
    Ok(vec![
        step(
            "dist",
            format!("cargo xtask release dist{flags}"),
            &[release.archive_name(), release.sbom_name(), SUMS.into()],
            vec![],
        ),
        step(
            "images",
            format!("cargo xtask release images{flags}"),
            &[release.bundle_name(), LOCK.into(), SUMS.into()],
            image_tags.clone(),
        ),
        step(
            "sign",
            format!("cargo xtask release sign{flags}"),
            &[SIG.into()],
            vec![],
        ),
        step(
            "verify",
            format!(
                "cargo xtask release verify {} --pubkey minisign.pub",
                release.out.display()
            ),
            &[],
            vec![],
        ),
        step(
            "publish",
            format!("cargo xtask release publish{flags} --registry {registry}"),
            &[PUBLISHED.into()],
            image_tags
                .iter()
                .map(|t| format!("{registry}/{t}"))
                .collect(),
        ),
        step(
            "tag",
            format!(
                "git tag -a {} -m 'fog-compute {}' {}",
                release.tag(),
                release.version,
                release.revision
            ),
            &[],
            vec![release.tag()],
        ),
    ])
}

fn print_table(plan: &Plan) {
    println!(
        "release {} from {} (SOURCE_DATE_EPOCH={}) into {}",
        plan.version, plan.revision, plan.source_date_epoch, plan.out
    );
    println!("\nchecks:");
    let checks: Vec<[&str; 3]> = plan
        .checks
        .iter()
        .map(|c| {
            let mark = match (c.ok, c.blocking) {
                (true, _) => "  ok",
                (false, true) => "  FAIL",
                (false, false) => "  todo",
            };
            [mark, c.name, c.detail.as_str()]
        })
        .collect();
    print!("{}", crate::table::render(&[], &[], &checks));
    println!("\nsteps:");
    for (i, s) in plan.steps.iter().enumerate() {
        println!("  {}. {:<8} {}", i + 1, s.name, s.command);
        for a in &s.artifacts {
            println!("       artifact {a}");
        }
        for t in &s.tags {
            println!("       tag      {t}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changelog_sections_are_found() {
        let text =
            "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-12-01\n- first\n\n## 0.0.9\n";
        assert!(has_section(text, "0.1.0"));
        assert!(has_section(text, "0.0.9"));
        assert!(!has_section(text, "0.1"));
        assert!(!has_section(text, "0.1.00"));
        assert!(!has_section(text, "0.2.0"));
        assert!(!has_section("- 0.1.0 was good\n", "0.1.0"));
    }
}
