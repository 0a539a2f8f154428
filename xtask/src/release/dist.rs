//! `release dist`: the reproducible release archive. Builds `mixnode` and
//! `loadgen` statically linked (`+crt-static`) for the host triple with
//! `SOURCE_DATE_EPOCH` from the commit, `--remap-path-prefix` (and the C
//! compiler's `-ffile-prefix-map`) for the source dir, cargo home and target
//! dir, no debug info; packs them with the tracked README, licence, changelog,
//! `.env.example` and compose overlays with their configs, plus completions
//! and man pages, into `fog-compute-<version>-<target>.tar.gz` with the `tar`
//! and `flate2` crates: entries sorted, mtime = commit time, uid/gid 0. Then
//! the CycloneDX SBOM and `SHA256SUMS`. Two checkouts of one commit in
//! different folders give byte-identical archives (`tests/release_repro.rs`).

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use flate2::{Compression, GzBuilder};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::{
    common::{human_size, write_atomic, Release, Timer},
    sbom, sums, Common,
};
use crate::{manual, process::Runner};

/// The crate whose binaries the archive ships, and those binaries.
pub const CRATE: &str = "mixnode";
pub const BINARIES: &[&str] = &["mixnode", "loadgen"];
/// Tracked files and directories copied into the archive as they are.
const SHIPPED: &[&str] = &[
    "README.md",
    "LICENSE",
    "CHANGELOG.md",
    ".env.example",
    "compose",
];

#[derive(clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  cargo xtask release dist
  cargo xtask release dist --out /tmp/rel --dry-run   # print the exact build command"
)]
pub struct Args {
    #[command(flatten)]
    common: Common,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args, cli: &clap::Command) -> Result<()> {
    let _timer = Timer::start("dist");
    let release = Release::load(sh, runner, &args.common)?;
    let built = build(sh, runner, &release)?;
    if runner.dry_run {
        println!(
            "# pack {} and the tracked {} into {}",
            BINARIES.join(", "),
            SHIPPED.join(", "),
            release.out.join(release.archive_name()).display()
        );
        println!(
            "# write {} and {}",
            release.sbom_name(),
            super::common::SUMS
        );
        return Ok(());
    }
    let archive = pack(sh, runner, &release, &built, cli)?;
    let sbom = sbom::write(sh, runner, &release)?;
    sums::update(&release.out, &[archive.clone(), sbom.clone()])?;
    for file in [&archive, &sbom] {
        let size = fs::metadata(release.out.join(file))?.len();
        println!("{:<48} {:>9}", file, human_size(size));
    }
    println!("wrote {}", release.out.display());
    Ok(())
}

#[derive(Deserialize)]
struct Metadata {
    target_directory: PathBuf,
}

/// The reproducible release build; returns the directory holding the binaries.
pub fn build(sh: &Shell, runner: &Runner, release: &Release) -> Result<PathBuf> {
    let bins: Vec<String> = BINARIES.iter().map(|b| format!("--bin={b}")).collect();
    build_with(sh, runner, release, &[format!("-p={CRATE}")], &bins)
}

/// The same reproducible build for other crates' binaries (every project
/// image's crate, for `release images`).
pub fn build_crates(
    sh: &Shell,
    runner: &Runner,
    release: &Release,
    crates: &[String],
) -> Result<PathBuf> {
    let packages: Vec<String> = crates.iter().map(|c| format!("-p={c}")).collect();
    build_with(sh, runner, release, &packages, &["--bins".to_string()])
}

fn build_with(
    sh: &Shell,
    runner: &Runner,
    release: &Release,
    packages: &[String],
    bins: &[String],
) -> Result<PathBuf> {
    let metadata: Metadata = serde_json::from_str(&runner.read(cmd!(
        sh,
        "cargo metadata --no-deps --format-version 1 --offline"
    ))?)
    .context("parsing `cargo metadata`")?;
    let target_dir = metadata.target_directory;
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let env = build_env(release, &cargo_home, &target_dir);
    let target = &release.target;
    let mut build = cmd!(
        sh,
        "cargo build --release --locked --target {target} {packages...} {bins...}"
    );
    for (key, value) in &env {
        build = build.env(key, value);
    }
    if runner.dry_run {
        for (key, value) in &env {
            let shown = value.to_string_lossy().replace('\x1f', " ");
            println!("# env {key}={shown}");
        }
    }
    runner.run(build)?;
    Ok(target_dir.join(target).join("release"))
}

/// The environment of the reproducible build.
fn build_env(release: &Release, cargo_home: &Path, target_dir: &Path) -> Vec<(String, OsString)> {
    let remaps = [
        (release.root.as_path(), "/fog-compute"),
        (cargo_home, "/cargo"),
        (target_dir, "/target"),
    ];
    let mut rustflags = vec!["-Ctarget-feature=+crt-static".to_string()];
    let mut cflags = Vec::new();
    for (i, (from, to)) in remaps.into_iter().enumerate() {
        rustflags.push(format!("--remap-path-prefix={}={to}", from.display()));
        // C sources (aws-lc) live in the cargo home and target dir only;
        // leaving the checkout out keeps CFLAGS, and so the cached C build,
        // the same for every checkout sharing a target dir.
        if i > 0 {
            cflags.push(format!("-ffile-prefix-map={}={to}", from.display()));
        }
    }
    let triple = release.target.replace('-', "_");
    vec![
        ("SOURCE_DATE_EPOCH".into(), release.epoch.to_string().into()),
        (
            "CARGO_ENCODED_RUSTFLAGS".into(),
            rustflags.join("\x1f").into(),
        ),
        (format!("CFLAGS_{triple}"), cflags.join(" ").into()),
        ("CARGO_PROFILE_RELEASE_DEBUG".into(), "0".into()),
        ("CARGO_PROFILE_RELEASE_STRIP".into(), "symbols".into()),
        ("CARGO_INCREMENTAL".into(), "0".into()),
    ]
}

/// One archive member.
struct Member {
    data: Vec<u8>,
    mode: u32,
}

/// Everything the archive holds, keyed by its path below the top directory.
fn members(
    sh: &Shell,
    runner: &Runner,
    release: &Release,
    bin_dir: &Path,
    cli: &clap::Command,
) -> Result<BTreeMap<String, Member>> {
    let mut files = BTreeMap::new();
    for bin in BINARIES {
        let path = bin_dir.join(bin);
        let data = fs::read(&path)
            .with_context(|| format!("reading {} (did the build make it?)", path.display()))?;
        files.insert(format!("bin/{bin}"), Member { data, mode: 0o755 });
    }
    let listing = runner.read(cmd!(sh, "git ls-files -z -- {SHIPPED...}"))?;
    for rel in listing.split('\0').filter(|p| !p.is_empty()) {
        let path = release.root.join(rel);
        let data = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let exec = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&path)?.permissions());
        let mode = if exec & 0o111 != 0 { 0o755 } else { 0o644 };
        files.insert(rel.to_string(), Member { data, mode });
    }
    for required in ["README.md", "LICENSE", "CHANGELOG.md"] {
        if !files.contains_key(required) {
            bail!("{required} is not tracked by git: commit it before building a release");
        }
    }
    for (shell, name) in manual::Target::SHELLS {
        files.insert(
            format!("completions/{name}"),
            Member {
                data: manual::script(cli, shell),
                mode: 0o644,
            },
        );
    }
    for (name, page) in manual::man_pages(cli)? {
        files.insert(
            format!("man/man1/{name}"),
            Member {
                data: page,
                mode: 0o644,
            },
        );
    }
    Ok(files)
}

/// Write the archive atomically; returns its file name.
fn pack(
    sh: &Shell,
    runner: &Runner,
    release: &Release,
    bin_dir: &Path,
    cli: &clap::Command,
) -> Result<String> {
    let files = members(sh, runner, release, bin_dir, cli)?;
    let bytes = archive_bytes(&release.archive_dir(), release.epoch, &files)?;
    let name = release.archive_name();
    write_atomic(&release.out.join(&name), &bytes)?;
    Ok(name)
}

/// A gzip-compressed tar of `files` below `top/`: directories first where
/// they sort, every entry with mtime `epoch`, uid/gid 0, owner `root`.
fn archive_bytes(top: &str, epoch: u64, files: &BTreeMap<String, Member>) -> Result<Vec<u8>> {
    let mut dirs = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(format!("{}/", p.display()));
            parent = p.parent();
        }
    }
    let mut entries: BTreeMap<String, Option<&Member>> = BTreeMap::new();
    entries.insert(String::new(), None);
    entries.extend(dirs.into_iter().map(|d| (d, None)));
    entries.extend(files.iter().map(|(p, m)| (p.clone(), Some(m))));

    let gz = GzBuilder::new()
        .mtime(epoch as u32)
        .write(Vec::new(), Compression::best());
    let mut tar = tar::Builder::new(gz);
    for (path, member) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(epoch);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root")?;
        header.set_groupname("root")?;
        let full = format!("{top}/{path}");
        match member {
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                tar.append_data(&mut header, &full, std::io::empty())?;
            }
            Some(m) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(m.mode);
                header.set_size(m.data.len() as u64);
                tar.append_data(&mut header, &full, m.data.as_slice())?;
            }
        }
    }
    Ok(tar.into_inner()?.finish()?)
}

/// The member paths of a release archive (for `verify`), with their mtimes.
pub fn listing(archive: &Path) -> Result<Vec<(String, u64)>> {
    let file = fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut out = Vec::new();
    for entry in tar.entries()? {
        let entry =
            entry.with_context(|| format!("{}: truncated or not a tar.gz", archive.display()))?;
        let path = entry.path()?.to_string_lossy().into_owned();
        out.push((path, entry.header().mtime()?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BTreeMap<String, Member> {
        let mut files = BTreeMap::new();
        files.insert(
            "z.txt".into(),
            Member {
                data: b"z".to_vec(),
                mode: 0o644,
            },
        );
        files.insert(
            "a/b/c".into(),
            Member {
                data: b"c".to_vec(),
                mode: 0o755,
            },
        );
        files
    }

    #[test]
    fn archive_is_deterministic_sorted_and_stamped() {
        let one = archive_bytes("top", 1_700_000_000, &sample()).unwrap();
        let two = archive_bytes("top", 1_700_000_000, &sample()).unwrap();
        assert_eq!(one, two);
        let dir = std::env::temp_dir().join(format!("xtask-dist-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.tar.gz");
        fs::write(&path, &one).unwrap();
        let listed = listing(&path).unwrap();
        let names: Vec<&str> = listed.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            ["top/", "top/a/", "top/a/b/", "top/a/b/c", "top/z.txt"]
        );
        assert!(listed.iter().all(|(_, m)| *m == 1_700_000_000));
        fs::write(&path, &one[..one.len() / 2]).unwrap();
        assert!(listing(&path).is_err(), "a truncated archive is an error");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn build_env_remaps_every_prefix() {
        let release = Release {
            root: "/src/a".into(),
            version: "1.0.0".into(),
            revision: "0".repeat(40),
            short: "0000000".into(),
            epoch: 5,
            target: "x86_64-unknown-linux-gnu".into(),
            out: "/tmp/out".into(),
        };
        let env = build_env(&release, Path::new("/h/.cargo"), Path::new("/t"));
        let get = |k: &str| {
            env.iter()
                .find(|(n, _)| n == k)
                .unwrap()
                .1
                .to_string_lossy()
                .into_owned()
        };
        let flags = get("CARGO_ENCODED_RUSTFLAGS");
        for want in [
            "+crt-static",
            "/src/a=/fog-compute",
            "/h/.cargo=/cargo",
            "/t=/target",
        ] {
            assert!(flags.contains(want), "{flags}");
        }
        let cflags = get("CFLAGS_x86_64_unknown_linux_gnu");
        assert!(
            cflags.contains("-ffile-prefix-map=/h/.cargo=/cargo"),
            "{cflags}"
        );
        assert!(!cflags.contains("/src/a"), "{cflags}");
        assert_eq!(get("SOURCE_DATE_EPOCH"), "5");
    }
}
