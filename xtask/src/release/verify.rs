//! `release verify DIR`: what a downstream operator checks, in the order they
//! would: the minisign signature of `SHA256SUMS` (with a public key from
//! `--pubkey`, `FOG_MINISIGN_PUBKEY_FILE` or the repository's `minisign.pub`),
//! every checksum it lists, the archive's listing (one top directory, no
//! absolute or `..` paths, one mtime, the binaries, docs, completions, man
//! page and compose files present), then loads the image bundle and checks
//! each project image's id against `images.lock`. The same checks work without
//! this tool: `minisign -V`, `sha256sum -c`, `tar tzf`, `docker load`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::{
    common::{Timer, LOCK, SIG, SUMS},
    dist, images, sums,
};
use crate::{image as engine, process::Runner, project_root, usage_bail};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  cargo xtask release verify target/release-artifacts/0.1.0 --pubkey fog.pub
  # the same without this tool:
  minisign -V -p fog.pub -m SHA256SUMS && sha256sum -c SHA256SUMS && docker load -i ...")]
pub struct Args {
    /// The artifact directory (default: target/release-artifacts/<workspace version>).
    dir: Option<PathBuf>,
    /// minisign public key (else FOG_MINISIGN_PUBKEY_FILE, else ./minisign.pub).
    #[arg(long, value_name = "FILE")]
    pubkey: Option<PathBuf>,
}

/// Members every release archive must have, below its top directory.
const REQUIRED: &[&str] = &[
    "bin/mixnode",
    "bin/loadgen",
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    "compose/base.yml",
    "completions/xtask.bash",
    "completions/_xtask",
    "completions/xtask.fish",
    "man/man1/xtask.1",
];

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let _timer = Timer::start("verify");
    let root = project_root();
    let dir = match args.dir {
        Some(d) => crate::absolute(d),
        None => root
            .join("target/release-artifacts")
            .join(env!("CARGO_PKG_VERSION")),
    };
    if !dir.is_dir() {
        usage_bail!(
            "{} is not a directory: pass the directory `release dist` wrote",
            dir.display()
        );
    }
    let pubkey = args
        .pubkey
        .or_else(|| std::env::var_os("FOG_MINISIGN_PUBKEY_FILE").map(PathBuf::from))
        .map(crate::absolute)
        .unwrap_or_else(|| root.join("minisign.pub"));
    if !pubkey.is_file() {
        usage_bail!(
            "public key {} does not exist: pass --pubkey FILE or set FOG_MINISIGN_PUBKEY_FILE",
            pubkey.display()
        );
    }
    let (sums_file, sig) = (dir.join(SUMS), dir.join(SIG));
    if !sig.is_file() {
        bail!(
            "{} is missing: run `cargo xtask release sign`",
            sig.display()
        );
    }
    if runner
        .probe(cmd!(
            sh,
            "minisign -V -q -p {pubkey} -m {sums_file} -x {sig}"
        ))
        .is_none()
    {
        bail!(
            "{SIG}: the signature does not verify with {} (another key, or {SUMS} was modified)",
            pubkey.display()
        );
    }
    println!("ok  signature of {SUMS} ({})", pubkey.display());

    let files = sums::check(&dir)?;
    println!("ok  {} checksums", files.len());

    let archives: Vec<&String> = files.iter().filter(|f| f.ends_with(".tar.gz")).collect();
    if archives.is_empty() {
        bail!("{SUMS} lists no .tar.gz release archive");
    }
    for archive in archives {
        let count = check_listing(&dir.join(archive))?;
        println!("ok  {archive}: {count} entries");
    }

    let Some(bundle) = files.iter().find(|f| f.ends_with("-images.tar")) else {
        bail!("{SUMS} lists no image bundle: run `cargo xtask release images` before signing");
    };
    if !files.iter().any(|f| f == LOCK) {
        bail!("{SUMS} does not cover {LOCK}");
    }
    let lock = images::read_lock(&dir)?;
    let loaded = engine::load_bundle(sh, runner, &dir.join(bundle))?;
    for locked in lock.images.iter().filter(|l| l.project) {
        if runner.dry_run {
            continue;
        }
        if !loaded.contains(&locked.image) {
            bail!("{bundle} does not hold {} that {LOCK} pins", locked.image);
        }
        let id = engine::image_id(sh, runner, &locked.image);
        if id != locked.id {
            bail!(
                "{}: loaded image id {} differs from {} in {LOCK}",
                locked.image,
                id.as_deref().unwrap_or("none"),
                locked.id.as_deref().unwrap_or("none")
            );
        }
    }
    println!(
        "ok  {bundle}: {} images loaded, ids match {LOCK}",
        loaded.len()
    );
    Ok(())
}

/// Check one archive's listing; returns the number of entries.
fn check_listing(archive: &Path) -> Result<usize> {
    let name = archive.file_name().unwrap_or_default().to_string_lossy();
    let top = name.trim_end_matches(".tar.gz");
    let listing = dist::listing(archive)?;
    let mut mtimes = listing.iter().map(|(_, m)| *m);
    let first = mtimes.next().context("the archive is empty")?;
    if mtimes.any(|m| m != first) {
        bail!("{name}: entries have different mtimes (not a reproducible archive)");
    }
    for (path, _) in &listing {
        let inside = path
            .strip_prefix(top)
            .is_some_and(|r| r.is_empty() || r.starts_with('/'));
        if !inside || path.split('/').any(|c| c == "..") {
            bail!("{name}: entry `{path}` is outside {top}/");
        }
    }
    for required in REQUIRED {
        let want = format!("{top}/{required}");
        if !listing.iter().any(|(p, _)| *p == want) {
            bail!("{name}: {want} is missing");
        }
    }
    Ok(listing.len())
}
