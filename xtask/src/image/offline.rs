//! `images offline`: third-party services for hosts that cannot pull. One
//! Debian bookworm rootfs (`debootstrap --variant=minbase`) with PostgreSQL 15,
//! Prometheus, Alertmanager, node-exporter and wget is built once and cached
//! under `target/offline-rootfs/<hash of the package list>/`, trimmed (docs,
//! man pages, locales, apt lists, the LLVM JIT, the default cluster), imported
//! once as `fog-offline/base:bookworm-<hash>`, and each service image is a
//! small `docker build` from `docker/offline/<service>/` on top of it, tagged
//! with the full upstream version of its Debian package in that rootfs (the
//! base image carries the versions as a label). Service images carry the
//! inputs hash label, so a second run builds nothing.

use std::{
    collections::BTreeMap,
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use xshell::Shell;

use super::{
    build::INPUTS_LABEL,
    catalog::{OfflineService, OFFLINE_SERVICES},
    digest::hash_tree,
    docker, unavailable_services, Environment,
};
use crate::process::{Cmd, Io};
use crate::{dotenv::DotEnv, global::offline_repo, process::Runner, project_root};

pub const SUITE: &str = "bookworm";
/// Label of the base image: `package=version,...` of the offline services'
/// Debian packages in the imported rootfs.
pub const VERSIONS_LABEL: &str = "org.fog-compute.offline.versions";
pub const MIRROR: &str = "http://deb.debian.org/debian";
/// Packages of the shared rootfs (debootstrap `--include`).
pub const PACKAGES: &[&str] = &[
    "postgresql-15",
    "prometheus",
    "prometheus-alertmanager",
    "prometheus-node-exporter",
    "wget",
    "ca-certificates",
];
/// Paths removed from the rootfs before import: documentation, locales, apt
/// caches, the LLVM JIT (PostgreSQL runs without it), the package's default
/// cluster (the entrypoint makes its own), and time-zone data for the UI.
const TRIM: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/i18n",
    "usr/share/lintian",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/lib/postgresql/15",
    "etc/postgresql/15/main",
    "usr/lib/postgresql/15/lib/bitcode",
    "usr/lib/postgresql/15/lib/llvmjit.so",
    "usr/lib/postgresql/15/lib/llvmjit_types.bc",
    "usr/lib/x86_64-linux-gnu/libLLVM-14.so.1",
    "usr/lib/x86_64-linux-gnu/libz3.so.4",
    "usr/share/javascript/moment-timezone/data",
];

#[derive(clap::Args)]
pub struct Args {
    /// Build only these services (postgres, prometheus, alertmanager, node-exporter).
    #[arg(long, value_name = "SERVICE")]
    only: Vec<String>,
    /// Rebuild the service images even when their inputs are unchanged.
    #[arg(long)]
    force: bool,
    /// Debootstrap and import the base again (picks up Debian point releases).
    #[arg(long)]
    refresh: bool,
    /// Do not point the env file's image variables at the offline images.
    #[arg(long)]
    no_env: bool,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let mut wanted: Vec<&'static OfflineService> = Vec::new();
    for name in &args.only {
        match OFFLINE_SERVICES.iter().find(|s| s.name == name) {
            Some(s) => wanted.push(s),
            None => crate::usage_bail!(
                "--only {name}: no offline image for `{name}`; offline images exist for: {}",
                OFFLINE_SERVICES
                    .iter()
                    .map(|s| s.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    if wanted.is_empty() {
        wanted = OFFLINE_SERVICES.iter().collect();
    }
    if args.refresh {
        refresh_base(sh, runner)?;
    }
    let built = build_services(sh, runner, &wanted, args.force, args.refresh, !args.quiet)?;
    if !runner.dry_run {
        // Every service image is the shared base plus a few kB of its own.
        let base = base_image();
        let base_size = docker::image_size(sh, runner, &base).unwrap_or(0);
        println!("{:<42} {:>9} {:>10} {:>8}", "IMAGE", "SIZE", "OWN", "BUILD");
        println!(
            "{base:<42} {:>6} MB {:>10} {:>8}",
            base_size / 1_000_000,
            "-",
            "-"
        );
        for (_, image, seconds) in &built {
            let size = docker::image_size(sh, runner, image).unwrap_or(0);
            let own = size.saturating_sub(base_size);
            let how = seconds.map_or("cached".into(), |s| format!("{s:.1}s"));
            println!(
                "{image:<42} {:>6} MB {:>7} kB {how:>8}",
                size / 1_000_000,
                own / 1_000
            );
        }
    }
    if !args.no_env {
        let updates: Vec<(String, String)> = super::image_vars(&project_root())?
            .into_iter()
            .filter_map(|v| match v.source {
                super::Source::Upstream(Some(s)) => built
                    .iter()
                    .find(|(b, _, _)| *b == s)
                    .map(|(_, image, _)| (v.var, image.clone())),
                _ => None,
            })
            .collect();
        point_env_at(runner, &project_root(), &updates)?;
    }
    let all: Environment = super::ALL_ENV.parse().expect("valid environment");
    eprintln!(
        "warning: no offline image for {} (Debian has no package): offline environments start without them",
        unavailable_services(&all)?.join(", ")
    );
    Ok(())
}

/// One offline service image: the service, its image, its build time in
/// seconds (`None` when it was up to date).
pub type Built = (&'static OfflineService, String, Option<f64>);

/// Build the offline images for `services`.
pub fn build_services(
    sh: &Shell,
    runner: &Runner,
    services: &[&'static OfflineService],
    force: bool,
    fresh_base: bool,
    progress: bool,
) -> Result<Vec<Built>> {
    let base = ensure_base(sh, runner, fresh_base, progress)?;
    let versions = base_versions(sh, runner, &base)?;
    let mut out = Vec::new();
    for service in services {
        let image = service_image(service, versions.as_ref())?;
        let context = project_root().join("docker/offline").join(service.name);
        // The base's id, not just its tag: a refreshed base rebuilds the services.
        let base_id = docker::image_id(sh, runner, &base).unwrap_or_else(|| base.clone());
        let hash = hash_tree(&context, &base_id)?;
        let current = docker::image_labels(sh, runner, &image);
        if !force && current.as_ref().and_then(|l| l.get(INPUTS_LABEL)) == Some(&hash) {
            out.push((*service, image, None));
            continue;
        }
        let started = Instant::now();
        let bar = docker::bar(progress, None, format!("docker build {image}"));
        let args = [
            "build".to_string(),
            "--quiet".into(),
            "--build-arg".into(),
            format!("BASE={base}"),
            "--label".into(),
            format!("{INPUTS_LABEL}={hash}"),
            "--label".into(),
            format!(
                "org.opencontainers.image.version={}",
                image.rsplit_once(':').map_or("", |(_, tag)| tag)
            ),
            "-t".into(),
            image.clone(),
            context.display().to_string(),
        ];
        let result = docker::run_quiet(runner, &args);
        bar.finish_and_clear();
        result?;
        out.push((*service, image, Some(started.elapsed().as_secs_f64())));
    }
    Ok(out)
}

/// The base image of the current package list.
pub fn base_image() -> String {
    format!("{}/base:{SUITE}-{}", offline_repo(), rootfs_key())
}

/// `service`'s image for the package versions of the base (its pattern,
/// `15.*-bookworm`, when they are not known: a dry run before the first import).
pub fn service_image(
    service: &OfflineService,
    versions: Option<&BTreeMap<String, String>>,
) -> Result<String> {
    let Some(versions) = versions else {
        return Ok(service.image_pattern());
    };
    let version = versions.get(service.package).with_context(|| {
        format!(
            "package {} is not in the offline base image: run `cargo xtask images offline --refresh`",
            service.package
        )
    })?;
    check_version(service, version)?;
    Ok(service.image(version))
}

/// The offline services' package versions in `base`: its label, or for a
/// base imported before the label existed, `dpkg-query` inside it. `None`
/// when the base is not in the engine (or in a dry run, for the old base).
pub fn base_versions(
    sh: &Shell,
    runner: &Runner,
    base: &str,
) -> Result<Option<BTreeMap<String, String>>> {
    let labels = docker::image_labels(sh, runner, base).unwrap_or_default();
    if let Some(label) = labels.get(VERSIONS_LABEL) {
        return Ok(Some(parse_versions(label)));
    }
    if runner.dry_run || !docker::image_exists(sh, runner, base) {
        return Ok(None);
    }
    let format = "${Package}=${Version},";
    let packages: Vec<&str> = OFFLINE_SERVICES.iter().map(|s| s.package).collect();
    let listed = runner
        .probe(xshell::cmd!(
            sh,
            "docker run --rm --network none --entrypoint dpkg-query {base} -W -f {format} {packages...}"
        ))
        .with_context(|| format!("reading the package versions in {base}"))?;
    Ok(Some(parse_versions(&listed)))
}

/// `package=version,...` (the label's form) as a map.
fn parse_versions(text: &str) -> BTreeMap<String, String> {
    text.split(',')
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(p, v)| (p.to_string(), v.to_string()))
        .collect()
}

/// Point the env file's image variables at offline images. The env file is
/// `crate::dotenv`'s: created from `.env.example` with fresh secrets when
/// missing, rewritten atomically (0600) keeping its other lines.
pub fn point_env_at(runner: &Runner, root: &Path, updates: &[(String, String)]) -> Result<()> {
    if updates.is_empty() {
        return Ok(());
    }
    let mut dotenv = DotEnv::ensure(root, runner.dry_run)?;
    let values: Vec<(&str, String)> = updates
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    dotenv.update(&values, runner.dry_run)?;
    if !runner.dry_run {
        eprintln!(
            "{}: {}",
            dotenv.path.display(),
            updates
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    Ok(())
}

/// The key of the rootfs cache of the current offline repository
/// ([`offline_repo`]): see [`rootfs_key_for`].
pub fn rootfs_key() -> String {
    rootfs_key_for(&offline_repo())
}

/// The key of the rootfs cache: a hash of everything that shapes the rootfs,
/// and of the repository its images are tagged under (another repository is
/// a build of its own, from debootstrap on; the default adds nothing, so
/// existing caches stay valid).
pub fn rootfs_key_for(repo: &str) -> String {
    key_of(
        [SUITE, MIRROR]
            .into_iter()
            .chain((repo != "fog-offline").then_some(repo))
            .chain(PACKAGES.iter().copied())
            .chain(TRIM.iter().copied()),
    )
}

/// The first 12 hex digits of the sha256 of `parts`, each ended by a NUL (so
/// `["ab"]` and `["a", "b"]` differ).
fn key_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())[..12].to_string()
}

/// Drop the cached rootfs and untag the base image, so the next build
/// debootstraps and imports afresh. Service images are rebuilt because their
/// inputs hash covers the base image's id.
fn refresh_base(sh: &Shell, runner: &Runner) -> Result<()> {
    let key = rootfs_key();
    let cached = project_root().join("target/offline-rootfs").join(&key);
    let base = format!("{}/base:{SUITE}-{key}", offline_repo());
    if runner.dry_run {
        println!("rm -rf {}", cached.display());
    } else if cached.exists() {
        super::mounts::remove_tree(&cached)?;
    }
    if docker::image_exists(sh, runner, &base) {
        runner.run(xshell::cmd!(sh, "docker rmi --no-prune {base}"))?;
    }
    Ok(())
}

/// The base image, imported from the cached rootfs when it is not in the engine.
/// `fresh` ignores the cached rootfs and base image (after `--refresh`, which
/// only removed them for real outside `--dry-run`).
fn ensure_base(sh: &Shell, runner: &Runner, fresh: bool, progress: bool) -> Result<String> {
    let key = rootfs_key();
    let base = base_image();
    if !fresh && docker::image_exists(sh, runner, &base) {
        return Ok(base);
    }
    let rootfs = ensure_rootfs(runner, &key, fresh, progress)?;
    let versions = if runner.dry_run && !rootfs.is_dir() {
        "<package=version,... from the rootfs>".to_string()
    } else {
        check_versions(&rootfs)?
    };
    let size = tree_size(&rootfs);
    let started = Instant::now();
    let bar = docker::bar(progress, Some(size), format!("docker import {base}"));
    let mut tar = Cmd::new("tar");
    tar.args(["--numeric-owner", "-C"])
        .arg(&rootfs)
        .args(["-c", "."]);
    let mut import = Cmd::new("docker");
    import.args([
        "import",
        "--change",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8",
        "--change",
        "CMD [\"/bin/bash\"]",
        "--change",
        &format!("LABEL {VERSIONS_LABEL}={versions}"),
        "-",
        &base,
    ]);
    let result = docker::pipe(runner, tar, import, &bar);
    bar.finish_and_clear();
    result?;
    if !runner.dry_run {
        eprintln!(
            "imported {base} ({} MB) in {:.1}s",
            size / 1_000_000,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(base)
}

/// Removes the `*.partial-<pid>` trees of runs that are gone (killed or
/// failed), with whatever debootstrap left mounted in them; a live run's
/// tree is left alone.
fn remove_dead_partials(cache: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(cache) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".partial-") else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            eprintln!(
                "removing {} (left by an interrupted build)",
                entry.path().display()
            );
            super::mounts::remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

/// The trimmed rootfs, built by debootstrap on first use and cached by key.
fn ensure_rootfs(runner: &Runner, key: &str, fresh: bool, progress: bool) -> Result<PathBuf> {
    let cache = project_root().join("target/offline-rootfs");
    let done = cache.join(key);
    if !fresh && done.join("rootfs/etc/debian_version").is_file() {
        return Ok(done.join("rootfs"));
    }
    let partial = cache.join(format!("{key}.partial-{}", std::process::id()));
    let rootfs = partial.join("rootfs");
    let include = format!("--include={}", PACKAGES.join(","));
    let program = match super::debootstrap::ensure_here(runner) {
        Ok(program) => program,
        Err(e) if runner.dry_run => {
            println!("# {e}");
            PathBuf::from("debootstrap")
        }
        Err(e) => return Err(e),
    };
    let mut debootstrap = Cmd::new(&program);
    debootstrap
        .args(["--variant=minbase", &include, SUITE])
        .arg(&rootfs)
        .arg(MIRROR);
    let line = format!(
        "debootstrap --variant=minbase {include} {SUITE} {} {MIRROR}",
        rootfs.display()
    );
    if runner.dry_run {
        println!("{line}");
        println!(
            "# check package versions, trim {} paths (docs, man, locales, apt lists, LLVM JIT), mv {} {}",
            TRIM.len(),
            partial.display(),
            done.display()
        );
        return Ok(done.join("rootfs"));
    }
    remove_dead_partials(&cache)?;
    super::mounts::remove_tree(&partial)?;
    fs::create_dir_all(&partial)?;
    let started = Instant::now();
    let bar = docker::bar(progress, None, "debootstrap".into());
    let log_path = partial.join("debootstrap.log");
    let mut child = runner
        .spawn(
            debootstrap
                .stdout(Io::Piped)
                .stderr(fs::File::create(&log_path)?),
        )
        .context("starting debootstrap")?;
    let mut tail = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        bar.set_message(format!("debootstrap: {}", line.trim_start_matches("I: ")));
        tail.push(line);
    }
    let status = child.wait()?;
    bar.finish_and_clear();
    // A failed debootstrap can leave proc and sys mounted in the rootfs.
    super::mounts::detach_below(&rootfs)?;
    if !status.success() {
        let _ = fs::remove_dir_all(&rootfs); // keep only the log
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        let last: Vec<&str> = tail
            .iter()
            .map(String::as_str)
            .chain(log.lines())
            .rev()
            .take(8)
            .collect();
        bail!(
            "`{line}` failed ({status}); last lines:\n{}\n(full log: {}; check that deb.debian.org is reachable)",
            last.into_iter().rev().collect::<Vec<_>>().join("\n"),
            log_path.display()
        );
    }
    let debootstrap_secs = started.elapsed().as_secs_f64();
    check_versions(&rootfs)?;
    for path in TRIM {
        let full = rootfs.join(path);
        let removed = if full.is_dir() {
            fs::remove_dir_all(&full)
        } else {
            fs::remove_file(&full)
        };
        if let Err(e) = removed {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(e).with_context(|| format!("trimming {}", full.display()));
            }
        }
    }
    if done.join("rootfs/etc/debian_version").is_file() {
        // Another run finished the same rootfs first: keep theirs.
        super::mounts::remove_tree(&partial)?;
    } else {
        fs::rename(&partial, &done)
            .with_context(|| format!("renaming {} to {}", partial.display(), done.display()))?;
    }
    eprintln!(
        "debootstrap {SUITE} in {debootstrap_secs:.1}s; rootfs {} MB after trimming, cached in {}",
        tree_size(&done.join("rootfs")) / 1_000_000,
        done.display()
    );
    Ok(done.join("rootfs"))
}

/// The offline services' package versions in the rootfs as `package=version,...`
/// (the base image's label); fails when one no longer has its pinned prefix.
fn check_versions(rootfs: &Path) -> Result<String> {
    let status = fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .context("reading the rootfs's dpkg status")?;
    let mut pairs = Vec::new();
    for service in OFFLINE_SERVICES {
        let version = package_version(&status, service.package)
            .with_context(|| format!("package {} is not in the rootfs", service.package))?;
        check_version(service, &version)?;
        pairs.push(format!("{}={version}", service.package));
    }
    Ok(pairs.join(","))
}

fn check_version(service: &OfflineService, version: &str) -> Result<()> {
    if !version.starts_with(service.version_prefix) {
        bail!(
            "Debian's {} is {version} but {} pins {}*: update `version_prefix` in xtask/src/image/catalog.rs",
            service.package,
            service.repository(),
            service.version_prefix
        );
    }
    Ok(())
}

fn package_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let mut lines = stanza.lines();
        lines.find(|l| *l == format!("Package: {package}"))?;
        stanza
            .lines()
            .find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
    })
}

fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions_come_from_dpkg_status() {
        let status = "Package: wget\nStatus: install ok installed\nVersion: 1.21.3-1\n\nPackage: prometheus\nVersion: 2.42.0+ds-5+deb12u1\n";
        assert_eq!(
            package_version(status, "prometheus").as_deref(),
            Some("2.42.0+ds-5+deb12u1")
        );
        assert_eq!(package_version(status, "wget").as_deref(), Some("1.21.3-1"));
        assert_eq!(package_version(status, "postgresql-15"), None);
    }

    #[test]
    fn versions_label_round_trips_into_service_images() {
        let versions =
            parse_versions("postgresql-15=15.18-0+deb12u1,prometheus=2.42.0+ds-5+deb12u1,");
        assert_eq!(versions.len(), 2);
        let postgres = &OFFLINE_SERVICES[0];
        assert_eq!(
            service_image(postgres, Some(&versions)).unwrap(),
            "fog-offline/postgres:15.18-bookworm"
        );
        assert_eq!(
            service_image(postgres, None).unwrap(),
            "fog-offline/postgres:15.*-bookworm"
        );
        let wrong = parse_versions("postgresql-15=16.1-1");
        let err = service_image(postgres, Some(&wrong))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pins 15.*"), "{err}");
        assert!(service_image(&OFFLINE_SERVICES[2], Some(&versions)).is_err());
    }

    #[test]
    fn rootfs_key_is_stable_short_and_changes_with_every_input() {
        // Stable across runs and builds: a pinned value for pinned inputs
        // (sha256 of "bookworm\0postgresql-15\0").
        assert_eq!(key_of(["bookworm", "postgresql-15"]), "ba2edeb7fb77");
        let key = rootfs_key();
        assert!(
            key.len() == 12 && key.chars().all(|c| c.is_ascii_hexdigit()),
            "{key}"
        );
        // Every input is in the key: change any one and the key changes.
        let inputs: Vec<&str> = [SUITE, MIRROR]
            .into_iter()
            .chain(PACKAGES.iter().copied())
            .chain(TRIM.iter().copied())
            .collect();
        assert_eq!(key_of(inputs.iter().copied()), key);
        for i in 0..inputs.len() {
            let mut changed = inputs.clone();
            let other = format!("{}x", changed[i]);
            changed[i] = &other;
            assert_ne!(
                key_of(changed),
                key,
                "input {i} ({}) is not in the key",
                inputs[i]
            );
        }
        assert_ne!(key_of(["ab"]), key_of(["a", "b"]), "parts are separated");
    }

    #[test]
    fn every_offline_service_has_a_build_context() {
        for service in OFFLINE_SERVICES {
            let dockerfile = project_root()
                .join("docker/offline")
                .join(service.name)
                .join("Dockerfile");
            assert!(dockerfile.is_file(), "{} is missing", dockerfile.display());
        }
    }
}
