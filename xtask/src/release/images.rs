//! `release images`: every project image (the list `image::project_images`
//! keeps, one per `docker/<name>/`) built for the release version from the
//! archive's own static binaries, tagged `<version>` and `<git sha>`, with the
//! OCI labels (`created` is the commit time). Writes the images as an `images
//! save` bundle, `fog-compute-<version>-images.tar`, and `images.lock`, which
//! pins every image each named environment runs to its image id (third-party
//! images where the engine has them), and adds both to `SHA256SUMS`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use serde::{Deserialize, Serialize};
use xshell::Shell;

use super::{
    common::{human_size, write_atomic, Release, Timer, LOCK},
    dist, sums, Common,
};
use crate::{
    environments::{Environment, NAMED},
    image::{self, ReleaseBuild, Source},
    process::Runner,
};

#[derive(clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  cargo xtask release images
  cargo xtask release images --include-third-party   # also bundle postgres, prometheus, ... when present"
)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// Also put the third-party images the engine has into the bundle.
    #[arg(long)]
    include_third_party: bool,
    /// Hide progress bars.
    #[arg(long)]
    quiet: bool,
}

/// `images.lock`: what each environment runs, pinned.
#[derive(Serialize, Deserialize, Debug)]
pub struct Lock {
    pub format: u32,
    pub version: String,
    pub revision: String,
    pub created: String,
    pub images: Vec<Locked>,
}

/// One image of [`Lock`].
#[derive(Serialize, Deserialize, Debug)]
pub struct Locked {
    /// The reference compose uses (project images: the release tag).
    pub image: String,
    /// `sha256:...` image id; `None` when a third-party image is not present.
    pub id: Option<String>,
    /// Built by this release (and so in the bundle and pushed by `publish`).
    pub project: bool,
    /// Every tag this release gave a project image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub services: BTreeSet<String>,
    pub environments: Vec<String>,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let _timer = Timer::start("images");
    let release = Release::load(sh, runner, &args.common)?;
    dist::build(sh, runner, &release)?;
    let names = image::project_images()?;
    let bin_dir = dist::build_crates(sh, runner, &release, &names)?;
    let created = release.created();
    let spec = ReleaseBuild {
        version: &release.version,
        revision: &release.revision,
        created: &created,
        bin_dir: &bin_dir,
    };
    let mut built: BTreeMap<String, [String; 2]> = BTreeMap::new();
    for name in names {
        let tags = image::build_release(sh, runner, &name, &spec, !args.quiet)?;
        eprintln!("built {} and {}", tags[0], tags[1]);
        built.insert(name, tags);
    }
    let lock = lock(sh, runner, &release, &built)?;
    let mut bundled: Vec<String> = built.values().flatten().cloned().collect();
    if args.include_third_party {
        bundled.extend(
            lock.images
                .iter()
                .filter(|l| !l.project && l.id.is_some())
                .map(|l| l.image.clone()),
        );
    }
    let bundle = release.out.join(release.bundle_name());
    if runner.dry_run {
        println!(
            "# write {} and {} in {}",
            release.bundle_name(),
            LOCK,
            release.out.display()
        );
    }
    image::save_bundle(sh, runner, &bundled, &bundle, !args.quiet)?;
    if runner.dry_run {
        return Ok(());
    }
    let text = serde_json::to_string_pretty(&lock)? + "\n";
    write_atomic(&release.out.join(LOCK), text.as_bytes())?;
    sums::update(&release.out, &[release.bundle_name(), LOCK.to_string()])?;
    for file in [release.bundle_name(), LOCK.to_string()] {
        let size = std::fs::metadata(release.out.join(&file))?.len();
        println!("{file:<48} {:>9}", human_size(size));
    }
    Ok(())
}

/// Every image of every named environment, project images at their release tags.
fn lock(
    sh: &Shell,
    runner: &Runner,
    release: &Release,
    built: &BTreeMap<String, [String; 2]>,
) -> Result<Lock> {
    let mut images: Vec<Locked> = Vec::new();
    for name in NAMED {
        let env: Environment = name.parse()?;
        for need in image::needed(&env, &release.root)? {
            let (image, tags, project) = match need.source {
                Source::Project(p) => match built.get(&p) {
                    Some(tags) => (tags[0].clone(), tags.to_vec(), true),
                    None => (need.image.clone(), Vec::new(), false),
                },
                Source::Upstream(_) => (need.image.clone(), Vec::new(), false),
            };
            let entry = match images.iter_mut().position(|l| l.image == image) {
                Some(i) => &mut images[i],
                None => {
                    let id = image::image_id(sh, runner, &image);
                    images.push(Locked {
                        image,
                        id,
                        project,
                        tags,
                        services: BTreeSet::new(),
                        environments: Vec::new(),
                    });
                    images.last_mut().expect("just pushed")
                }
            };
            entry.services.extend(need.services.iter().cloned());
            entry.environments.push(name.to_string());
        }
    }
    images.sort_by(|a, b| (!a.project, &a.image).cmp(&(!b.project, &b.image)));
    Ok(Lock {
        format: 1,
        version: release.version.clone(),
        revision: release.revision.clone(),
        created: release.created(),
        images,
    })
}

/// Read `images.lock` from the artifact directory `dir`.
pub fn read_lock(dir: &std::path::Path) -> Result<Lock> {
    let path = dir.join(LOCK);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}: run `cargo xtask release images` first",
            path.display()
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: not an images.lock: {e}", path.display()))
}
