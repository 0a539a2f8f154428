//! Copies off the host: `backup ... --to s3://BUCKET/PREFIX`, `backup list
//! --from`, `backup prune --from` and the download half of `restore
//! s3://...`, over [`crate::s3`]. An upload sends the archive, its `.sha256`,
//! its `.drill.json` and a base backup's `.base.json` if any, and its manifest last (a listing counts a backup
//! only once its manifest is there), each verified by reading the object back
//! and comparing sha256. A download goes into a private folder inside the
//! backups folder, is checked against the `.sha256` and the manifest, and is
//! then restored like a local file; the folder is removed afterwards.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};

use super::{archive, set::Set};
use crate::{
    migrate::Format,
    process::Runner,
    s3::{Location, Store},
};

/// Where `--to`/`--from` point, with the endpoint resolved.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct RemoteArgs {
    /// The S3-compatible endpoint [default: $FOG_S3_ENDPOINT].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
}

/// Parse `url` (must be `s3://...`) and open it.
pub fn open(url: &str, args: &RemoteArgs) -> Result<Store> {
    let location = match Location::parse(url) {
        Some(l) => l?,
        None => crate::usage_bail!("`{url}`: expected s3://BUCKET/PREFIX"),
    };
    let endpoint = crate::s3::endpoint(args.endpoint.as_deref())?;
    Store::open(&location, &endpoint)
}

/// One uploaded file.
#[derive(Debug, serde::Serialize)]
pub struct Uploaded {
    pub url: String,
    pub size: u64,
    pub sha256: String,
}

/// Upload a finished local backup (archive or `.set.json`) and its siblings.
pub fn upload(store: &Store, path: &Path, runner: &Runner) -> Result<Vec<Uploaded>> {
    let name = path
        .file_name()
        .context("a backup path needs a file name")?
        .to_string_lossy()
        .into_owned();
    let mut files: Vec<PathBuf> = vec![path.to_path_buf()];
    if !name.ends_with(".set.json") {
        files.push(archive::sha256_path(path));
        let drill = archive::drill_path(path);
        if drill.exists() {
            files.push(drill);
        }
        let base = super::base::info_path(path);
        if base.exists() {
            files.push(base);
        }
        files.push(archive::manifest_path(path));
    }
    let mut out = Vec::new();
    for file in files {
        let file_name = file.file_name().unwrap_or_default().to_string_lossy();
        let url = store.location.url(&file_name);
        if runner.dry_run {
            println!(
                "# upload {} to {url} at {}, then read it back and compare sha256",
                file.display(),
                store.endpoint
            );
            continue;
        }
        let (size, sha256) = store.upload_verified(&file, &file_name)?;
        out.push(Uploaded { url, size, sha256 });
    }
    Ok(out)
}

/// Report what [`upload`] sent, on stderr (stdout keeps the backup's own summary).
pub fn print_uploaded(uploaded: &[Uploaded]) {
    for u in uploaded {
        eprintln!(
            "uploaded {} ({} bytes, read back: sha256 {})",
            u.url, u.size, u.sha256
        );
    }
}

/// A backup found in the bucket.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RemoteEntry {
    pub url: String,
    pub name: String,
    pub kind: String,
    pub project: String,
    /// The database, or the volume's name.
    pub source: String,
    pub size: u64,
    pub created_at: String,
    /// `passed`, `failed` or `none` (from an uploaded `.drill.json`).
    pub drill: String,
    /// Sets: their members' file names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// This tool's backups under the prefix, newest first (archives whose
/// manifest names them and was written by this tool, and set files).
pub fn scan(store: &Store) -> Result<Vec<RemoteEntry>> {
    let objects = store.list()?;
    let names: BTreeSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    let mut out = Vec::new();
    for o in &objects {
        if let Some(archive_name) = o.name.strip_suffix(".manifest.json") {
            if !names.contains(archive_name) || !names.contains(&*format!("{archive_name}.sha256"))
            {
                continue;
            }
            let Ok(m) = serde_json::from_str::<archive::Manifest>(&store.read_small(&o.name)?)
            else {
                continue;
            };
            if !m.tool.starts_with("xtask ") || m.file != archive_name {
                continue;
            }
            let drill_name = format!("{archive_name}.drill.json");
            let drill = if names.contains(drill_name.as_str()) {
                let text = store.read_small(&drill_name)?;
                match serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|d| d["passed"].as_bool())
                {
                    Some(true) => "passed",
                    Some(false) => "failed",
                    None => "none",
                }
            } else {
                "none"
            };
            out.push(RemoteEntry {
                url: store.location.url(archive_name),
                name: archive_name.to_string(),
                kind: m.kind,
                project: m.project,
                source: m.database,
                size: m.size,
                created_at: m.created_at,
                drill: drill.into(),
                members: Vec::new(),
            });
        } else if o.name.ends_with(".set.json") {
            let Ok(set) = serde_json::from_str::<Set>(&store.read_small(&o.name)?) else {
                continue;
            };
            if set.kind != "set" || !set.tool.starts_with("xtask ") {
                continue;
            }
            out.push(RemoteEntry {
                url: store.location.url(&o.name),
                name: o.name.clone(),
                kind: "set".into(),
                project: set.project,
                source: String::new(),
                size: o.size,
                created_at: set.created_at,
                drill: "none".into(),
                members: set.members.into_iter().map(|m| m.file).collect(),
            });
        }
    }
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
    Ok(out)
}

/// `backup list --from s3://...`.
pub fn list(store: &Store, format: Format) -> Result<()> {
    let entries = scan(store)?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"from": store.location.to_string(), "endpoint": store.endpoint, "backups": entries})
        );
        return Ok(());
    }
    if entries.is_empty() {
        println!("no backups in {}", store.location);
        return Ok(());
    }
    println!(
        "{:<56} {:<9} {:>12}  {:<20}  DRILL",
        "FILE", "KIND", "BYTES", "CREATED"
    );
    for e in &entries {
        println!(
            "{:<56} {:<9} {:>12}  {:<20}  {}",
            e.name, e.kind, e.size, e.created_at, e.drill
        );
    }
    Ok(())
}

/// Which entries `prune --keep N` removes: per project and kind (and
/// database or volume) all but the newest `keep` (at least 1), never the
/// newest drill-passed one, never a member of a kept set.
pub fn to_remove(entries: &[RemoteEntry], keep: usize) -> Vec<&RemoteEntry> {
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&RemoteEntry>> = BTreeMap::new();
    for e in entries {
        groups
            .entry((e.project.as_str(), e.kind.as_str(), e.source.as_str()))
            .or_default()
            .push(e);
    }
    let mut gone = Vec::new();
    let mut kept_members = BTreeSet::new();
    for group in groups.values() {
        // Entries arrive newest first; groups keep that order.
        let drilled = group.iter().position(|e| e.drill == "passed");
        for (i, e) in group.iter().enumerate() {
            if i < keep.max(1) || Some(i) == drilled {
                kept_members.extend(e.members.iter().map(String::as_str));
            } else {
                gone.push(*e);
            }
        }
    }
    gone.retain(|e| !kept_members.contains(e.name.as_str()));
    gone.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.name.cmp(&a.name)));
    gone
}

/// `backup prune --from s3://... --keep N` (`--dry-run` lists what would go).
pub fn prune(store: &Store, keep: usize, runner: &Runner) -> Result<()> {
    let entries = scan(store)?;
    if entries.is_empty() {
        bail!("no backups in {}: nothing to prune", store.location);
    }
    for e in to_remove(&entries, keep) {
        let names: Vec<String> = if e.kind == "set" {
            vec![e.name.clone()]
        } else {
            // The manifest goes first: a half-pruned backup is no longer listed.
            [".manifest.json", ".drill.json", ".base.json", ".sha256", ""]
                .iter()
                .map(|s| format!("{}{s}", e.name))
                .collect()
        };
        for name in names {
            if runner.dry_run {
                println!("# delete {}", store.location.url(&name));
            } else {
                store.delete(&name)?;
            }
        }
        if !runner.dry_run {
            println!("pruned {}", e.url);
        }
    }
    Ok(())
}

/// A downloaded backup in a private folder that is removed on drop.
pub struct Downloaded {
    pub path: PathBuf,
    folder: PathBuf,
}

impl Drop for Downloaded {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.folder) {
            eprintln!(
                "warning: could not remove the download folder {}: {e}; delete it by hand",
                self.folder.display()
            );
        }
    }
}

/// Download `s3://BUCKET/KEY` with its `.sha256` and manifest into a
/// private folder in `dir`, checking the archive against its `.sha256`.
pub fn download(url: &str, args: &RemoteArgs, dir: &Path) -> Result<Downloaded> {
    let Some((parent, name)) = url.rsplit_once('/').filter(|(p, _)| p.len() > "s3:/".len()) else {
        crate::usage_bail!("`{url}`: expected s3://BUCKET/PREFIX/FILE");
    };
    if name.is_empty() || name.starts_with('.') {
        crate::usage_bail!("`{url}`: name a backup file (s3://BUCKET/PREFIX/FILE)");
    }
    let store = open(parent, args)?;
    archive::create_dir(dir)?;
    let folder = dir.join(format!(".s3-download-{}", std::process::id()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&folder)
        .with_context(|| format!("creating {}", folder.display()))?;
    let downloaded = Downloaded {
        path: folder.join(name),
        folder,
    };
    for suffix in [".sha256", ".manifest.json"] {
        let file = format!("{name}{suffix}");
        let text = store
            .read_small(&file)
            .with_context(|| format!("{url}: its {suffix} is missing, so it cannot be verified"))?;
        archive::write_atomic(&downloaded.folder.join(&file), text.as_bytes())?;
    }
    let mut out = archive::Atomic::create(&downloaded.path)?;
    eprintln!("downloading {url} from {}", store.endpoint);
    let (size, sha256) = store.download(name, &mut std::io::BufWriter::new(out.file()))?;
    let sha_text = fs::read_to_string(archive::sha256_path(&downloaded.path))?;
    let recorded = sha_text.split_whitespace().next().unwrap_or_default();
    if recorded != sha256 {
        bail!("{url}: downloaded {size} bytes with sha256 {sha256}, but its .sha256 says {recorded}: the copy in the bucket is damaged; nothing was touched");
    }
    out.commit()?;
    Ok(downloaded)
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, kind: &str, source: &str, at: &str, drill: &str) -> RemoteEntry {
        RemoteEntry {
            url: format!("s3://b/{name}"),
            name: name.into(),
            kind: kind.into(),
            project: "fog".into(),
            source: source.into(),
            size: 1,
            created_at: at.into(),
            drill: drill.into(),
            members: Vec::new(),
        }
    }

    #[test]
    fn remote_prune_keeps_per_kind_drilled_and_set_members() {
        let mut set = e("fog-all-3.set.json", "set", "", "3", "none");
        set.members = vec!["p1".into(), "v1".into()];
        let old_set = e("fog-all-0.set.json", "set", "", "0", "none");
        let entries = vec![
            e("p4", "postgres", "fog", "4", "none"),
            e("v3", "volume", "grafana", "3", "none"),
            set,
            e("p2", "postgres", "fog", "2", "passed"),
            e("p1", "postgres", "fog", "1", "none"),
            e("v1", "volume", "grafana", "1", "none"),
            e("p0", "postgres", "fog", "0", "none"),
            old_set,
        ];
        let gone: Vec<&str> = to_remove(&entries, 1)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        // p4 newest, p2 drilled, p1 and v1 are in the newest set: kept.
        assert_eq!(gone, ["p0", "fog-all-0.set.json"]);
        // keep 0 still keeps the newest of each kind.
        assert!(to_remove(&entries, 0).iter().all(|e| e.name != "v3"));
    }
}
