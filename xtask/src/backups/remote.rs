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

use super::{
    archive,
    prune::{Decision, Entry},
    retention::Policy,
    set::Set,
};
use crate::{
    output::Format,
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
    /// What prune groups it by: `database`, `base`, `volume NAME` or `set`
    /// (as in a folder).
    pub group: String,
    pub size: u64,
    /// The archive object's size in the bucket (a set: its file's).
    #[serde(skip)]
    pub stored: u64,
    pub created_at: String,
    /// `passed`, `failed` or `none` (from an uploaded `.drill.json`).
    pub drill: String,
    /// Sets: their members' file names.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// This tool's backups under the prefix, newest first: archives whose
/// `.sha256` is there and whose manifest was written by this tool and names
/// them by the strict name it gives (as in a folder, see
/// [`super::prune::ours`]), and set files. Anything else is left alone.
pub fn scan(store: &Store) -> Result<Vec<RemoteEntry>> {
    let objects = store.list()?;
    let sizes: BTreeMap<&str, u64> = objects.iter().map(|o| (o.name.as_str(), o.size)).collect();
    let mut out = Vec::new();
    for o in &objects {
        if let Some(archive_name) = o.name.strip_suffix(".manifest.json") {
            let Some(&stored) = sizes.get(archive_name) else {
                continue;
            };
            if !sizes.contains_key(&*format!("{archive_name}.sha256")) {
                continue;
            }
            let Ok(m) = serde_json::from_str::<archive::Manifest>(&store.read_small(&o.name)?)
            else {
                continue;
            };
            if !super::prune::ours(archive_name, &m) {
                continue;
            }
            let drill_name = format!("{archive_name}.drill.json");
            let drill = if sizes.contains_key(drill_name.as_str()) {
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
                group: super::prune::group_of(&m.kind, &m.service),
                kind: m.kind,
                project: m.project,
                source: m.database,
                size: m.size,
                stored,
                created_at: m.created_at,
                drill: drill.into(),
                members: Vec::new(),
            });
        } else if o.name.ends_with(".set.json") {
            let Ok(set) = serde_json::from_str::<Set>(&store.read_small(&o.name)?) else {
                continue;
            };
            if !super::prune::our_set(&o.name, &set) {
                continue;
            }
            out.push(RemoteEntry {
                url: store.location.url(&o.name),
                name: o.name.clone(),
                kind: "set".into(),
                group: "set".into(),
                project: set.project,
                source: String::new(),
                size: o.size,
                stored: o.size,
                created_at: set.created_at,
                drill: "none".into(),
                members: set.members.into_iter().map(|m| m.file).collect(),
            });
        }
    }
    out.sort_by(|a, b| {
        super::archive::newest_first((&a.created_at, &a.name), (&b.created_at, &b.name))
    });
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

/// The decisions of the folder's policy ([`super::prune::plan`]) for
/// `project`'s backups in the bucket: each kind on its own, a kept set keeps
/// its members, the newest backup and the newest drill-passed one stay.
pub fn plan(entries: &[RemoteEntry], project: &str, policy: Policy) -> Vec<Decision> {
    let as_local: Vec<Entry> = entries
        .iter()
        .map(|e| Entry {
            // A bare file name: members and decisions match by it.
            path: PathBuf::from(&e.name),
            kind: e.kind.clone(),
            project: e.project.clone(),
            group: e.group.clone(),
            size: e.size,
            created_at: e.created_at.clone(),
            drill: e.drill.clone(),
            members: e.members.clone(),
        })
        .collect();
    super::prune::plan(&as_local, project, policy)
}

/// `backup prune --from s3://...`: `project`'s backups in the bucket by
/// `policy`, as in a folder. Before anything of a kind goes, that kind's
/// newest archive in the bucket must have the size its manifest records.
/// `--dry-run` lists what would go (and each object's delete) and why the
/// rest stays.
pub fn prune(
    store: &Store,
    project: &str,
    policy: Policy,
    runner: &Runner,
    format: Format,
) -> Result<()> {
    let entries = scan(store)?;
    let decisions = plan(&entries, project, policy);
    if decisions.is_empty() {
        println!("no backups of project {project} in {}", store.location);
        return Ok(());
    }
    let by_name: BTreeMap<String, &RemoteEntry> =
        entries.iter().map(|e| (e.name.clone(), e)).collect();
    let name_of = |d: &Decision| d.path.to_string_lossy().into_owned();
    let losing: BTreeSet<&str> = decisions
        .iter()
        .filter(|d| d.keep.is_empty() && d.group != "set")
        .map(|d| d.group.as_str())
        .collect();
    for group in losing {
        let Some(newest) = decisions.iter().find(|d| d.group == group) else {
            continue;
        };
        let e = by_name[&name_of(newest)];
        if e.stored != e.size {
            bail!(
                "the newest {group} backup {} is {} bytes in the bucket but its manifest says {}: upload a new backup before pruning {} (nothing was removed)",
                e.url,
                e.stored,
                e.size,
                store.location
            );
        }
    }
    if format == Format::Json {
        println!(
            "{}",
            serde_json::json!({"from": store.location.to_string(), "project": project, "dry_run": runner.dry_run, "backups": decisions})
        );
    }
    for d in &decisions {
        let name = name_of(d);
        if !d.keep.is_empty() {
            if format != Format::Json {
                println!("keep   {name} ({})", d.keep.join(", "));
            }
            continue;
        }
        let e = by_name[&name];
        let why = format!("no rule of {} keeps it", policy.describe());
        let objects: Vec<String> = if e.kind == "set" {
            vec![e.name.clone()]
        } else {
            // The manifest goes first: a half-pruned backup is no longer listed.
            [".manifest.json", ".drill.json", ".base.json", ".sha256", ""]
                .iter()
                .map(|s| format!("{}{s}", e.name))
                .collect()
        };
        if runner.dry_run {
            if format != Format::Json {
                println!("would remove {name} ({why})");
                for object in &objects {
                    println!("# delete {}", store.location.url(object));
                }
            }
            continue;
        }
        for object in &objects {
            store.delete(object)?;
        }
        if format != Format::Json {
            println!("pruned {} ({why})", e.url);
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
            group: super::super::prune::group_of(kind, source),
            size: 1,
            stored: 1,
            created_at: format!("2026-{at}T09:00:00Z"),
            drill: drill.into(),
            members: Vec::new(),
        }
    }

    fn gone(entries: &[RemoteEntry], policy: Policy) -> Vec<String> {
        plan(entries, "fog", policy)
            .iter()
            .filter(|d| d.keep.is_empty())
            .map(|d| d.path.to_string_lossy().into_owned())
            .collect()
    }

    const LAST1: Policy = Policy {
        last: 1,
        daily: 0,
        weekly: 0,
        monthly: 0,
    };

    #[test]
    fn remote_prune_keeps_per_kind_drilled_and_set_members() {
        let mut set = e("fog-all-3.set.json", "set", "", "12-03", "none");
        set.members = vec!["p1".into(), "v1".into()];
        let old_set = e("fog-all-0.set.json", "set", "", "11-30", "none");
        let mut other = e("o9", "postgres", "fog", "12-09", "none");
        other.project = "other".into();
        let entries = vec![
            other.clone(),
            e("p4", "postgres", "fog", "12-04", "none"),
            e("v3", "volume", "grafana_data", "12-03", "none"),
            set,
            e("p2", "postgres", "fog", "12-02", "passed"),
            e("p1", "postgres", "fog", "12-01", "none"),
            e("v1", "volume", "grafana_data", "12-01", "none"),
            e("p0", "postgres", "fog", "11-30", "none"),
            old_set,
            {
                let mut o = other;
                o.name = "o0".into();
                o.created_at = "2026-11-01T09:00:00Z".into();
                o
            },
        ];
        // p4 newest, p2 drilled, p1 and v1 are in the newest set: kept;
        // the other project's backups are not looked at.
        let mut g = gone(&entries, LAST1);
        g.sort();
        assert_eq!(g, ["fog-all-0.set.json", "p0"]);
        // Calendar rules, as in a folder: the newest of each of the last two
        // days with a database backup (p4, p2), the newest of November's
        // (p0) by the monthly rule.
        let policy = Policy {
            last: 0,
            daily: 2,
            weekly: 0,
            monthly: 2,
        };
        let g = gone(&entries, policy);
        assert!(!g.contains(&"p0".to_string()), "{g:?}");
        assert!(!g.contains(&"p2".to_string()), "{g:?}");
        // p1 stays as a member of the kept newest set.
        assert!(!g.contains(&"p1".to_string()), "{g:?}");
    }
}
