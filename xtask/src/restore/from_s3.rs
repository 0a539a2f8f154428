//! `restore --to-time|--to-lsn|--latest --from s3://BUCKET/PREFIX`: the
//! off-host half of point-in-time recovery, for when the host's own archive
//! or backups are gone. Into a private folder in the backups folder it
//! downloads the manifest, `.sha256` and `.base.json` of every base backup of
//! the project in the bucket, then only the archive of the one recovery will
//! start from (the newest before the target), checked against its `.sha256`
//! and manifest and by `pg_verifybackup`, and every shipped WAL file from that
//! base backup's start segment on (plus all timeline history files), each
//! checked against its `.sha256`, decrypted with `--identity` when it is
//! `.age`, gunzipped and size-checked. The WAL goes into a scratch volume
//! (`<volume>_pitr_wal_<stamp>`, labelled like the other scratch volumes, so
//! the next run removes it after a kill); the rest is the local path.

use std::{
    fs,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::to_time::{choose, Goal};
use crate::{
    backups::{archive, remote, stream, verify},
    database::Database,
    pitr::{self, docker},
    process::Runner,
    usage_bail,
    wal::{self, Segment},
    wal_remote,
};

/// The downloaded base backups (folder) and WAL (volume); both removed on drop.
pub struct Fetched {
    pub dir: PathBuf,
    pub volume: String,
    created: bool,
    runner: Runner,
}

impl Drop for Fetched {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        if self.created {
            let _ = docker(&self.runner, true, &["volume", "rm", "-f", &self.volume]);
        }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn fetch(
    runner: &Runner,
    db: &Database,
    url: &str,
    args: &remote::RemoteArgs,
    dir: &Path,
    goal: &Goal,
    live: &str,
    stamp: &str,
) -> Result<Fetched> {
    let store = remote::open(url, args)?;
    let entries = remote::scan(&store)?;
    let bases: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == "base" && e.project == db.namespace)
        .collect();
    if bases.is_empty() {
        usage_bail!(
            "no base backup of {} in {url}: take one with `cargo xtask backup base --to {url}`; nothing was touched",
            db.namespace
        );
    }
    archive::create_dir(dir)?;
    let folder = dir.join(format!(".pitr-fetch-{}", std::process::id()));
    let _ = fs::remove_dir_all(&folder);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&folder)
        .with_context(|| format!("creating {}", folder.display()))?;
    let mut fetched = Fetched {
        dir: folder.clone(),
        volume: format!("{live}_pitr_wal_{stamp}"),
        created: false,
        runner: *runner,
    };
    for e in &bases {
        for suffix in [".manifest.json", ".base.json", ".sha256"] {
            let name = format!("{}{suffix}", e.name);
            let text = store
                .read_small(&name)
                .with_context(|| format!("{}: its {suffix} is missing", e.url))?;
            archive::write_atomic(&folder.join(&name), text.as_bytes())?;
        }
    }
    let listed = pitr::records(&folder, &db.namespace, false);
    let staging = folder.join(wal::ARCHIVE_SUBDIR);
    fs::create_dir(&staging)?;
    if let Some((path, info)) = choose(&listed, goal) {
        let manifest = archive::read_manifest(path)?;
        eprintln!(
            "downloading base backup {} ({:.1} MB) from {}",
            store.location.url(&info.file),
            manifest.size as f64 / 1e6,
            store.endpoint
        );
        let (size, sha) = {
            let mut out = archive::Atomic::create(path)?;
            let got = store.download(&info.file, &mut std::io::BufWriter::new(out.file()))?;
            out.commit()?;
            got
        };
        if sha != manifest.sha256 || size != manifest.size {
            bail!("{}: downloaded {size} bytes with sha256 {sha}, its manifest says {} bytes, {}: the copy in the bucket is damaged; nothing was touched", store.location.url(&info.file), manifest.size, manifest.sha256);
        }
        verify::verify_with(path, Some(db), false, false)
            .context("the downloaded base backup does not verify; nothing was touched")?;
        let start = Segment::parse(&info.start_wal)
            .with_context(|| format!("{}: bad start segment {}", info.file, info.start_wal))?;
        let wal_store = wal_remote::store(&store, &db.namespace)?;
        let shipped = wal_remote::list(&wal_store)?;
        let mut files = 0;
        let mut bytes = 0u64;
        for (name, object) in &shipped {
            let wanted =
                crate::wal::is_history(name) || Segment::parse(name).is_some_and(|s| s >= start);
            if !wanted {
                continue;
            }
            bytes += wal_remote::fetch(&wal_store, object, &folder, &staging.join(name))
                .context("nothing was touched")?;
            files += 1;
        }
        eprintln!(
            "fetched {files} WAL files ({:.1} MB) from {} from {} on, each checked against its .sha256",
            bytes as f64 / 1e6,
            wal_store.location,
            start.name()
        );
    }
    // Into the scratch volume, through one tar stream.
    let tar_path = folder.join("wal.tar");
    {
        let mut builder = tar::Builder::new(fs::File::create(&tar_path)?);
        builder.append_dir_all(wal::ARCHIVE_SUBDIR, &staging)?;
        builder.into_inner()?.sync_all()?;
    }
    fs::remove_dir_all(&staging)?;
    let label = format!("dev.fog-compute.pitr={}", db.namespace);
    docker(
        runner,
        true,
        &["volume", "create", "--label", &label, &fetched.volume],
    )?;
    fetched.created = true;
    let mut cmd = crate::process::Cmd::new("docker");
    cmd.args([
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--user",
        "0:0",
        "-v",
    ])
    .arg(format!("{}:/a", fetched.volume))
    .args([
        "--entrypoint",
        "sh",
        &db.image,
        "-c",
        "set -e; tar -xf - -C /a; chmod -R a+rX /a",
    ]);
    stream::into_child(
        runner,
        true,
        cmd,
        fs::File::open(&tar_path)?,
        &indicatif::ProgressBar::hidden(),
        true,
    )
    .context("filling the scratch WAL volume")?;
    fs::remove_file(&tar_path)?;
    Ok(fetched)
}
