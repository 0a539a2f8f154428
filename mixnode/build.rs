//! Embeds the git revision in the binaries (`mixnode_build_info{revision}`,
//! `mixnode --version`): `MIXNODE_REVISION` when set (image builds outside
//! git), else `git rev-parse --short=12 HEAD`, else "unknown". Reruns when
//! HEAD moves.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MIXNODE_REVISION");
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let revision = std::env::var("MIXNODE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MIXNODE_REVISION={revision}");
}
