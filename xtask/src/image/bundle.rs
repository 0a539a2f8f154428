//! `images save` and `images load`: images for air-gapped hosts. A bundle is a
//! directory (or a `.tar` of one) holding one gzip-compressed `docker save`
//! stream per image, a `manifest.json` naming each image's file, size and
//! sha256, and a `SHA256SUMS` file over all of them. `save` writes into a
//! temporary sibling directory and renames it into place, so a bundle is
//! either complete or absent; `load` verifies every checksum before it loads
//! anything and names the first file that does not match.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use flate2::{write::GzEncoder, Compression};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::{catalog, docker, ALL_ENV};
use crate::absolute;
use crate::process::{Cmd, Io};
use crate::{environments::Environment, process::Runner, project_root, usage_bail};

const MANIFEST: &str = "manifest.json";
const SUMS: &str = "SHA256SUMS";

#[derive(clap::Args)]
#[command(after_help = "Examples:
  cargo xtask images save --env dev+betanet -o /media/usb/fog-images
  cargo xtask images save fog-compute/mixnode:0.1.0 -o mixnode-bundle.tar")]
pub struct SaveArgs {
    /// Images to save; when omitted, the present images of --env.
    images: Vec<String>,
    /// Environment whose images to save when no images are named.
    #[arg(long, default_value = ALL_ENV)]
    env: String,
    /// Bundle to write: a directory, or a file ending in .tar.
    #[arg(short, long)]
    output: PathBuf,
    /// Replace an existing bundle at --output.
    #[arg(long)]
    force: bool,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

#[derive(clap::Args)]
#[command(after_help = "Example:
  cargo xtask images load /media/usb/fog-images")]
pub struct LoadArgs {
    /// Bundle directory or .tar written by `images save`.
    bundle: PathBuf,
}

#[derive(Serialize, Deserialize, Debug)]
struct Manifest {
    format: u32,
    created: String,
    files: Vec<Entry>,
}

/// One `docker save` archive and the images (tags) it holds. All images go
/// into one archive so layers they share (the offline base) are stored once.
#[derive(Serialize, Deserialize, Debug)]
struct Entry {
    file: String,
    images: Vec<String>,
    bytes: u64,
    sha256: String,
}

/// The archive holding every image of a bundle.
const ARCHIVE: &str = "images.tar.gz";

pub fn save(sh: &Shell, runner: &Runner, args: SaveArgs) -> Result<()> {
    let output = absolute(args.output);
    let images = select_images(sh, runner, &args.images, &args.env)?;
    if output.exists() && !args.force {
        usage_bail!(
            "{} already exists: pass --force to replace it, or choose another --output",
            output.display()
        );
    }
    save_bundle(sh, runner, &images, &output, !args.quiet)
}

/// Write `images` to the bundle `output` (a directory, or a `.tar` file),
/// replacing what is there only once the new bundle is complete.
pub fn save_bundle(
    sh: &Shell,
    runner: &Runner,
    images: &[String],
    output: &Path,
    progress: bool,
) -> Result<()> {
    let output = output.to_path_buf();
    let as_tar = output.extension().is_some_and(|e| e == "tar");
    let parent = output
        .parent()
        .context("--output has no parent directory")?;
    let name = output
        .file_name()
        .context("--output has no file name")?
        .to_string_lossy();
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if runner.dry_run {
        println!(
            "docker save {} > {}  # gzip-compressed and hashed by xtask",
            images.join(" "),
            staging.join(ARCHIVE).display()
        );
        println!(
            "# write {MANIFEST} and {SUMS}, then rename into {}",
            output.display()
        );
        return Ok(());
    }
    fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let result = write_bundle(sh, runner, &staging, images, progress);
    let result = result.and_then(|manifest| {
        if as_tar {
            let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
            let status = runner.status(
                Cmd::new("tar")
                    .arg("-cf")
                    .arg(&tmp)
                    .arg("-C")
                    .arg(&staging)
                    .arg("."),
            )?;
            if !status.success() {
                let _ = fs::remove_file(&tmp);
                bail!("`tar -cf {}` failed ({status})", tmp.display());
            }
            fs::File::open(&tmp)?.sync_all()?;
            fs::remove_dir_all(&staging)?;
            replace(&tmp, &output)?;
        } else {
            replace(&staging, &output)?;
        }
        Ok(manifest)
    });
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    let total: u64 = manifest.files.iter().map(|e| e.bytes).sum();
    println!(
        "saved {} images ({} MB) to {}",
        images.len(),
        total / 1_000_000,
        output.display()
    );
    Ok(())
}

/// Named images (each must exist), or the present images of `env`.
fn select_images(sh: &Shell, runner: &Runner, named: &[String], env: &str) -> Result<Vec<String>> {
    if !named.is_empty() {
        for image in named {
            if !docker::image_exists(sh, runner, image) {
                usage_bail!("image {image} is not in the engine: build or load it first (`cargo xtask images ls`)");
            }
        }
        return Ok(named.to_vec());
    }
    let env: Environment = env.parse()?;
    let mut images = Vec::new();
    for n in catalog::needed(&env, &project_root())? {
        if docker::image_exists(sh, runner, &n.image) {
            images.push(n.image);
        } else {
            eprintln!(
                "warning: {} ({}) is not in the engine; leaving it out of the bundle",
                n.image,
                n.services.join(",")
            );
        }
    }
    if images.is_empty() {
        usage_bail!("none of the images of `{env}` is in the engine: nothing to save (see `cargo xtask images ls --env {env}`)");
    }
    Ok(images)
}

fn write_bundle(
    sh: &Shell,
    runner: &Runner,
    dir: &Path,
    images: &[String],
    progress: bool,
) -> Result<Manifest> {
    fs::create_dir_all(dir)?;
    // An upper bound for the bar: shared layers are counted once per image.
    let size = images
        .iter()
        .filter_map(|i| docker::image_size(sh, runner, i))
        .max();
    let bar = docker::bar(
        progress,
        size,
        format!("docker save ({} images)", images.len()),
    );
    let saved = save_archive(runner, images, &dir.join(ARCHIVE), &bar);
    bar.finish_and_clear();
    let (bytes, sha256) = saved?;
    let manifest = Manifest {
        format: 1,
        created: crate::clock::rfc3339_now(),
        files: vec![Entry {
            file: ARCHIVE.to_string(),
            images: images.to_vec(),
            bytes,
            sha256,
        }],
    };
    let manifest_text = serde_json::to_string_pretty(&manifest)? + "\n";
    write_synced(&dir.join(MANIFEST), manifest_text.as_bytes())?;
    let mut sums = String::new();
    for entry in &manifest.files {
        sums.push_str(&format!("{}  {}\n", entry.sha256, entry.file));
    }
    sums.push_str(&format!(
        "{}  {MANIFEST}\n",
        hex::encode(Sha256::digest(manifest_text.as_bytes()))
    ));
    write_synced(&dir.join(SUMS), sums.as_bytes())?;
    fs::File::open(dir)?.sync_all()?;
    Ok(manifest)
}

/// A file writer that hashes and counts what goes through it.
struct HashingFile {
    file: fs::File,
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// `docker save image | gzip > path`, returning the file's size and sha256.
fn save_archive(
    runner: &Runner,
    images: &[String],
    path: &Path,
    bar: &indicatif::ProgressBar,
) -> Result<(u64, String)> {
    let mut child = runner
        .spawn(
            Cmd::new("docker")
                .arg("save")
                .args(images)
                .stdout(Io::Piped),
        )
        .context("starting `docker save`")?;
    let mut stdout = child.stdout.take().expect("piped");
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut gz = GzEncoder::new(
        HashingFile {
            file,
            hasher: Sha256::new(),
            bytes: 0,
        },
        Compression::fast(),
    );
    let copied = std::io::copy(&mut bar.wrap_read(&mut stdout), &mut gz);
    let status = child.wait()?;
    if !status.success() {
        bail!("`docker save {}` failed ({status})", images.join(" "));
    }
    copied.with_context(|| format!("writing {}", path.display()))?;
    let out = gz.finish()?;
    out.file.sync_all()?;
    Ok((out.bytes, hex::encode(out.hasher.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Move `new` to `target`, replacing whatever was there only once `new` is complete.
fn replace(new: &Path, target: &Path) -> Result<()> {
    if target.exists() {
        let old = target.with_file_name(format!(
            ".{}.old-{}",
            target.file_name().expect("has a name").to_string_lossy(),
            std::process::id()
        ));
        fs::rename(target, &old)?;
        fs::rename(new, target)?;
        if old.is_dir() {
            fs::remove_dir_all(&old)?
        } else {
            fs::remove_file(&old)?
        }
    } else {
        fs::rename(new, target).with_context(|| format!("renaming into {}", target.display()))?;
    }
    Ok(())
}

pub fn load(sh: &Shell, runner: &Runner, args: LoadArgs) -> Result<()> {
    load_bundle(sh, runner, &absolute(args.bundle)).map(drop)
}

/// Verify the bundle (directory or `.tar`) at `bundle`, then load its images;
/// returns the images it loaded.
pub fn load_bundle(sh: &Shell, runner: &Runner, bundle: &Path) -> Result<Vec<String>> {
    let bundle = bundle.to_path_buf();
    if !bundle.exists() {
        usage_bail!("{} does not exist: pass a bundle directory or .tar written by `cargo xtask images save`", bundle.display());
    }
    let extracted;
    let dir = if bundle.is_file() {
        // Next to the bundle (same filesystem, room for it), removed on drop.
        extracted = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(bundle.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("creating a folder beside {}", bundle.display()))?;
        let status = runner.status(
            Cmd::new("tar")
                .arg("-xf")
                .arg(&bundle)
                .arg("-C")
                .arg(extracted.path()),
        )?;
        if !status.success() {
            bail!("{} is not a readable tar ({status})", bundle.display());
        }
        extracted.path().to_path_buf()
    } else {
        bundle.clone()
    };
    let manifest = verify(&dir)
        .with_context(|| format!("bundle {} rejected; nothing was loaded", bundle.display()))?;
    let mut loaded = Vec::new();
    for entry in &manifest.files {
        let file = dir.join(&entry.file);
        runner.run(cmd!(sh, "docker load --quiet -i {file}"))?;
        for image in &entry.images {
            if !runner.dry_run && !docker::image_exists(sh, runner, image) {
                bail!("{} was loaded but {image} is not in the engine", entry.file);
            }
            loaded.push(image.clone());
        }
    }
    if !runner.dry_run {
        println!(
            "verified and loaded {} images from {}",
            loaded.len(),
            bundle.display()
        );
    }
    Ok(loaded)
}

/// Check `SHA256SUMS` against every file it names and the manifest against
/// `SHA256SUMS`; return the manifest only when everything matches.
fn verify(dir: &Path) -> Result<Manifest> {
    let sums_path = dir.join(SUMS);
    let sums_text = fs::read_to_string(&sums_path)
        .with_context(|| format!("{SUMS} is missing or unreadable"))?;
    let mut sums = BTreeMap::new();
    for (i, line) in sums_text.lines().enumerate() {
        let Some((hash, file)) = line.split_once("  ") else {
            bail!("{SUMS} line {}: expected `<sha256>  <file>`", i + 1);
        };
        if file.contains('/') || file.starts_with('.') {
            bail!("{SUMS} line {}: `{file}` is not a plain file name", i + 1);
        }
        sums.insert(file.to_string(), hash.to_string());
    }
    for (file, expected) in &sums {
        let actual = sha256_file(&dir.join(file))
            .with_context(|| format!("{file}: listed in {SUMS} but unreadable"))?;
        if &actual != expected {
            bail!(
                "{file}: sha256 {actual} does not match {expected} in {SUMS} (corrupt or modified)"
            );
        }
    }
    if !sums.contains_key(MANIFEST) {
        bail!("{SUMS} does not cover {MANIFEST}");
    }
    let manifest: Manifest = serde_json::from_str(&fs::read_to_string(dir.join(MANIFEST))?)
        .with_context(|| format!("{MANIFEST} is not a bundle manifest"))?;
    for entry in &manifest.files {
        if sums.get(&entry.file) != Some(&entry.sha256) {
            bail!(
                "{}: its sha256 in {MANIFEST} and {SUMS} disagree or it is not listed",
                entry.file
            );
        }
    }
    Ok(manifest)
}

/// The sha256 of a file, hex, read in 1 MiB chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_bundle(dir: &Path) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("a.tar.gz"), b"image bytes").unwrap();
        let manifest = Manifest {
            format: 1,
            created: "now".into(),
            files: vec![Entry {
                images: vec!["a:1".into()],
                file: "a.tar.gz".into(),
                bytes: 11,
                sha256: hex::encode(Sha256::digest(b"image bytes")),
            }],
        };
        let text = serde_json::to_string(&manifest).unwrap();
        fs::write(dir.join(MANIFEST), &text).unwrap();
        fs::write(
            dir.join(SUMS),
            format!(
                "{}  a.tar.gz\n{}  {MANIFEST}\n",
                manifest.files[0].sha256,
                hex::encode(Sha256::digest(text.as_bytes()))
            ),
        )
        .unwrap();
    }

    #[test]
    fn verify_accepts_intact_and_names_corrupt_file() {
        let dir = std::env::temp_dir().join(format!("xtask-bundle-{}", std::process::id()));
        fake_bundle(&dir);
        assert_eq!(verify(&dir).unwrap().files[0].images, ["a:1"]);
        fs::write(dir.join("a.tar.gz"), b"image bytez").unwrap();
        let err = format!("{:#}", verify(&dir).unwrap_err());
        assert!(err.starts_with("a.tar.gz: sha256"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
