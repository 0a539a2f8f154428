//! `backup base`: the physical base backup that point-in-time recovery starts
//! from. `pg_basebackup -D - -Ft -z -X fetch -c fast` streams one gzipped tar
//! (with Postgres 15's `backup_manifest` inside, and the WAL the backup needs)
//! out of the running container through `docker exec`, hashed in the same
//! pass into `backups/<project>-base-<UTC stamp>.tar.gz` (with `--encrypt-to`
//! through age in the process, as `backup postgres` does: `.tar.gz.age`, the
//! checksum of the ciphertext). The same plaintext goes, as it passes, to
//! `pg_verifybackup` in a throwaway container of the environment's image (no
//! network), which prints `backup_label` and `backup_manifest` back once they
//! verified; only then does the archive get its final name, with its
//! start/stop LSN, timeline and times in `<file>.base.json` beside the usual
//! `.sha256` and manifest. `backup verify` runs the same check on a finished
//! one (decrypting with `--identity`).

use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::{archive, postgres::Written, stream};
use crate::process::{Cmd, Io};
use crate::{database::Database, process::Runner, wal};

/// What recovery needs to know about a base backup (`<file>.base.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct BaseInfo {
    pub file: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    /// The first WAL segment replay needs.
    pub start_wal: String,
    pub start_time: String,
    /// When the backup finished: the earliest moment it can be recovered to.
    pub stop_time: String,
    pub stop_epoch: f64,
}

pub fn info_path(archive: &Path) -> PathBuf {
    let mut name = archive.file_name().unwrap_or_default().to_os_string();
    name.push(".base.json");
    archive.with_file_name(name)
}

pub fn read_info(archive: &Path) -> Result<BaseInfo> {
    let path = info_path(archive);
    serde_json::from_str(&archive::read_small(&path)?)
        .with_context(|| format!("{}: not a base backup record", path.display()))
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Take a base backup into `dir`. `None` under `--dry-run`.
pub fn backup(
    db: &Database,
    runner: &Runner,
    dir: &Path,
    progress: bool,
) -> Result<Option<(Written, BaseInfo)>> {
    let created_at = crate::clock::rfc3339_now();
    let file = super::encrypt::archive_name(format!(
        "{}-base-{}.tar.gz",
        db.namespace,
        archive::stamp(&created_at)
    ));
    let path = dir.join(&file);
    if path.exists() {
        bail!("{} exists already; try again in a second", path.display());
    }
    let args: Vec<String> = [
        "pg_basebackup",
        "-U",
        &db.user,
        "-D",
        "-",
        "-Ft",
        "-z",
        "-X",
        "fetch",
        "-c",
        "fast",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cmd = db.exec("", &args);
    if runner.dry_run {
        println!("{} > {}", cmd.line(), path.display());
        println!("# pg_verifybackup on the archive in a throwaway container (--network none), then .sha256, .manifest.json, .base.json");
        return Ok(None);
    }
    archive::create_dir(dir)?;
    let server_version = db.sql(runner, &db.name, "SHOW server_version", false)?;
    let tables = super::postgres::parse_counts(&db.sql(
        runner,
        &db.name,
        super::postgres::COUNT_SQL,
        false,
    )?)?;
    let started = Instant::now();
    let mut out = archive::Atomic::create(&path)?;
    let bar = stream::bar(progress, None, &format!("pg_basebackup {}", db.namespace));
    // The plaintext goes both to the archive's sink (through age with
    // --encrypt-to) and to pg_verifybackup in a throwaway container, which
    // prints backup_label and backup_manifest back once it verified them.
    let mut verifier = runner.spawn(
        verifier_cmd(&db.image)
            .stdin(Io::Piped)
            .stdout(Io::Piped)
            .stderr(Io::Piped),
    )?;
    let printed = read_all(verifier.stdout.take().expect("piped"));
    let complaints = read_all(verifier.stderr.take().expect("piped"));
    let to_verifier = verifier.stdin.take().expect("piped");
    let mut sink = super::encrypt::Sink::new(out.file())?;
    let result = stream::from_child(runner, cmd, Tee(&mut sink, to_verifier), &bar);
    let stop_epoch = now_epoch();
    bar.finish_and_clear();
    if result.is_err() {
        let _ = verifier.kill();
    }
    let verified = verifier.wait().context("waiting for pg_verifybackup")?;
    let printed = printed.join().unwrap_or_default();
    let complaints = complaints.join().unwrap_or_default();
    if let Err(e) = result {
        return Err(e.context(format!(
            "the base backup {file} failed; nothing was kept (pg_verifybackup: {})",
            complaints.trim()
        )));
    }
    if !verified.success() {
        bail!(
            "the base backup {file} did not verify; nothing was kept: pg_verifybackup: {}",
            complaints.trim()
        );
    }
    let (size, sha256) = sink.finish()?;
    out.file().sync_all()?;
    let (label, manifest_json) = printed
        .split_once(MANIFEST_MARK)
        .context("pg_verifybackup's container printed no backup_label and backup_manifest")?;
    let info = base_info(&file, label, manifest_json, stop_epoch)?;
    let manifest = archive::Manifest {
        kind: "base".into(),
        format: super::encrypt::archive_name("pg_basebackup -Ft -z -X fetch".into())
            .replace(".age", " | age"),
        file: file.clone(),
        project: db.namespace.clone(),
        environment: db.environment.to_string(),
        service: crate::database::SERVICE.into(),
        image: db.image.clone(),
        server_version,
        database: db.name.clone(),
        size,
        sha256: sha256.clone(),
        tables,
        created_at,
        entries: None,
        tool: archive::tool(),
    };
    archive::write_atomic(
        &info_path(&path),
        format!("{}\n", serde_json::to_string_pretty(&info)?).as_bytes(),
    )?;
    archive::commit_backup(out, &manifest, &path)?;
    Ok(Some((
        Written {
            path,
            size,
            sha256,
            seconds: started.elapsed().as_secs_f64(),
            manifest,
        },
        info,
    )))
}

/// Start LSN, timeline and start time from `backup_label`; stop LSN from the
/// manifest's WAL range.
pub fn base_info(file: &str, label: &str, manifest: &str, stop_epoch: f64) -> Result<BaseInfo> {
    let field = |key: &str| {
        label
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_string())
            .with_context(|| format!("backup_label has no `{key}` line"))
    };
    let start = field("START WAL LOCATION:")?;
    let start_lsn = start.split_whitespace().next().unwrap_or_default();
    let start_wal = start
        .split("(file ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .context("backup_label names no start file")?
        .to_string();
    let timeline: u32 = field("START TIMELINE:")?
        .parse()
        .context("backup_label: START TIMELINE is not a number")?;
    let json: serde_json::Value =
        serde_json::from_str(manifest).context("backup_manifest is not JSON")?;
    let stop_lsn = json["WAL-Ranges"]
        .as_array()
        .and_then(|r| r.last())
        .and_then(|r| r["End-LSN"].as_str())
        .context("backup_manifest has no WAL range")?;
    if wal::Lsn::parse(start_lsn).is_none() || wal::Lsn::parse(stop_lsn).is_none() {
        bail!("unreadable LSNs in the base backup: {start_lsn}, {stop_lsn}");
    }
    Ok(BaseInfo {
        file: file.to_string(),
        timeline,
        start_lsn: start_lsn.to_string(),
        stop_lsn: stop_lsn.to_string(),
        start_wal,
        start_time: field("START TIME:")?,
        stop_time: wal::show_time(stop_epoch),
        stop_epoch,
    })
}

/// Between backup_label and backup_manifest in the verifier's output.
const MANIFEST_MARK: &str = "\n--fog-backup-manifest--\n";

/// A throwaway container (no network) of `image` that extracts a base
/// backup's plaintext from stdin, runs `pg_verifybackup` on it (checksums of
/// every file and the WAL it needs; its report on stderr), then prints
/// `backup_label`, [`MANIFEST_MARK`] and `backup_manifest`.
fn verifier_cmd(image: &str) -> Cmd {
    let mut cmd = Cmd::new("docker");
    cmd.args([
        "run",
        "--rm",
        "-i",
        "--network",
        "none",
        "--user",
        "postgres",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "set -e; d=$(mktemp -d); tar -xzf - -C \"$d\"; pg_verifybackup \"$d\" >&2; \
         cat \"$d/backup_label\"; printf '\\n--fog-backup-manifest--\\n'; cat \"$d/backup_manifest\"; rm -rf \"$d\"",
    ]);
    cmd
}

/// All of a stream, read on a thread (a manifest can be megabytes; capped at 256 MiB).
fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut from).take(256 << 20).read_to_end(&mut text);
        let _ = std::io::copy(&mut from, &mut std::io::sink());
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Every byte written to both: the archive's sink and the verifier's stdin.
struct Tee<A, B>(A, B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

/// `pg_verifybackup` on a finished base backup (decrypted on the way with
/// `--identity` when it is `.age`).
pub fn pg_verifybackup(runner: &Runner, path: &Path, image: &str) -> Result<()> {
    let file = super::encrypt::open(path)?;
    stream::into_child(
        runner,
        false,
        verifier_cmd(image),
        std::io::BufReader::with_capacity(archive::CHUNK, file),
        &indicatif::ProgressBar::hidden(),
        true,
    )
    .map(|_| ())
}

/// `backup verify` of a base backup: its record and `pg_verifybackup`.
pub fn verify(path: &Path, manifest: &archive::Manifest, fallback: Option<&str>) -> Result<()> {
    let info = read_info(path)?;
    if info.file != manifest.file {
        bail!(
            "{}: the base record describes `{}`",
            path.display(),
            info.file
        );
    }
    let runner = Runner::default();
    let image = {
        if crate::docker::image_exists(&runner, &manifest.image) {
            manifest.image.clone()
        } else {
            fallback.map(str::to_string).with_context(|| {
                format!(
                    "{}: its image {} is not in the engine and no environment runs to lend one",
                    path.display(),
                    manifest.image
                )
            })?
        }
    };
    pg_verifybackup(&runner, path, &image)
        .with_context(|| format!("{}: pg_verifybackup failed", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_and_manifest_give_the_lsns() {
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
            CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
            START TIME: 2026-12-05 06:30:00 UTC\nLABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n";
        let manifest = r#"{"PostgreSQL-Backup-Manifest-Version": 1, "Files": [],
            "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}"#;
        let info = base_info("f.tar.gz", label, manifest, 1_796_452_201.0).unwrap();
        assert_eq!(info.start_lsn, "0/2000028");
        assert_eq!(info.stop_lsn, "0/2000100");
        assert_eq!(info.start_wal, "000000010000000000000002");
        assert_eq!(info.timeline, 1);
        assert_eq!(info.stop_time, "2026-12-05 06:30:01 UTC");
        assert!(base_info("f", "garbage", manifest, 0.0).is_err());
    }
}
