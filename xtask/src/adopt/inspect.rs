//! What adopt asks the engine before it changes anything: whether a volume
//! exists, its entry count and bytes (measured by a helper container that
//! mounts it read-only, with no network), the containers that use it, and a
//! Postgres image's or container's major version. Every query goes through
//! [`Runner`] and runs under `--dry-run` too, since the plan depends on it.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// A volume's contents as counted: entries (the root included) and the bytes
/// of its regular files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub entries: u64,
    pub bytes: u64,
}

/// The shell script that counts `/v`: works with GNU and busybox tools.
const COUNT: &str =
    "cd /v && find . | wc -l && find . -type f -exec stat -c %s {} + | awk '{s+=$1} END {print s+0}'";

pub fn volume_exists(sh: &Shell, runner: &Runner, name: &str) -> bool {
    runner
        .probe(cmd!(sh, "docker volume inspect {name}"))
        .is_some()
}

/// Entries and bytes of volume `name`, counted by `helper` (an image with
/// `sh`, `find`, `stat`, `awk`), the volume mounted read-only.
pub fn figures(sh: &Shell, runner: &Runner, helper: &str, name: &str) -> Result<Figures> {
    let mount = format!("{name}:/v:ro");
    let out = runner
        .read(cmd!(
            sh,
            "docker run --rm --network none --user 0 --entrypoint sh -v {mount} {helper} -c {COUNT}"
        ))
        .with_context(|| format!("cannot count the files of volume {name}"))?;
    parse_figures(&out).with_context(|| format!("volume {name}: unexpected count `{out}`"))
}

fn parse_figures(out: &str) -> Result<Figures> {
    let nums: Vec<u64> = out
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    match nums.as_slice() {
        [entries, bytes] => Ok(Figures {
            entries: *entries,
            bytes: *bytes,
        }),
        _ => bail!("two numbers expected"),
    }
}

/// `(container name, compose project label)` of every container, running or
/// not, that mounts volume `name`.
pub fn volume_users(sh: &Shell, runner: &Runner, name: &str) -> Result<Vec<(String, String)>> {
    let filter = format!("volume={name}");
    let format = "{{.Names}}\t{{.Label \"com.docker.compose.project\"}}";
    let out = runner.read(cmd!(sh, "docker ps -a --filter {filter} --format {format}"))?;
    Ok(out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (n, p) = l.split_once('\t').unwrap_or((l, ""));
            (n.to_string(), p.to_string())
        })
        .collect())
}

/// The major version in `postgres (PostgreSQL) 15.8 (Debian 15.8-1)`.
pub fn major(version: &str) -> Option<u32> {
    let after = version.split("PostgreSQL)").nth(1)?.trim();
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The major version of the server in `image`.
pub fn image_major(sh: &Shell, runner: &Runner, image: &str) -> Result<u32> {
    let out = runner
        .read(cmd!(
            sh,
            "docker run --rm --network none --entrypoint postgres {image} -V"
        ))
        .with_context(|| format!("cannot ask image {image} for its Postgres version"))?;
    major(&out).with_context(|| format!("image {image}: unexpected version `{out}`"))
}

/// The major version of the server running in container `id`.
pub fn container_major(sh: &Shell, runner: &Runner, id: &str) -> Result<u32> {
    let out = runner
        .read(cmd!(sh, "docker exec {id} postgres -V"))
        .with_context(|| format!("cannot ask container {id} for its Postgres version"))?;
    major(&out).with_context(|| format!("container {id}: unexpected version `{out}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counts_and_versions() {
        assert_eq!(
            parse_figures("12\n4096\n").unwrap(),
            Figures {
                entries: 12,
                bytes: 4096
            }
        );
        assert!(parse_figures("12").is_err());
        assert_eq!(
            major("postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg)"),
            Some(15)
        );
        assert_eq!(major("postgres (PostgreSQL) 16beta1"), Some(16));
        assert_eq!(major("nope"), None);
    }
}
