//! `images build`: the project's own images from `docker/<name>/`. Nothing can
//! be pulled, so images are `FROM scratch`: the crate's release binaries are
//! built on the host and staged into a build context under
//! `target/docker-context/<name>-<pid>/` (removed afterwards) together with the shared libraries `ldd`
//! finds, a minimal `/etc` (passwd, group, nsswitch.conf) and the data
//! directories owned by user 10001. A sha256 over the staged context is stored
//! as the `dev.fog-compute.inputs-sha256` label; when the existing image
//! carries the same hash the build is skipped (only missing tags are added).

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::{digest::hash_tree, docker};
use crate::process::Cmd;
use crate::{process::Runner, project_root};

/// The label holding the content hash of an image's build inputs.
pub const INPUTS_LABEL: &str = "dev.fog-compute.inputs-sha256";
/// The label naming the checkout (workspace root) an image was built from:
/// a build untags only its own checkout's stale sha tags, never those of a
/// build from another checkout running at the same time.
pub const CHECKOUT_LABEL: &str = "dev.fog-compute.checkout";
/// The uid and gid the project's images run as.
pub const APP_UID: u32 = 10001;

#[derive(clap::Args)]
pub struct Args {
    /// Image to build (a directory under docker/ with a Dockerfile); all when omitted.
    service: Option<String>,
    /// Build even when the inputs hash matches the existing image.
    #[arg(long)]
    force: bool,
    /// Hide progress output.
    #[arg(long)]
    quiet: bool,
}

/// What [`ensure`] did for one image.
#[derive(Debug)]
pub struct Outcome {
    /// The version tag, e.g. `fog-compute/mixnode:0.1.0`.
    pub image: String,
    pub built: bool,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let names = project_images()?;
    let selected: Vec<String> = match args.service {
        Some(s) if names.contains(&s) => vec![s],
        Some(s) => crate::usage_bail!(
            "unknown image `{s}`: docker/{s}/Dockerfile does not exist; known: {}",
            names.join(", ")
        ),
        None => names,
    };
    for name in selected {
        let started = Instant::now();
        let outcome = ensure(sh, runner, &name, args.force, !args.quiet)?;
        if !runner.dry_run {
            let verb = if outcome.built {
                "built"
            } else {
                "up to date:"
            };
            println!(
                "{verb} {} in {:.1}s",
                outcome.image,
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Directories under `docker/` (except `offline/`) that hold a Dockerfile.
pub fn project_images() -> Result<Vec<String>> {
    let dir = project_root().join("docker");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Dockerfile").is_file() && e.file_name() != "offline")
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
    workspace_root: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    repository: Option<String>,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

/// Build `fog-compute/<name>` unless its inputs are unchanged.
pub fn ensure(
    sh: &Shell,
    runner: &Runner,
    name: &str,
    force: bool,
    progress: bool,
) -> Result<Outcome> {
    let root = project_root();
    let dockerfile = root.join("docker").join(name).join("Dockerfile");
    if !dockerfile.is_file() {
        bail!(
            "{} does not exist: nothing to build the `{name}` image from",
            dockerfile.display()
        );
    }
    let (metadata, package, bins) = workspace_crate(sh, runner, name)?;
    let package = &package;
    let bins: Vec<&str> = bins.iter().map(String::as_str).collect();
    let repo = format!("fog-compute/{name}");
    let image = format!("{repo}:{}", package.version);

    // cargo shows its own progress.
    runner.run(cmd!(sh, "cargo build --release -p {name} --bins"))?;

    let context = metadata
        .target_directory
        .join("docker-context")
        .join(format!("{name}-{}", std::process::id()));
    let _remove_context = RemoveOnDrop(context.clone());
    let release = metadata.target_directory.join("release");
    let revision = runner
        .read(cmd!(sh, "git rev-parse HEAD"))
        .unwrap_or_else(|_| "unknown".into());
    let short = revision.get(..7).unwrap_or(&revision).to_string();
    if runner.dry_run && !bins.iter().all(|b| release.join(b).is_file()) {
        println!(
            "# stage {} and their libraries into {}",
            bins.join(", "),
            context.display()
        );
        let spec = BuildSpec::new(
            &image,
            &repo,
            &short,
            package,
            &revision,
            "<inputs-sha256>",
            &context,
            Some(&metadata.workspace_root),
        );
        docker_build(runner, &spec, progress)?;
        return Ok(Outcome { image, built: true });
    }
    stage(runner, &context, &dockerfile, &release, &bins)?;
    let hash = hash_tree(&context, &package.version)?;

    if !force {
        let labels = docker::image_labels(sh, runner, &image);
        if labels.as_ref().and_then(|l| l.get(INPUTS_LABEL)) == Some(&hash) {
            let sha_tag = format!("{repo}:{short}");
            if !docker::image_exists(sh, runner, &sha_tag) {
                runner.run(cmd!(sh, "docker tag {image} {sha_tag}"))?;
            }
            return Ok(Outcome {
                image,
                built: false,
            });
        }
    }
    let spec = BuildSpec::new(
        &image,
        &repo,
        &short,
        package,
        &revision,
        &hash,
        &context,
        Some(&metadata.workspace_root),
    );
    docker_build(runner, &spec, progress)?;
    remove_stale_sha_tags(sh, runner, &repo, &image, &metadata.workspace_root)?;
    Ok(Outcome { image, built: true })
}

/// The workspace crate `name` (the crate an image under `docker/<name>/` is
/// built from), its binaries, and the cargo metadata it came from.
fn workspace_crate(
    sh: &Shell,
    runner: &Runner,
    name: &str,
) -> Result<(Metadata, Package, Vec<String>)> {
    let mut metadata: Metadata = serde_json::from_str(&runner.read(cmd!(
        sh,
        "cargo metadata --no-deps --format-version 1 --offline"
    ))?)
    .context("parsing `cargo metadata`")?;
    let Some(at) = metadata.packages.iter().position(|p| p.name == name) else {
        bail!("docker/{name}/ has no workspace crate called `{name}` to build binaries from");
    };
    let package = metadata.packages.swap_remove(at);
    let bins: Vec<String> = package
        .targets
        .iter()
        .filter(|t| t.kind.iter().any(|k| k == "bin"))
        .map(|t| t.name.clone())
        .collect();
    if bins.is_empty() {
        bail!("the `{name}` crate has no binaries yet (add src/bin/*.rs or [[bin]]): nothing to put in the image");
    }
    Ok((metadata, package, bins))
}

/// How `release images` builds an image: for a given version, from binaries
/// already built (the release archive's), with `created` from the commit.
pub struct ReleaseBuild<'a> {
    pub version: &'a str,
    pub revision: &'a str,
    pub created: &'a str,
    pub bin_dir: &'a Path,
}

/// Build `fog-compute/<name>` for a release (always, no skip by inputs hash;
/// stale sha tags are left alone). Returns the version and sha tags.
pub fn build_release(
    sh: &Shell,
    runner: &Runner,
    name: &str,
    release: &ReleaseBuild,
    progress: bool,
) -> Result<[String; 2]> {
    let dockerfile = project_root().join("docker").join(name).join("Dockerfile");
    let (metadata, package, bins) = workspace_crate(sh, runner, name)?;
    let bins: Vec<&str> = bins.iter().map(String::as_str).collect();
    let repo = format!("fog-compute/{name}");
    let image = format!("{repo}:{}", release.version);
    let short = release.revision.get(..7).unwrap_or(release.revision);
    let context = metadata
        .target_directory
        .join("docker-context")
        .join(format!("{name}-release-{}", std::process::id()));
    let _remove_context = RemoveOnDrop(context.clone());
    let hash = if runner.dry_run && !bins.iter().all(|b| release.bin_dir.join(b).is_file()) {
        println!("# stage {} into {}", bins.join(", "), context.display());
        "<inputs-sha256>".to_string()
    } else {
        stage(runner, &context, &dockerfile, release.bin_dir, &bins)?;
        hash_tree(&context, release.version)?
    };
    let mut spec = BuildSpec::new(
        &image,
        &repo,
        short,
        &package,
        release.revision,
        &hash,
        &context,
        // No checkout label: a release image must be the same from any clone.
        None,
    );
    for arg in &mut spec.build_args {
        if arg.starts_with("VERSION=") {
            *arg = format!("VERSION={}", release.version);
        } else if arg.starts_with("CREATED=") {
            *arg = format!("CREATED={}", release.created);
        }
    }
    docker_build(runner, &spec, progress)?;
    Ok(spec.tags)
}

/// Untag `<repo>:<short sha>` tags this command made for earlier builds of
/// this checkout ([`CHECKOUT_LABEL`]), which would otherwise keep every old
/// image alive. Version tags stay, and so does every sha tag of an image not
/// labelled with this checkout: a release image (built unlabelled, so that
/// it is the same from any clone) or a build from another checkout running
/// at the same time.
fn remove_stale_sha_tags(
    sh: &Shell,
    runner: &Runner,
    repo: &str,
    current: &str,
    checkout: &Path,
) -> Result<()> {
    let format = "{{.Tag}} {{.ID}}";
    let listing = runner.read(cmd!(sh, "docker images {repo} --format {format}"))?;
    let id_of = |tag: &str| {
        listing
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{tag} ")))
    };
    let current_tag = current.rsplit(':').next().unwrap_or_default();
    let Some(current_id) = id_of(current_tag).map(str::to_string) else {
        return Ok(());
    };
    for line in listing.lines() {
        let Some((tag, id)) = line.split_once(' ') else {
            continue;
        };
        let is_sha = tag.len() == 7 && tag.chars().all(|c| c.is_ascii_hexdigit());
        if is_sha && id != current_id {
            let stale = format!("{repo}:{tag}");
            let ours = docker::image_labels(sh, runner, &stale)
                .and_then(|l| l.get(CHECKOUT_LABEL).cloned())
                .is_some_and(|c| Path::new(&c) == checkout);
            if !ours {
                continue;
            }
            // Best effort: an image a container still uses keeps its tag.
            if runner.dry_run {
                println!("docker rmi {stale}");
            } else if runner.probe(cmd!(sh, "docker rmi {stale}")).is_none() {
                eprintln!("note: kept {stale}: a container still uses it");
            }
        }
    }
    Ok(())
}

/// Deletes a staging directory when the build is done or failed.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Everything one `docker build` of a project image needs.
struct BuildSpec {
    tags: [String; 2],
    labels: Vec<String>,
    build_args: Vec<String>,
    context: PathBuf,
}

impl BuildSpec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        image: &str,
        repo: &str,
        short: &str,
        package: &Package,
        revision: &str,
        hash: &str,
        context: &Path,
        checkout: Option<&Path>,
    ) -> BuildSpec {
        let source = package
            .repository
            .as_deref()
            .unwrap_or("https://github.com/fog-compute/platform");
        BuildSpec {
            tags: [image.to_string(), format!("{repo}:{short}")],
            labels: std::iter::once(format!("{INPUTS_LABEL}={hash}"))
                .chain(checkout.map(|c| format!("{CHECKOUT_LABEL}={}", c.display())))
                .collect(),
            build_args: vec![
                format!("VERSION={}", package.version),
                format!("REVISION={revision}"),
                format!("CREATED={}", crate::clock::rfc3339_now()),
                format!("SOURCE={source}"),
            ],
            context: context.to_path_buf(),
        }
    }
}

/// `docker build` with both tags, the inputs label and the OCI build args.
fn docker_build(runner: &Runner, spec: &BuildSpec, progress: bool) -> Result<()> {
    let mut args: Vec<String> = vec!["build".into(), "--quiet".into()];
    let flags = spec.tags.iter().map(|t| ("-t", t));
    let flags = flags.chain(spec.labels.iter().map(|l| ("--label", l)));
    let flags = flags.chain(spec.build_args.iter().map(|a| ("--build-arg", a)));
    for (flag, value) in flags {
        args.push(flag.into());
        args.push(value.clone());
    }
    args.push(spec.context.display().to_string());
    let bar = docker::bar(progress, None, format!("docker build {}", spec.tags[0]));
    let result = docker::run_quiet(runner, &args);
    bar.finish_and_clear();
    result.map(drop)
}

/// Lay out the build context: the Dockerfile, `rootfs/` (binaries, libraries,
/// `/etc`) and `owned/` (directories that become `/data`, `/config` owned by 10001).
fn stage(
    runner: &Runner,
    context: &Path,
    dockerfile: &Path,
    release: &Path,
    bins: &[&str],
) -> Result<()> {
    if context.exists() {
        fs::remove_dir_all(context).with_context(|| format!("clearing {}", context.display()))?;
    }
    let rootfs = context.join("rootfs");
    fs::create_dir_all(rootfs.join("usr/local/bin"))?;
    fs::create_dir_all(rootfs.join("etc"))?;
    fs::create_dir_all(rootfs.join("tmp"))?;
    fs::set_permissions(
        rootfs.join("tmp"),
        <fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o1777),
    )?;
    fs::create_dir_all(context.join("owned/data"))?;
    fs::create_dir_all(context.join("owned/config"))?;
    fs::copy(dockerfile, context.join("Dockerfile"))?;
    let mut libs = Vec::new();
    for bin in bins {
        let path = release.join(bin);
        let staged = rootfs.join("usr/local/bin").join(bin);
        fs::copy(&path, &staged).with_context(|| {
            format!(
                "copying {} (did the release build make it?)",
                path.display()
            )
        })?;
        strip_debug_info(runner, &staged);
        for lib in shared_libraries(runner, &path)? {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    for lib in &libs {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap_or(lib));
        fs::create_dir_all(dest.parent().expect("library path has a parent"))?;
        fs::copy(lib, &dest).with_context(|| format!("copying {}", lib.display()))?;
    }
    let uid = APP_UID;
    fs::write(
        rootfs.join("etc/passwd"),
        format!("root:x:0:0:root:/root:/sbin/nologin\nfog:x:{uid}:{uid}:fog-compute:/data:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"),
    )?;
    fs::write(
        rootfs.join("etc/group"),
        format!("root:x:0:\nfog:x:{uid}:\nnogroup:x:65534:\n"),
    )?;
    fs::write(
        rootfs.join("etc/nsswitch.conf"),
        "passwd: files\ngroup: files\nhosts: files dns\n",
    )?;
    Ok(())
}

/// Drop debug info from a staged binary (the release profile keeps it for
/// profiling; the image does not need it). Without binutils' `strip` the
/// binary is shipped as it is.
fn strip_debug_info(runner: &Runner, binary: &Path) {
    let stripped = runner.status(Cmd::new("strip").arg("--strip-debug").arg(binary));
    if !stripped.is_ok_and(|s| s.success()) {
        eprintln!("note: could not strip debug info from {} (is binutils installed?); the image will be larger", binary.display());
    }
}

/// The shared libraries `ldd` says `binary` loads, including the dynamic
/// loader; the kernel's vDSO is skipped. A missing library is an error.
pub fn shared_libraries(runner: &Runner, binary: &Path) -> Result<Vec<PathBuf>> {
    let output = runner
        .output(Cmd::new("ldd").arg(binary))
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        bail!(
            "`ldd {}` failed: {}",
            binary.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_ldd(&text).with_context(|| format!("libraries of {}", binary.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("ldd: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, rhs)) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        match path {
            Some(p) if p.starts_with('/') => libs.push(PathBuf::from(p)),
            _ => {} // linux-vdso.so.1 and similar virtual objects
        }
    }
    Ok(libs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_is_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        let libs = parse_ldd(text).unwrap();
        assert_eq!(
            libs,
            [
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        let err = parse_ldd("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert!(err.to_string().contains("libfoo.so.1"), "{err}");
    }
}
